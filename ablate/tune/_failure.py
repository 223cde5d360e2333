"""Why a cell failed, in one word: the class decides whether it is retried and what the user is told.

    failure, reason = in_trial(err, cell)    # in the Ray worker: an exception raised by the cell's code
    failure = of_ray_error(err)              # on the driver: what Ray reported for a trial it lost

``preempted``: the worker is gone (killed, SIGTERM, its node lost), so the cell is retried from its last
checkpoint, up to ``resources.max_retries`` times. ``oom``: out of memory (host ``MemoryError``, CUDA,
or Ray's memory monitor); the reason names the batch size, patch size and model. ``crash``: an
exception in code, not retried (it would raise again); its traceback is logged with the run. A
diverged cell is a result, not a failure; a bad configuration is refused before anything runs.
"""

from __future__ import annotations

import re
import traceback
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING

from ablate.errors import AblateError

if TYPE_CHECKING:
    from ablate.spec import CellSpec


class Failure(str, Enum):
    PREEMPTED = "preempted"
    OOM = "oom"
    CRASH = "crash"

    def __str__(self) -> str:
        return self.value


# Ray's memory monitor kills a worker with these words; a plain SIGKILL's notice also mentions "the OOM
# killer" as one possible cause, so "OOM" alone does not mean memory.
_RAY_OOM = re.compile(r"memory pressure|running low on memory|OutOfMemoryError", re.IGNORECASE)
_TORCH_OOM = ("out of memory", "not enough memory")  # CUDA and CPU allocator messages


def is_oom(err: BaseException) -> bool:
    """An out-of-memory error from Python (``MemoryError``) or torch (CUDA or CPU allocator)."""
    if isinstance(err, MemoryError) or type(err).__name__ == "OutOfMemoryError":
        return True
    return isinstance(err, RuntimeError) and any(s in str(err) for s in _TORCH_OOM)


def oom_reason(cell: CellSpec | None, detail: str) -> str:
    """``oom: …`` naming what sets the memory a cell needs, and what to change."""
    if cell is None:
        return f"oom: out of memory ({detail})"
    tr = cell.train
    return (f"oom: out of memory with train.batch_size {tr.batch_size}, train.patch_size {tr.patch_size}, "
            f"model {cell.backbone.label()} ({detail}); lower the batch or patch size, or give each trial "
            "more memory")


def in_trial(err: BaseException, cell: CellSpec | None) -> tuple[Failure, str]:
    """(class, reason) of an exception raised while a cell ran in its worker."""
    first = str(err).strip().splitlines()[0] if str(err).strip() else ""
    detail = f"{type(err).__name__}: {first}" if first else type(err).__name__
    if is_oom(err):
        return Failure.OOM, oom_reason(cell, detail)
    if isinstance(err, AblateError):  # a problem with the user's input, found late: its message says it
        return Failure.CRASH, f"crash: {err}"
    tb = traceback.extract_tb(err.__traceback__)
    where = f" ({Path(tb[-1].filename).name}:{tb[-1].lineno})" if tb else ""
    return Failure.CRASH, f"crash: {detail}{where}; traceback in the run's errors/traceback.txt"


def of_ray_error(err: BaseException | None) -> Failure:
    """The class of the error Ray Tune recorded for a trial (None: Ray did not say)."""
    from ray.exceptions import (
        NodeDiedError,
        OutOfMemoryError,
        RayActorError,
        RayTaskError,
        WorkerCrashedError,
    )

    if err is None:
        return Failure.PREEMPTED
    if isinstance(err, OutOfMemoryError) or (isinstance(err, RayActorError) and _RAY_OOM.search(str(err))):
        return Failure.OOM
    if isinstance(err, (RayActorError, NodeDiedError, WorkerCrashedError)):
        return Failure.PREEMPTED
    if isinstance(err, RayTaskError):  # an exception escaped the trial function itself
        cause = err.as_instanceof_cause()
        return Failure.OOM if is_oom(cause) else Failure.CRASH
    return Failure.CRASH


def ray_error_detail(err: BaseException | None) -> str:
    """One line saying what Ray reported: its worker died (and its pid), or the error's first line."""
    from ray.exceptions import RayActorError

    if err is None:
        return "the trial's worker was lost"
    text = str(err)
    if isinstance(err, RayActorError):
        pid = re.search(r"\bpid: (\d+)", text)
        exit_detail = re.search(r"Worker exit detail: (.*?\.)", text)
        return ("its Ray worker died" + (f" (pid {pid.group(1)})" if pid else "")
                + (f": {exit_detail.group(1)}" if exit_detail else ""))
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return f"{type(err).__name__}: {lines[-1] if lines else ''}"[:500]
