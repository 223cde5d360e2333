"""What runs inside a Ray worker: one cell through the trial engine, reported via ``tune.report``.

A trial finds its checkpoint by cell id in the checkpoint store (a folder, or object storage), so a cell
retried after its worker died, on any node (or run again by a later sweep), continues from there; it then
first reports the history the checkpoint holds (one ``REPLAY`` result), so points the driver never wrote
reach MLflow after all.
"""

from __future__ import annotations

import os
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ray import tune

from ablate.status import CellStatus
from ablate.train import flatten_traces

from ._failure import in_trial

if TYPE_CHECKING:
    from ._storage import CheckpointStore

# keys of our own in a result dict (Ray adds its own: training_iteration, time_this_iter_s, …)
STEP, STATUS, REASON, FINAL, CELL = "ablate/step", "ablate/status", "ablate/reason", "ablate/final", "ablate/cell"
REPLAY = "ablate/replay"  # the checkpoint's history: [{"step": s, <metric>: v, …}, …]
FAILURE, TRACEBACK = "ablate/failure", "ablate/traceback"  # why a cell failed, and where (final result)
WARNING = "ablate/warning"  # something the user should know that did not stop the cell (its own result)
IMPL = "ablate/impl"  # the final result's Trainer.provenance(): kernels, precision, optimizer (run tags)


class RayReporter:
    """Turns trial-engine reports into ``tune.report`` calls (one per reported step)."""

    def __init__(self, cell_id: str, checkpoints: CheckpointStore) -> None:
        self.cell_id = cell_id
        self.checkpoints = checkpoints

    def report(self, step: int, metrics: dict[str, float], traces: Any = None, checkpoint: Path | None = None
               ) -> None:
        tune.report({STEP: step, CELL: self.cell_id, **metrics, **flatten_traces(traces)})
        if checkpoint is not None:  # after the report: a retry from it never skips this step's metrics
            self.checkpoints.commit(self.cell_id, checkpoint, step)

    def replay(self, history: list[dict[str, Any]]) -> None:
        """Report again, in one result, every point a resumed cell reported before its checkpoint (no
        ``STEP``: schedulers and searchers see no new progress in it)."""
        if history:
            tune.report({CELL: self.cell_id, REPLAY: history})

    def warn(self, message: str) -> None:
        """Tell the driver (one result, no ``STEP``): it prints the message and tags the cell's run."""
        tune.report({CELL: self.cell_id, WARNING: message})


def apply_overrides(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """A copy of a cell config with dotted keys (``train.optimizer.lr``) replaced."""
    import copy

    cfg = copy.deepcopy(base)
    for dotted, value in overrides.items():
        node = cfg
        *parents, leaf = dotted.split(".")
        for p in parents:
            child = node.get(p)
            if not isinstance(child, dict):  # a bare component name given a parameter (norm.groups)
                node[p] = child = {"name": child} if isinstance(child, str) else {}
            node = child
        node[leaf] = value
    return cfg


def cell_of(config: dict[str, Any], cells: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The cell config a trial runs: a grid cell by id, or a search trial's base cell + sampled values."""
    if "cell_id" in config:
        return cells[config["cell_id"]]
    return apply_overrides(cells[config["base"]], {k: v for k, v in config.items() if k != "base"})


def cell_trial(config: dict[str, Any], cells: dict[str, dict[str, Any]], checkpoints: CheckpointStore,
               threads: int) -> None:
    """The Ray trainable: resolve the cell, resume from its checkpoint if one exists, run it.

    An exception in the cell's code ends it ``failed`` (class ``crash`` or ``oom``) with its traceback
    in the final result: it is not retried, since it would raise again. Only a worker that dies (which
    no code here sees) reaches Ray as an error, and Ray retries it from the checkpoint.
    """
    import torch

    from ablate.spec import CellSpec
    from ablate.train import Trainer

    os.environ.pop("MLFLOW_RUN_ID", None)
    torch.set_num_threads(max(1, threads))
    status, reason, summary, failure, trace = CellStatus.FAILED, "", {}, "", ""
    provenance: dict[str, str] = {}
    cell_id = config.get("cell_id", "?")
    spec = None
    try:
        spec = CellSpec.from_config(cell_of(config, cells))
        cell_id = spec.id
        reporter = RayReporter(cell_id, checkpoints)
        # the cell's latest checkpoint from storage, wherever this trial runs (a retry: another node)
        ckpt_dir, state = checkpoints.checkout(cell_id, discarded=reporter.warn)
        trainer = Trainer(spec, reporter, checkpoint_dir=ckpt_dir)
        if state is not None:
            trainer.state.load_state_dict(state)
            reporter.replay(trainer.state.history)
        result = trainer.run()
        if result.checkpoint is not None:  # the final checkpoint and samples: stored before the final report
            checkpoints.commit(cell_id, result.checkpoint, result.step, final=True)
        status, reason, summary = CellStatus(result.status), result.reason, result.summary
        provenance = result.provenance
    except Exception as err:  # the cell is recorded as failed; the sweep goes on
        failed_as, reason = in_trial(err, spec)
        failure, trace = failed_as.value, "".join(traceback.format_exception(err))
    # the status travels as its plain string: results cross process boundaries and Ray may serialize them
    final = {STEP: int(summary.get("steps", 0)), CELL: cell_id, FINAL: 1, STATUS: status.value,
             REASON: reason[:2000], FAILURE: failure, TRACEBACK: trace, IMPL: provenance, **summary}
    if "final/psnr" in summary:  # searchers and schedulers read the last result's val/psnr
        final["val/psnr"], final["val/ssim"] = summary["final/psnr"], summary["final/ssim"]
    tune.report(final)


def trainable(cells: dict[str, dict[str, Any]], checkpoints: CheckpointStore, cpus: float, gpus: float) -> Any:
    """:func:`cell_trial` as Ray Tune runs it: the cell configs and the checkpoint store carried by
    ``tune.with_parameters`` (in Ray's object store, not in every trial's config), with each trial's resources."""
    return tune.with_resources(
        tune.with_parameters(cell_trial, cells=cells, checkpoints=checkpoints, threads=int(max(1, cpus))),
        {"cpu": cpus, "gpu": gpus})
