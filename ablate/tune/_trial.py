"""What runs inside a Ray worker: one cell through the trial engine, reported via ``tune.report``."""

from __future__ import annotations

import os
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ray import tune

from ablate.errors import AblateError
from ablate.status import CellStatus
from ablate.train import flatten_traces

if TYPE_CHECKING:
    from ._storage import CheckpointStore

# keys of our own in a result dict (Ray adds its own: training_iteration, time_this_iter_s, …)
STEP, STATUS, REASON, FINAL, CELL = "ablate/step", "ablate/status", "ablate/reason", "ablate/final", "ablate/cell"


class RayReporter:
    """Turns trial-engine reports into ``tune.report`` calls (one per reported step)."""

    def __init__(self, cell_id: str, store: CheckpointStore) -> None:
        self.cell_id = cell_id
        self.store = store

    def report(self, step: int, metrics: dict[str, float], traces: Any = None, checkpoint: Path | None = None
               ) -> None:
        tune.report({STEP: step, CELL: self.cell_id, **metrics, **flatten_traces(traces)})
        if checkpoint is not None:  # after the report: a retry from it never skips this step's metrics
            self.store.commit(self.cell_id, checkpoint, step)


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


def cell_trial(config: dict[str, Any], cells: dict[str, dict[str, Any]], store: CheckpointStore, threads: int
               ) -> None:
    """The Ray trainable: resolve the cell, resume from its checkpoint if one exists, run it."""
    import torch

    from ablate.spec import CellSpec
    from ablate.train import run_cell

    os.environ.pop("MLFLOW_RUN_ID", None)
    torch.set_num_threads(max(1, threads))
    status, reason, summary = CellStatus.FAILED, "", {}
    cell_id = config.get("cell_id", "?")
    try:
        spec = CellSpec.from_config(cell_of(config, cells))
        cell_id = spec.id
        # the cell's latest checkpoint from storage, wherever this trial runs (a retry: another node)
        ckpt_dir, resume = store.checkout(cell_id, spec.train.steps)
        result = run_cell(spec, RayReporter(cell_id, store), checkpoint_dir=ckpt_dir, resume_from=resume)
        if result.checkpoint is not None:  # the final checkpoint and samples: stored before the final report
            store.commit(cell_id, result.checkpoint, result.step, final=True)
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


def trainable(cells: dict[str, dict[str, Any]], store: CheckpointStore, cpus: float, gpus: float) -> Any:
    """:func:`cell_trial` as Ray Tune runs it: the cell configs and the checkpoint store carried by
    ``tune.with_parameters`` (in Ray's object store, not in every trial's config), with each trial's resources."""
    return tune.with_resources(
        tune.with_parameters(cell_trial, cells=cells, store=store, threads=int(max(1, cpus))),
        {"cpu": cpus, "gpu": gpus})
