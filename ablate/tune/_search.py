"""Hyperparameter search: Optuna (TPE) through Ray Tune, optionally with ASHA early stopping.

Each base cell of the experiment's grid gets its own study of ``search.num_samples`` trials; every trial
is a cell of its own (its id includes the sampled values) logged as an MLflow child run tagged
``ablate.search``. Tuning per variant is what a fair norm ablation needs (each norm gets its best lr).
"""

from __future__ import annotations

import os
import time
import warnings
from typing import TYPE_CHECKING, Any

from ablate.errors import AblateError

from ._base import (
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
    from ray.tune import ResultGrid

    from ablate.spec import CellSpec, ExperimentSpec, SearchSpec

    from ._callback import SweepCallback

_TAGS = {"ablate.search": "optuna"}


def run_search(spec: ExperimentSpec, opts: SweepOptions | None = None) -> SweepSummary:
    """One Optuna study per base cell of the grid, on Ray Tune, every trial logged to MLflow as a cell."""
    from ablate.spec import plan_rows

    from ._callback import SweepCallback

    opts = opts or SweepOptions()
    if spec.search is None:
        raise AblateError(f"{spec.file or spec.name}: search: expected a 'search' section "
                          "(metric, mode, num_samples, space) for `ablate search`")
    t0 = time.perf_counter()
    setup = prepare(spec, opts)
    for note in setup.tracker.claim(spec.name):  # refuses while another driver runs the experiment
        setup.stream.write(note + "\n")
    os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")  # not every report carries val/psnr
    init_ray(opts.address, None)  # before MLflow is written to: a cluster that refuses us leaves no trace
    parent = setup.tracker.start_sweep(spec.name, spec.hash, spec.source_text, plan_rows(setup.cells), tags=_TAGS,
                                       driver=True)
    summary = SweepSummary(spec.name, parent, setup.tracker.tracking_uri)
    callback = SweepCallback(setup.tracker, parent, {c.id: c.to_config() for c in setup.cells}, setup.store,
                             stream=setup.stream, tags=_TAGS, max_retries=max_retries(spec, opts))
    status = "FINISHED"  # the search run's MLflow state
    try:
        for base in setup.cells:
            _search_base(spec, spec.search, base, opts, setup, callback)
    except KeyboardInterrupt:
        status = "KILLED"
    except BaseException:
        status = "FAILED"
        raise
    finally:
        callback.close()
        summary.statuses = callback.statuses()
        summary.failures = {cid: f.value for cid, f in callback.failures.items()}
        summary.log_file = setup.log_file if setup.log_file.exists() else None
        setup.tracker.end_sweep(parent, status)
        summary.mlflow_s = setup.tracker.log_time
        summary.wall_s = time.perf_counter() - t0
    return summary


def _search_base(spec: ExperimentSpec, srch: SearchSpec, base: CellSpec, opts: SweepOptions, setup: Setup,
                 callback: SweepCallback) -> None:
    """The study of one base cell; its best trial is printed and tagged on the search run."""
    from ray.tune import FailureConfig, RunConfig, TuneConfig, Tuner
    from ray.tune.schedulers import ASHAScheduler

    from ._trial import STEP, trainable

    setup.stream.write(f"search: {srch.num_samples} trials for base cell {base.id} "
                       f"({base.norm.label()}, rescale={base.rescale}) over {', '.join(srch.space)}\n")
    scheduler = None
    if srch.scheduler == "asha":
        scheduler = ASHAScheduler(time_attr=STEP, max_t=base.train.steps,
                                  grace_period=max(base.train.eval_every, 1), reduction_factor=2,
                                  stop_last_trials=False)  # a trial that got there reports its summary
    cpus, gpus, max_conc = trial_resources(spec, opts)
    storage_path, storage_fs = setup.store.ray_storage()
    tuner = Tuner(
        # every base cell's config travels with each study: a trial's config names its base
        trainable({c.id: c.to_config() for c in setup.cells}, setup.store, cpus, gpus),
        param_space={"base": base.id, **_space(srch)},
        tune_config=TuneConfig(search_alg=_searcher(srch.metric, srch.mode, base.seed), scheduler=scheduler,
                               num_samples=srch.num_samples, metric=srch.metric, mode=srch.mode,
                               max_concurrent_trials=max_conc),
        run_config=RunConfig(name=ray_run_name(spec.name, "search", base.id), storage_path=storage_path,
                             storage_filesystem=storage_fs, verbose=0, callbacks=[callback],
                             failure_config=FailureConfig(max_failures=callback.max_retries)),
    )
    with warnings.catch_warnings(), ray_output_to(setup.log_file):
        warnings.simplefilter("ignore")
        grid = tuner.fit()
    _report_best(grid, srch, base, setup, callback.parent)


def _report_best(grid: ResultGrid, srch: SearchSpec, base: CellSpec, setup: Setup, parent: str) -> None:
    try:
        best = grid.get_best_result(metric=srch.metric, mode=srch.mode)
        picked = {k: v for k, v in (best.config or {}).items() if k != "base"}
        setup.stream.write(f"best for {base.id}: {srch.metric} = {(best.metrics or {}).get(srch.metric)}  "
                           f"{picked}\n")
        setup.tracker.set_tags(parent, {f"ablate.best.{base.id}": str(picked)[:4000]})
    except Exception as err:  # every trial failed: the table says why
        setup.stream.write(f"no successful trial for {base.id}: {err}\n")


def _space(srch: SearchSpec) -> dict[str, Any]:
    """The search space in Ray Tune's terms, by dotted axis name."""
    from ray import tune

    space: dict[str, Any] = {}
    for key, dim in srch.space.items():
        if dim.type == "choice":
            space[key] = tune.choice(list(dim.values))
            continue
        if dim.type not in ("loguniform", "uniform", "int"):
            raise AblateError(f"search.space.{key}.type: expected loguniform, uniform, int or choice, "
                              f"got {dim.type!r}")
        if dim.low is None or dim.high is None:
            raise AblateError(f"search.space.{key}: expected low and high for type {dim.type}")
        if dim.type == "loguniform":
            space[key] = tune.loguniform(dim.low, dim.high)
        elif dim.type == "uniform":
            space[key] = tune.uniform(dim.low, dim.high)
        else:
            space[key] = tune.randint(int(dim.low), int(dim.high) + 1)
    return space


def _searcher(metric: str, mode: str, seed: int) -> Any:
    """OptunaSearch that skips intermediate results without the metric (probe-only reports)."""
    from ray.tune.search.optuna import OptunaSearch

    class _Optuna(OptunaSearch):  # type: ignore[misc]
        def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
            if metric in result:
                super().on_trial_result(trial_id, result)

    return _Optuna(metric=metric, mode=mode, seed=seed)
