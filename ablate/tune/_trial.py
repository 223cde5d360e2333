"""What runs inside a Ray worker: one cell through the trial engine, reported via ``tune.report``."""

from __future__ import annotations

import os
import shutil
import traceback
from pathlib import Path
from typing import Any

from ray import tune

from ablate.errors import AblateError
from ablate.status import CellStatus
from ablate.train import flatten_traces

# keys of our own in a result dict (Ray adds its own: training_iteration, time_this_iter_s, …)
STEP, STATUS, REASON, FINAL, CELL = "ablate/step", "ablate/status", "ablate/reason", "ablate/final", "ablate/cell"


class RayReporter:
    """Turns trial-engine reports into ``tune.report`` calls (one per reported step)."""

    def __init__(self, cell_id: str) -> None:
        self.cell_id = cell_id

    def report(self, step: int, metrics: dict[str, float], traces: Any = None, checkpoint: Path | None = None
               ) -> None:
        tune.report({STEP: step, CELL: self.cell_id, **metrics, **flatten_traces(traces)})


def apply_overrides(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """A copy of a cell config with dotted keys (``train.optimizer.lr``) replaced."""
    import copy

    cfg = copy.deepcopy(base)
    for dotted, value in overrides.items():
        node = cfg
        *parents, leaf = dotted.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return cfg


def cell_of(config: dict[str, Any], cells: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The cell config a trial runs: a grid cell by id, or a search trial's base cell + sampled values."""
    if "cell_id" in config:
        return cells[config["cell_id"]]
    return apply_overrides(cells[config["base"]], {k: v for k, v in config.items() if k != "base"})


def cell_trial(config: dict[str, Any], cells: dict[str, dict[str, Any]], ckpt_root: str, threads: int) -> None:
    """The Ray trainable: resolve the cell, resume from its checkpoint if one exists, run it."""
    import torch

    from ablate.spec import CellSpec
    from ablate.train import CHECKPOINT_FILE, load_checkpoint, run_cell

    os.environ.pop("MLFLOW_RUN_ID", None)
    torch.set_num_threads(max(1, threads))
    status, reason, summary = CellStatus.FAILED, "", {}
    cell_id = config.get("cell_id", "?")
    try:
        spec = CellSpec.from_config(cell_of(config, cells))
        cell_id = spec.id
        ckpt_dir = Path(ckpt_root) / cell_id
        resume = None
        if (ckpt_dir / CHECKPOINT_FILE).exists():
            try:
                if load_checkpoint(ckpt_dir)["step"] < spec.train.steps:
                    resume = ckpt_dir
                else:  # a finished cell run again (--force): start over
                    shutil.rmtree(ckpt_dir)
            except Exception:
                shutil.rmtree(ckpt_dir, ignore_errors=True)
        result = run_cell(spec, RayReporter(cell_id), checkpoint_dir=ckpt_dir, resume_from=resume)
        status, reason, summary = CellStatus(result.status), result.reason, result.summary
    except AblateError as err:
        reason = str(err)
    except Exception as err:  # a crashing cell is recorded as failed; the sweep goes on
        tb = traceback.extract_tb(err.__traceback__)
        where = f" ({Path(tb[-1].filename).name}:{tb[-1].lineno})" if tb else ""
        reason = f"{type(err).__name__}: {err}{where}"
    # the status travels as its plain string: results cross process boundaries and Ray may serialize them
    final = {STEP: int(summary.get("steps", 0)), CELL: cell_id, FINAL: 1, STATUS: status.value,
             REASON: reason[:2000], **summary}
    if "final/psnr" in summary:  # searchers and schedulers read the last result's val/psnr
        final["val/psnr"], final["val/ssim"] = summary["final/psnr"], summary["final/ssim"]
    tune.report(final)


def trainable(cells: dict[str, dict[str, Any]], ckpt_root: Path, cpus: float, gpus: float) -> Any:
    """:func:`cell_trial` as Ray Tune runs it: the cell configs carried by ``tune.with_parameters``
    (in Ray's object store, not in every trial's config), with each trial's resources."""
    return tune.with_resources(
        tune.with_parameters(cell_trial, cells=cells, ckpt_root=str(ckpt_root), threads=int(max(1, cpus))),
        {"cpu": cpus, "gpu": gpus})
