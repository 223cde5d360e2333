"""The grid sweep: every cell not yet finished, as one Ray Tune grid, with one MLflow writer on the driver."""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from ablate.errors import AblateError
from ablate.naming import safe_name
from ablate.status import CellStatus
from ablate.track import State

from ._setup import (
    Setup,
    SweepOptions,
    SweepSummary,
    init_ray,
    max_retries,
    prepare,
    ray_output_to,
    ray_run_name,
    trial_resources,
)

if TYPE_CHECKING:
    from ablate.spec import CellSpec, ExperimentSpec
    from ablate.track import Tracker

    from ._callback import SweepCallback


def run_sweep(spec: ExperimentSpec, opts: SweepOptions | None = None) -> SweepSummary:
    """Run every cell of an experiment (skipping finished ones) as Ray Tune trials, logged to MLflow."""
    from ablate.spec import plan_rows

    from ._callback import SweepCallback

    opts = opts or SweepOptions()
    t_start = time.perf_counter()
    setup = prepare(spec, opts)
    tracker = setup.tracker
    for note in tracker.claim(spec.name):  # refuses while another driver runs the experiment
        setup.stream.write(note + "\n")
    todo, skipped = _split_finished(spec, opts, setup)
    if not todo:  # nothing to run: no empty sweep run in MLflow
        return SweepSummary(spec.name, "", tracker.tracking_uri, dict.fromkeys(skipped, CellStatus.FINISHED),
                            skipped, time.perf_counter() - t_start, tracker.log_time)
    init_ray(opts.address, None)  # before MLflow is written to: a cluster that refuses us leaves no trace
    parent = tracker.start_sweep(spec.name, spec.hash, spec.source_text, plan_rows(setup.cells), driver=True)
    summary = SweepSummary(spec.name, parent, tracker.tracking_uri, skipped=skipped)
    if opts.force:
        for c in setup.cells:
            setup.store.delete(c.id)
    status = State.FINISHED  # the sweep run's MLflow state
    callback = None
    try:
        callback = SweepCallback(tracker, parent, {c.id: c.to_config() for c in todo}, setup.store,
                                 stream=setup.stream, max_retries=max_retries(spec, opts))
        _fit(spec, opts, setup, todo, callback)
    except KeyboardInterrupt:
        status = State.KILLED
        setup.stream.write("interrupted: running cells are recorded as killed; `ablate resume` continues them\n")
    except BaseException:
        status = State.FAILED
        raise
    finally:
        _finish(spec, opts, setup, summary, callback, status)
        summary.wall_s = time.perf_counter() - t_start
    return summary


def _split_finished(spec: ExperimentSpec, opts: SweepOptions, setup: Setup) -> tuple[list[CellSpec], list[str]]:
    """(cells to run, ids of cells skipped): a cell that finished (or diverged) in the experiment is
    skipped unless ``--force``."""
    done = {} if opts.force else setup.tracker.finished_cells(spec.name)
    todo = [c for c in setup.cells if c.id not in done]
    skipped = [c.id for c in setup.cells if c.id in done]
    if skipped:
        setup.stream.write(f"{len(skipped)} of {len(setup.cells)} cells already finished in experiment "
                           f"{spec.name!r}; skipping them (--force reruns them)\n")
    return todo, skipped


def _fit(spec: ExperimentSpec, opts: SweepOptions, setup: Setup, todo: list[CellSpec],
         callback: SweepCallback) -> None:
    """One Ray Tune grid over the cells to run, one trial per cell."""
    from ray import tune
    from ray.tune import CheckpointConfig, FailureConfig, RunConfig, TuneConfig, Tuner

    from ._trial import trainable

    cpus, gpus, max_conc = trial_resources(spec, opts)
    setup.stream.write(f"running {len(todo)} cells of {spec.name!r} on Ray ({cpus:g} CPU"
                       f"{f', {gpus:g} GPU' if gpus else ''} per cell); MLflow: {setup.tracker.tracking_uri}\n")
    storage_path, storage_fs = setup.store.ray_storage()
    tuner = Tuner(
        trainable({c.id: c.to_config() for c in todo}, setup.store, cpus, gpus),
        param_space={"cell_id": tune.grid_search([c.id for c in todo])},
        tune_config=TuneConfig(
            max_concurrent_trials=max_conc,
            # a finished trial's worker process takes the next cell: no new process, no
            # second import of torch and ablate (the cell state lives in the function's frame)
            reuse_actors=True,
            trial_name_creator=lambda t: t.config["cell_id"],
            trial_dirname_creator=lambda t: t.config["cell_id"],
        ),
        # a trial whose worker dies is started again (on any node); it resumes from the cell's checkpoint
        # in storage
        run_config=RunConfig(name=ray_run_name(spec.name), storage_path=storage_path,
                             storage_filesystem=storage_fs, verbose=0, callbacks=[callback],
                             failure_config=FailureConfig(max_failures=callback.max_retries),
                             checkpoint_config=CheckpointConfig(num_to_keep=1)),
    )
    with warnings.catch_warnings(), ray_output_to(setup.log_file):
        warnings.simplefilter("ignore")
        tuner.fit()


def _finish(spec: ExperimentSpec, opts: SweepOptions, setup: Setup, summary: SweepSummary,
            callback: SweepCallback | None, status: str) -> None:
    """Close the cells' runs, fill in the summary, build the dashboard and end the sweep run (``status``:
    its MLflow state; an exception on its way out of the sweep makes it FAILED)."""
    if callback is not None:
        callback.close()
        summary.statuses = callback.statuses()
        summary.failures = {cid: f.value for cid, f in callback.failures.items()}
        summary.log_file = setup.log_file if setup.log_file.exists() else None
        summary.cell_s = dict(callback.cell_seconds)
        if status == State.FINISHED and CellStatus.KILLED in summary.statuses.values():
            status = State.KILLED  # Ray Tune turns Ctrl-C into a graceful stop, not an exception
            setup.stream.write("interrupted: unfinished cells are recorded as killed; `ablate resume` continues "
                               "them from their last checkpoint\n")
    for cid in summary.skipped:
        summary.statuses.setdefault(cid, CellStatus.FINISHED)
    if opts.dashboard and status in (State.FINISHED, State.KILLED):
        summary.dashboard = _dashboard(setup.tracker, summary.parent_run_id, spec.name, setup.state_dir)
    setup.tracker.end_sweep(summary.parent_run_id, status)
    summary.mlflow_s = setup.tracker.log_time


def _dashboard(tracker: Tracker, parent: str, name: str, state_dir: Path) -> Path | None:
    try:
        from ablate.report import build_dashboard

        out = build_dashboard(None, name, tracker.tracking_uri,
                              state_dir / "dashboards" / f"{safe_name(name)}.html")
        tracker.log_artifact(parent, out, "dashboard")
        return Path(out)
    except AblateError as err:
        print(f"warning: dashboard not built: {err}", file=sys.stderr)
    except Exception as err:  # the results are logged; a dashboard failure must not hide them
        print(f"warning: dashboard not built: {type(err).__name__}: {err}", file=sys.stderr)
    return None
