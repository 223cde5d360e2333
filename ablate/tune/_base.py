"""What a sweep and a search share: their options and summary, Ray's start, the trial resources and the
setup both begin with. Imports nothing else of ``ablate.tune``: ``_sweep`` and ``_search`` both build on it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from ablate.naming import safe_name
from ablate.status import CellStatus

if TYPE_CHECKING:
    from ablate.spec import CellSpec, ExperimentSpec
    from ablate.track import Tracker


@dataclass(frozen=True)
class SweepOptions:
    """How to run a sweep (nothing here changes a cell's result, so nothing here is in a cell id)."""

    state_dir: Path = Path(".ablate")
    address: str | None = None  # an existing Ray cluster; RAY_ADDRESS wins when set
    tracking_uri: str | None = None  # CLI value; MLFLOW_TRACKING_URI, then the spec, then SQLite
    cpus_per_trial: float | None = None
    gpus_per_trial: float | None = None
    max_concurrent: int | None = None
    force: bool = False  # rerun cells that already finished
    max_retries: int | None = None  # CLI value; the spec's resources.max_retries otherwise
    dashboard: bool = True  # build the dashboard at the end and log it to the sweep run
    stream: TextIO | None = None


@dataclass
class SweepSummary:
    experiment: str
    parent_run_id: str
    tracking_uri: str
    statuses: dict[str, CellStatus] = field(default_factory=dict)  # cell id -> status
    skipped: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    mlflow_s: float = 0.0
    cell_s: dict[str, float] = field(default_factory=dict)
    dashboard: Path | None = None
    failures: dict[str, str] = field(default_factory=dict)  # cell id -> failure class of failed cells
    log_file: Path | None = None  # Ray's own output during the sweep

    @property
    def ok(self) -> bool:
        """Every cell finished or diverged (divergence is a result, not an error)."""
        return all(CellStatus(s).done for s in self.statuses.values())


@dataclass
class Setup:
    """What a sweep and a search both start with."""

    stream: TextIO
    state_dir: Path  # resolved and created
    cells: list[CellSpec]  # the expanded grid (a search's base cells)
    tracker: Tracker
    # per experiment: two experiments may hold the identical cell and must not share its checkpoint
    ckpt_root: Path
    log_file: Path  # <state>/logs/<experiment>-<time>.log: Ray's own output (see ray_output_to)


def init_ray(address: str | None, num_cpus: int | None) -> None:
    """Start (or join) Ray once per process, quietly; an initialized Ray is reused as it is."""
    import ray

    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")  # no CSV/JSON/TensorBoard per trial
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_MAX_PENDING_TRIALS_PG", "16")
    if ray.is_initialized():
        return
    addr = os.environ.get("RAY_ADDRESS") or address
    kwargs: dict[str, Any] = {"include_dashboard": False, "logging_level": logging.ERROR,
                              "log_to_driver": False, "configure_logging": True}
    if addr:
        ray.init(address=addr, **kwargs)
    else:
        ray.init(num_cpus=num_cpus or os.cpu_count() or 1, **kwargs)


def trial_resources(spec: ExperimentSpec, opts: SweepOptions) -> tuple[float, float, int | None]:
    """(CPUs, GPUs per trial, max concurrent trials): the command line wins over the spec's
    ``resources``; defaults 1 CPU, 0 GPU, as many trials as the resources allow."""
    res = spec.resources
    cpus = opts.cpus_per_trial or res.cpus_per_trial or 1
    # 0 GPUs on the command line is a choice, not a missing value
    gpus = opts.gpus_per_trial if opts.gpus_per_trial is not None else res.gpus_per_trial or 0
    max_conc = opts.max_concurrent or res.max_concurrent
    return cpus, gpus, max_conc


def max_retries(spec: ExperimentSpec, opts: SweepOptions) -> int:
    """How often a cell whose worker died is retried: the command line wins over ``resources.max_retries``."""
    return opts.max_retries if opts.max_retries is not None else spec.resources.max_retries


def prepare(spec: ExperimentSpec, opts: SweepOptions) -> Setup:
    """The output stream, the state folder (created), the expanded cells, the MLflow tracker and the
    experiment's checkpoint folder."""
    from ablate.spec import expand
    from ablate.track import Tracker, resolve_tracking_uri

    state_dir = Path(opts.state_dir).resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    cells = expand(spec)
    uri = resolve_tracking_uri(opts.tracking_uri, spec.tracking.uri, opts.state_dir)
    return Setup(opts.stream or sys.stdout, state_dir, cells, Tracker(uri, opts.state_dir),
                 checkpoint_root(state_dir, spec.name), state_dir / "logs" / f"{ray_run_name(spec.name)}.log")


def checkpoint_root(state_dir: Path, experiment: str) -> Path:
    """``<state>/checkpoints/<experiment>``: one folder per cell below it."""
    return Path(state_dir) / "checkpoints" / safe_name(experiment)


def ray_run_name(experiment: str, *parts: str) -> str:
    """The Ray Tune run folder's name: the experiment, ``parts``, the start time."""
    return "-".join((safe_name(experiment), *parts, time.strftime("%Y%m%d-%H%M%S")))


@contextlib.contextmanager
def ray_output_to(log_file: Path) -> Iterator[None]:
    """While a Tune run lasts, what Ray itself prints goes to ``log_file``, not over the progress table.

    Two channels: the ``ray`` loggers (Tune's "Trial task failed" with its traceback, "Trials did not
    complete", warnings), whose handlers are swapped for the file; and the driver's error listener,
    which prints notices such as "(raylet) A worker died or was killed…" to ``sys.stdout`` from a
    thread, so stdout is redirected (the table and our own messages go to a stream captured before).
    Worker output is not forwarded to the driver at all (``log_to_driver=False``); it stays in Ray's
    session folder.
    """
    log_file.parent.mkdir(parents=True, exist_ok=True)
    ray_logger = logging.getLogger("ray")
    saved = (ray_logger.handlers[:], ray_logger.level)
    with open(log_file, "a", encoding="utf-8") as out:
        out.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')} Ray's output for this run (the workers' own "
                  "logs are in Ray's session folder, by default /tmp/ray/session_latest/logs)\n")
        out.flush()
        handler = logging.StreamHandler(out)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        ray_logger.handlers = [handler]
        ray_logger.setLevel(logging.WARNING)
        try:
            with contextlib.redirect_stdout(out):
                yield
        finally:
            ray_logger.handlers, level = saved
            ray_logger.setLevel(level)

