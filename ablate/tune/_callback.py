"""The single MLflow writer: a Tune callback on the driver, plus the live progress table."""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from ray import tune

from ablate.spec import CellSpec
from ablate.status import CellStatus
from ablate.train import CHECKPOINT_FILE

from ._progress import ProgressDisplay, progress_lines
from ._trial import FINAL, REASON, STATUS, STEP

if TYPE_CHECKING:
    from ablate.track import Tracker

_METRIC_PREFIXES = ("train/", "val/", "feat/", "ref/", "final/", "best/", "time/")
_SUMMARY_EXTRA = ("steps", "params")


def _metrics_of(result: dict[str, Any]) -> dict[str, float]:
    out = {}
    for k, v in result.items():
        if k.startswith(_METRIC_PREFIXES) and isinstance(v, (int, float)) and not isinstance(v, bool):
            out[k] = float(v)
    return out


class SweepCallback(tune.Callback):
    """Logs every trial to its MLflow child run, in batches, from the driver process only."""

    def __init__(self, tracker: Tracker, parent_run_id: str, cells: dict[str, dict[str, Any]], ckpt_root: Path,
                 stream: TextIO | None = None, refresh_s: float | None = None, tags: dict[str, str] | None = None) -> None:
        self.tracker = tracker
        self.parent = parent_run_id
        self.base_cells = cells  # cell configs by id (grid cells, or a search's base cells)
        self.cells: dict[str, CellSpec] = {}
        self.labels: dict[str, str] = {}
        self.trial_cell: dict[str, str] = {}  # Ray trial id -> cell id
        self.extra_tags = tags or {}
        self.expected = len(cells)  # cells this sweep will run (a search's trials come on top)
        self.ckpt_root = ckpt_root  # <state>/checkpoints/<experiment>: one folder per cell
        self.stream = stream or sys.stdout
        self.progress = ProgressDisplay(bool(getattr(self.stream, "isatty", lambda: False)()), refresh_s)
        self.runs: dict[str, str] = {}  # cell id -> run id
        self.rows: dict[str, dict[str, Any]] = {}
        self.ended: set[str] = set()
        self.traces: dict[str, list[tuple[int, dict[str, float]]]] = {}
        self._closed: tuple[int, int] = (-1, -1)
        self.cell_seconds: dict[str, float] = {}

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles its callbacks into the experiment state; the live object stays in this process.
        # Streams (CliRunner's, a log file) and the MLflow client do not pickle, and need not.
        state = dict(self.__dict__)
        state["stream"] = None
        state["tracker"] = None
        return state

    # Ray hooks ----------------------------------------------------------------------------
    def _cell_id(self, trial: Any) -> str:
        if trial.trial_id not in self.trial_cell:
            from ablate.norms import resolve_norm

            from ._trial import cell_of

            cell = CellSpec.from_config(cell_of(trial.config, self.base_cells))
            self.cells[cell.id] = cell
            self.labels[cell.id] = resolve_norm(cell.norm.to_config(), cell.rescale).name
            self.trial_cell[trial.trial_id] = cell.id
        return self.trial_cell[trial.trial_id]

    def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._ensure_run(self._cell_id(trial))

    def on_trial_result(self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any],
                        **info: Any) -> None:
        cell_id = self._cell_id(trial)
        run_id = self._ensure_run(cell_id)
        row = self.rows[cell_id]
        step = int(result.get(STEP, 0))
        metrics = _metrics_of(result)
        if result.get(FINAL):
            summary = {k: v for k, v in metrics.items() if not k.startswith(("val/", "train/", "feat/"))}
            summary.update({k: float(result[k]) for k in _SUMMARY_EXTRA if isinstance(result.get(k), (int, float))})
            self._end(cell_id, CellStatus(result.get(STATUS, CellStatus.FAILED)), str(result.get(REASON, "")),
                      summary)
            return
        self.tracker.log(run_id, metrics, step)
        row["step"] = step
        if "val/psnr" in metrics:
            row["psnr"] = metrics["val/psnr"]
        msq = [v for k, v in metrics.items() if k.endswith("/msq")]
        if msq:
            row["max_msq"] = max(msq)
            self.traces.setdefault(cell_id, []).append(
                (step, {k: v for k, v in metrics.items() if k.startswith("feat/")}))
        self._maybe_print()

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        cell_id = self._cell_id(trial)
        err = getattr(trial, "error_msg", None) or "the trial's worker crashed"
        self._end(cell_id, CellStatus.FAILED, str(err).strip().splitlines()[-1][:500], {})

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        cell_id = self._cell_id(trial)
        if cell_id not in self.ended:  # stopped by a scheduler before its final report
            self._end(cell_id, CellStatus.PRUNED, "stopped early by the scheduler", {})

    def on_experiment_end(self, trials: list[Any], **info: Any) -> None:
        self.close()

    # helpers --------------------------------------------------------------------------------
    def close(self) -> None:
        """End every run still open as killed (interrupted sweep) and print the final table."""
        if self._closed == (len(self.rows), len(self.ended)) and len(self.ended) == len(self.rows):
            return  # nothing new since the last close (Ray calls it, then the driver does)
        for cell_id in list(self.runs):
            if cell_id not in self.ended:
                self._end(cell_id, CellStatus.KILLED, "the sweep stopped before this cell finished", {})
        self.tracker.flush()
        self.print_table(force=True, final=True)
        self._closed = (len(self.rows), len(self.ended))

    def _ensure_run(self, cell_id: str) -> str:
        if cell_id not in self.runs:
            from ablate.track import cell_run_identity

            cell = self.cells[cell_id]
            name, tags = cell_run_identity(cell, self.labels[cell_id], self.extra_tags)
            self.runs[cell_id] = self.tracker.start_cell(self.parent, cell_id, name, cell.flat_params(), tags)
            self.rows[cell_id] = {"step": 0, "psnr": math.nan, "max_msq": math.nan, "status": "running",
                                  "t0": time.perf_counter()}
        return self.runs[cell_id]

    def statuses(self) -> dict[str, CellStatus]:
        """Cell id -> status of every cell this callback has seen (running ones included)."""
        return {cell_id: CellStatus(row["status"]) for cell_id, row in self.rows.items()}

    def _end(self, cell_id: str, status: CellStatus, reason: str, summary: dict[str, float]) -> None:
        if cell_id in self.ended:
            return
        run_id = self._ensure_run(cell_id)
        self.ended.add(cell_id)
        row = self.rows[cell_id]
        row["status"] = status
        row["reason"] = reason
        if "final/psnr" in summary:
            row["psnr"] = summary["final/psnr"]
        self.cell_seconds[cell_id] = time.perf_counter() - row["t0"]
        self._log_artifacts(cell_id, run_id)
        self.tracker.end_cell(run_id, status, reason, summary)
        if reason and status is not CellStatus.FINISHED:
            self.progress.note(self.stream, f"cell {cell_id} {status}: {reason}")
        if len(self.ended) < len(self.rows):  # close() prints the last table
            self.print_table(force=True)

    def _log_artifacts(self, cell_id: str, run_id: str) -> None:
        ckpt = self.ckpt_root / cell_id
        for name, dest in (("samples.png", "samples"), (CHECKPOINT_FILE, "checkpoint")):
            if (ckpt / name).exists():
                self.tracker.log_artifact(run_id, ckpt / name, dest)
        if self.traces.get(cell_id):
            try:
                from ablate.report import divergence_plot

                path = divergence_plot(self.traces[cell_id], ckpt / "divergence.png",
                                       title=f"{self.labels[cell_id]} · {cell_id}")
                self.tracker.log_artifact(run_id, path, "plots")
            except Exception as err:  # a plot must never cost the run its results
                print(f"warning: divergence plot for {cell_id} failed: {err}", file=sys.stderr)

    def _maybe_print(self) -> None:
        if self.progress.due():
            self.print_table(force=False)

    def print_table(self, force: bool = True, final: bool = False) -> None:
        """Draw the progress display (``force``: a cell just ended; ``final``: the sweep's last one)."""
        self.progress.draw(self.stream, progress_lines(self.rows, self.cells, self.labels, self.cell_seconds),
                           self.expected, final=final, cell_ended=force and not final)
