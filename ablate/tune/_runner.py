from __future__ import annotations

import logging
import os
import shutil
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from ablate.errors import AblateError


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
    dashboard: bool = True  # build the dashboard at the end and log it to the sweep run
    stream: TextIO | None = None


@dataclass
class SweepSummary:
    experiment: str
    parent_run_id: str
    tracking_uri: str
    statuses: dict[str, str] = field(default_factory=dict)  # cell id -> status
    skipped: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    mlflow_s: float = 0.0
    cell_s: dict[str, float] = field(default_factory=dict)
    dashboard: Path | None = None

    @property
    def ok(self) -> bool:
        return all(s in ("finished", "diverged") for s in self.statuses.values())


def _init_ray(address: str | None, num_cpus: int | None) -> None:
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


def trial_resources(spec: Any, opts: SweepOptions) -> tuple[float, float, int | None]:
    """(CPUs, GPUs per trial, max concurrent trials): the command line wins over the spec's
    ``resources``; defaults 1 CPU, 0 GPU, as many trials as the resources allow."""
    res = getattr(spec, "resources", None)
    cpus = opts.cpus_per_trial or (getattr(res, "cpus_per_trial", None) if res else None) or 1
    gpus = opts.gpus_per_trial if opts.gpus_per_trial is not None else (
        getattr(res, "gpus_per_trial", None) if res else None) or 0
    max_conc = opts.max_concurrent or (getattr(res, "max_concurrent", None) if res else None)
    return cpus, gpus, max_conc


def prepare(spec: Any, opts: SweepOptions) -> tuple[TextIO, Path, list[Any], Any]:
    """What a sweep and a search both start with: the output stream, the state folder (created),
    the expanded cells and the MLflow tracker."""
    from ablate.sweep import expand

    state_dir = Path(opts.state_dir).resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    return opts.stream or sys.stdout, state_dir, expand(spec), _open_tracker(spec, opts)


def _open_tracker(spec: Any, opts: SweepOptions) -> Any:
    from ablate.track import Tracker, resolve_tracking_uri

    uri = resolve_tracking_uri(opts.tracking_uri, getattr(spec.tracking, "uri", None) if spec.tracking else None,
                               opts.state_dir)
    return Tracker(uri, opts.state_dir)


def run_sweep(spec: Any, opts: SweepOptions | None = None) -> SweepSummary:
    """Run every cell of an experiment (skipping finished ones) as Ray Tune trials, logged to MLflow."""
    from ray import tune

    from ablate.sweep import plan_rows

    from ._callback import SweepCallback
    from ._trial import cell_trial

    opts = opts or SweepOptions()
    t_start = time.perf_counter()
    stream, state_dir, cells, tracker = prepare(spec, opts)
    done = {} if opts.force else tracker.finished_cells(spec.name)
    todo = [c for c in cells if c.id not in done]
    skipped = [c.id for c in cells if c.id in done]
    if skipped:
        stream.write(f"{len(skipped)} of {len(cells)} cells already finished in experiment "
                     f"{spec.name!r}; skipping them (--force reruns them)\n")
    if not todo:  # nothing to run: no empty sweep run in MLflow
        return SweepSummary(spec.name, "", tracker.tracking_uri, {cid: "finished" for cid in skipped}, skipped,
                            time.perf_counter() - t_start, tracker.log_time)
    parent = tracker.start_sweep(spec.name, spec.hash, spec.source_text, plan_rows(cells))
    summary = SweepSummary(spec.name, parent, tracker.tracking_uri)
    summary.skipped = skipped
    # per experiment: two experiments may hold the identical cell and must not share its checkpoint
    ckpt_root = checkpoint_root(state_dir, spec.name)
    if opts.force:
        for c in cells:
            shutil.rmtree(ckpt_root / c.id, ignore_errors=True)
    cpus, gpus, max_conc = trial_resources(spec, opts)
    status = "FINISHED"
    callback = None
    try:
        if todo:
            _init_ray(opts.address, None)
            callback = SweepCallback(tracker, parent, {c.id: c.to_config() for c in todo}, ckpt_root,
                                     stream=stream)
            trainable = tune.with_resources(
                tune.with_parameters(cell_trial, cells={c.id: c.to_config() for c in todo},
                                     ckpt_root=str(ckpt_root), threads=int(max(1, cpus))),
                {"cpu": cpus, "gpu": gpus},
            )
            from ray.tune import CheckpointConfig, FailureConfig, RunConfig, TuneConfig, Tuner

            stream.write(f"running {len(todo)} cells of {spec.name!r} on Ray ({cpus:g} CPU"
                         f"{f', {gpus:g} GPU' if gpus else ''} per cell); MLflow: {tracker.tracking_uri}\n")
            tuner = Tuner(
                trainable,
                param_space={"cell_id": tune.grid_search([c.id for c in todo])},
                tune_config=TuneConfig(
                    max_concurrent_trials=max_conc,
                    # a finished trial's worker process takes the next cell: no new process, no
                    # second import of torch and ablate (the cell state lives in the function's frame)
                    reuse_actors=True,
                    trial_name_creator=lambda t: t.config["cell_id"],
                    trial_dirname_creator=lambda t: t.config["cell_id"],
                ),
                run_config=RunConfig(
                    name=f"{_safe(spec.name)}-{time.strftime('%Y%m%d-%H%M%S')}",
                    storage_path=str(state_dir / "ray"),
                    verbose=0,
                    callbacks=[callback],
                    failure_config=FailureConfig(max_failures=0),
                    checkpoint_config=CheckpointConfig(num_to_keep=1),
                ),
            )
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                tuner.fit()
    except KeyboardInterrupt:
        status = "KILLED"
        stream.write("interrupted: running cells are recorded as killed; `ablate resume` continues them\n")
    except BaseException:
        status = "FAILED"
        raise
    finally:
        if callback is not None:
            callback.close()
            summary.statuses = {cid: row["status"] for cid, row in callback.rows.items()}
            summary.cell_s = dict(callback.cell_seconds)
            if status == "FINISHED" and "killed" in summary.statuses.values():
                status = "KILLED"  # Ray Tune turns Ctrl-C into a graceful stop, not an exception
                stream.write("interrupted: unfinished cells are recorded as killed; `ablate resume` continues "
                             "them from their last checkpoint\n")
        for cid in summary.skipped:
            summary.statuses.setdefault(cid, "finished")
        if opts.dashboard and todo and status in ("FINISHED", "KILLED"):
            summary.dashboard = _dashboard(tracker, parent, spec.name, state_dir)
        tracker.end_sweep(parent, status)
        summary.mlflow_s = tracker.log_time
        summary.wall_s = time.perf_counter() - t_start
    return summary


def _dashboard(tracker: Any, parent: str, name: str, state_dir: Path) -> Path | None:
    try:
        from ablate.report import build_dashboard

        out = build_dashboard(None, name, tracker.tracking_uri, state_dir / "dashboards" / f"{_safe(name)}.html")
        tracker.log_artifact(parent, out, "dashboard")
        return Path(out)
    except AblateError as err:
        print(f"warning: dashboard not built: {err}", file=sys.stderr)
    except Exception as err:  # the results are logged; a dashboard failure must not hide them
        print(f"warning: dashboard not built: {type(err).__name__}: {err}", file=sys.stderr)
    return None


def checkpoint_root(state_dir: Path, experiment: str) -> Path:
    return Path(state_dir) / "checkpoints" / _safe(experiment)


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in name)


def run_search(spec: Any, opts: SweepOptions | None = None) -> SweepSummary:
    from ._search import search

    return search(spec, opts or SweepOptions())
