"""The single MLflow writer: a Tune callback on the driver, plus the live progress table.

The callback translates Tune's hooks into the Tracker's calls; the rules of what is written live in
``ablate.track``. Exactly once among them: a resumed or retried cell reports again the steps between its
checkpoint and where it stopped, and first replays its checkpoint's history, which restores points a
killed driver never wrote; the Tracker logs of all that only the (key, step) points its run does not
hold. Summary metrics land once, at the cell's last step. A trial whose worker died is retried by Ray
Tune (``FailureConfig``); ``on_trial_recover`` counts the attempt on the same run, ``on_trial_error``
records the failure once retries are spent.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from ray import tune

from ablate.spec import CellSpec
from ablate.status import CellStatus
from ablate.track import Tag, impl_tags
from ablate.train import CHECKPOINT_FILE

from ._failure import Failure, of_ray_error, oom_reason, ray_error_detail
from ._progress import ProgressDisplay, progress_lines
from ._trial import FAILURE, FINAL, IMPL, REASON, REPLAY, STATUS, STEP, TRACEBACK, WARNING

if TYPE_CHECKING:
    from ablate.track import Tracker

    from ._storage import CheckpointStore

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

    def __init__(self, tracker: Tracker, parent_run_id: str, cells: dict[str, dict[str, Any]], store: CheckpointStore,
                 stream: TextIO | None = None, refresh_s: float | None = None, tags: dict[str, str] | None = None,
                 max_retries: int = 0) -> None:
        self.tracker = tracker
        self.parent = parent_run_id
        self.base_cells = cells  # cell configs by id (grid cells, or a search's base cells)
        self.cells: dict[str, CellSpec] = {}
        self.labels: dict[str, str] = {}
        self.trial_cell: dict[str, str] = {}  # Ray trial id -> cell id
        self.extra_tags = tags or {}
        self.expected = len(cells)  # cells this sweep will run (a search's trials come on top)
        self.store = store  # the cells' checkpoints and samples, wherever the trials stored them
        self.stream = stream or sys.stdout
        self.progress = ProgressDisplay(bool(getattr(self.stream, "isatty", lambda: False)()), refresh_s)
        self.runs: dict[str, str] = {}  # cell id -> run id
        self.rows: dict[str, dict[str, Any]] = {}
        self.ended: set[str] = set()
        self.traces: dict[str, dict[int, dict[str, float]]] = {}  # cell id -> {step: feat/* values}
        self.failures: dict[str, Failure] = {}  # cell id -> why it failed
        self.max_retries = max_retries
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
            from ._trial import cell_of

            cell = CellSpec.from_config(cell_of(trial.config, self.base_cells))
            self.cells[cell.id] = cell
            self.labels[cell.id] = cell.norm_label()
            self.trial_cell[trial.trial_id] = cell.id
        return self.trial_cell[trial.trial_id]

    def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._ensure_run(self._cell_id(trial))

    def on_trial_result(self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any],
                        **info: Any) -> None:
        cell_id = self._cell_id(trial)
        run_id = self._ensure_run(cell_id)
        if WARNING in result:  # e.g. an unreadable checkpoint the cell restarted without
            self.tracker.set_tags(run_id, {Tag.WARNING: str(result[WARNING])[:5000]})
            self.progress.note(self.stream, f"cell {cell_id}: warning: {result[WARNING]}")
            return
        if REPLAY in result:
            for point in result[REPLAY]:
                self._log(cell_id, run_id, int(point["step"]), _metrics_of(point))
            self._maybe_print()
            return
        metrics = _metrics_of(result)
        if result.get(FINAL):
            self._final(cell_id, run_id, result, metrics)
            return
        self._log(cell_id, run_id, int(result.get(STEP, 0)), metrics)
        self._maybe_print()

    def on_trial_recover(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        """Ray Tune retries the trial (its worker died): the same run, one more attempt."""
        cell_id = self._cell_id(trial)
        run_id = self._ensure_run(cell_id)
        err = _trial_error(trial)
        failure = of_ray_error(err)
        detail = ray_error_detail(err)
        self.tracker.new_attempt(run_id, {Tag.FAILURE: failure.value,
                                          Tag.REASON: f"{failure}: {detail}; retried from its last checkpoint"})
        retry = int(getattr(trial, "num_failures", 1))  # this sweep's retries (an attempt may be a resume)
        self.rows[cell_id]["note"] = f"retry {retry}/{self.max_retries}"
        self.progress.note(self.stream, f"cell {cell_id}: {detail} ({failure}); retry {retry} of "
                                        f"{self.max_retries} from its last checkpoint")

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        """The trial failed for good: Ray gave up on it (a worker lost more than ``max_retries`` times,
        or an error that escaped the trial function)."""
        cell_id = self._cell_id(trial)
        err = _trial_error(trial)
        failure = of_ray_error(err)
        detail = ray_error_detail(err)
        if failure is Failure.OOM:
            reason = oom_reason(self.cells[cell_id], detail)
        elif failure is Failure.PREEMPTED:
            reason = (f"preempted: {detail}; lost {getattr(trial, 'num_failures', 0)} times, more than "
                      f"resources.max_retries ({self.max_retries}) allows")
        else:
            reason = f"crash: {detail}"
        if err is not None and failure is Failure.CRASH:
            self.tracker.log_text(self._ensure_run(cell_id), _error_text(err), "errors/traceback.txt")
        self._end(cell_id, CellStatus.FAILED, reason, {}, failure)

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        cell_id = self._cell_id(trial)
        if cell_id not in self.ended:  # stopped by a scheduler before its final report
            self._end(cell_id, CellStatus.PRUNED, "stopped early by the scheduler", {})

    def on_experiment_end(self, trials: list[Any], **info: Any) -> None:
        self.close()

    # helpers --------------------------------------------------------------------------------
    def _log(self, cell_id: str, run_id: str, step: int, metrics: dict[str, float]) -> None:
        """Log ``metrics`` at ``step`` (the points its run holds already are not logged again); update the
        live row."""
        self.tracker.log(run_id, metrics, step)
        row = self.rows[cell_id]
        row["step"] = step
        if "val/psnr" in metrics:
            row["psnr"] = metrics["val/psnr"]
        msq = [v for k, v in metrics.items() if k.endswith("/msq")]
        if msq:
            row["max_msq"] = max(msq)
            self.traces.setdefault(cell_id, {})[step] = {k: v for k, v in metrics.items() if k.startswith("feat/")}

    def _final(self, cell_id: str, run_id: str, result: dict[str, Any], metrics: dict[str, float]) -> None:
        """The trial's last result: its summary metrics, or why it failed (with the traceback)."""
        status = CellStatus(result.get(STATUS, CellStatus.FAILED))
        summary = {k: v for k, v in metrics.items() if not k.startswith(("val/", "train/", "feat/"))}
        summary.update({k: float(result[k]) for k in _SUMMARY_EXTRA if isinstance(result.get(k), (int, float))})
        if result.get(TRACEBACK):
            self.tracker.log_text(run_id, str(result[TRACEBACK]), "errors/traceback.txt")
        if result.get(IMPL):
            self.tracker.set_tags(run_id, impl_tags(result[IMPL]))
        failure = Failure(result[FAILURE]) if status is CellStatus.FAILED and result.get(FAILURE) else None
        self._end(cell_id, status, str(result.get(REASON, "")), summary, failure)

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
                                  "note": "", "t0": time.perf_counter()}
        return self.runs[cell_id]

    def statuses(self) -> dict[str, CellStatus]:
        """Cell id -> status of every cell this callback has seen (running ones included)."""
        return {cell_id: CellStatus(row["status"]) for cell_id, row in self.rows.items()}

    def _end(self, cell_id: str, status: CellStatus, reason: str, summary: dict[str, float],
             failure: Failure | None = None) -> None:
        if cell_id in self.ended:
            return
        run_id = self._ensure_run(cell_id)
        self.ended.add(cell_id)
        row = self.rows[cell_id]
        row["status"] = status
        row["note"] = failure.value if failure is not None else ""
        row["reason"] = reason
        if failure is not None:
            self.failures[cell_id] = failure
        if "final/psnr" in summary:
            row["psnr"] = summary["final/psnr"]
        self.cell_seconds[cell_id] = time.perf_counter() - row["t0"]
        self._log_artifacts(cell_id, run_id)
        self._log_summary(run_id, summary)
        # a finished (or diverged) cell clears what an earlier attempt's failure recorded
        self.tracker.end_cell(run_id, status, reason,
                              failure=failure.value if failure is not None else "" if status.done else None)
        if reason and status is not CellStatus.FINISHED:
            self.progress.note(self.stream, f"cell {cell_id} {status}: {reason}")
        if len(self.ended) < len(self.rows):  # close() prints the last table
            self.print_table(force=True)

    def _log_summary(self, run_id: str, summary: dict[str, float]) -> None:
        """Summary metrics at the run's last step (MLflow shows a key's value at its highest step), each
        once: a summary an earlier driver logged before it died is not logged again."""
        if summary:
            self.tracker.log(run_id, summary, self.tracker.last_step(run_id))

    def _log_artifacts(self, cell_id: str, run_id: str) -> None:
        with self.store.local_copy(cell_id) as ckpt:
            self._log_files(cell_id, run_id, ckpt)

    def _log_files(self, cell_id: str, run_id: str, ckpt: Path) -> None:
        for name, dest in (("samples.png", "samples"), (CHECKPOINT_FILE, "checkpoint")):
            if (ckpt / name).exists():
                self.tracker.log_artifact(run_id, ckpt / name, dest)
        if self.traces.get(cell_id):
            try:
                from ablate.report import divergence_plot

                path = divergence_plot(sorted(self.traces[cell_id].items()), ckpt / "divergence.png",
                                       title=f"{self.labels[cell_id]} · {cell_id}")
                self.tracker.log_artifact(run_id, path, "plots")
            except Exception as err:  # a plot must never cost the run its results
                print(f"warning: divergence plot for {cell_id} failed: {err}", file=sys.stderr)

    def _maybe_print(self) -> None:
        if self.progress.due():
            self.print_table(force=False)

    def print_table(self, force: bool = True, final: bool = False) -> None:
        """Draw the progress display (``force``: a cell just ended; ``final``: the sweep's last one)."""
        lines = progress_lines(self.rows, self.cells, self.labels, self.cell_seconds, list(self.base_cells))
        self.progress.draw(self.stream, lines, self.expected, final=final, cell_ended=force and not final)


def _trial_error(trial: Any) -> BaseException | None:
    """The exception Ray Tune recorded for ``trial``'s latest failure (None when it kept none).

    Tune pickles it into the trial's driver-side staging folder first (``pickled_error_file``) and
    syncs it to the run's storage later (``get_pickled_error`` reads there), so the local file is read
    first: a callback runs right after the failure.
    """
    from ray import cloudpickle

    try:
        local = trial.pickled_error_file
        if local and Path(local).is_file():
            err = cloudpickle.loads(Path(local).read_bytes())
        else:
            err = trial.get_pickled_error()
    except Exception:  # an unreadable error file: the failure is still recorded, with less detail
        return None
    return err if isinstance(err, BaseException) else None


def _error_text(err: BaseException) -> str:
    """The error with its traceback, as Ray recorded it (a remote traceback is part of its text)."""
    import traceback

    return "".join(traceback.format_exception(err))
