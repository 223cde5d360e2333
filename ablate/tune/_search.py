"""Hyperparameter search: Optuna (TPE) through Ray Tune, optionally with ASHA early stopping.

Each base cell of the experiment's grid gets its own study of ``search.num_samples`` trials; every trial
is a cell of its own (its id includes the sampled values) logged as an MLflow child run tagged
``ablate.search``. Tuning per variant is what a fair norm ablation needs (each norm gets its best lr).
"""

from __future__ import annotations

import os
import time
import warnings
from typing import Any

from ablate.errors import AblateError

from ._runner import (
    SweepOptions,
    SweepSummary,
    _init_ray,
    _safe,
    checkpoint_root,
    prepare,
    trial_resources,
)


def _space(search: Any) -> dict[str, Any]:
    from ray import tune

    space: dict[str, Any] = {}
    for key, dim in search.space.items():
        def get(k: str, d: Any = dim) -> Any:
            return d.get(k) if isinstance(d, dict) else getattr(d, k, None)

        kind = get("type")
        if kind == "loguniform":
            space[key] = tune.loguniform(get("low"), get("high"))
        elif kind == "uniform":
            space[key] = tune.uniform(get("low"), get("high"))
        elif kind == "int":
            space[key] = tune.randint(int(get("low")), int(get("high")) + 1)
        elif kind == "choice":
            space[key] = tune.choice(list(get("values")))
        else:
            raise AblateError(f"search.space.{key}.type: expected loguniform, uniform, int or choice, got {kind!r}")
    return space


def _searcher(metric: str, mode: str, seed: int) -> Any:
    """OptunaSearch that skips intermediate results without the metric (probe-only reports)."""
    from ray.tune.search.optuna import OptunaSearch


    class _Optuna(OptunaSearch):  # type: ignore[misc]
        def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
            if metric in result:
                super().on_trial_result(trial_id, result)

    return _Optuna(metric=metric, mode=mode, seed=seed)


def search(spec: Any, opts: SweepOptions) -> SweepSummary:
    from ray import tune
    from ray.tune import FailureConfig, RunConfig, TuneConfig, Tuner
    from ray.tune.schedulers import ASHAScheduler

    from ablate.sweep import plan_rows

    from ._callback import SweepCallback
    from ._trial import STEP, cell_trial

    if getattr(spec, "search", None) is None:
        raise AblateError(f"{getattr(spec, 'file', None) or spec.name}: search: expected a 'search' section "
                          "(metric, mode, num_samples, space) for `ablate search`")
    srch = spec.search
    t0 = time.perf_counter()
    stream, state_dir, bases, tracker = prepare(spec, opts)
    parent = tracker.start_sweep(spec.name, spec.hash, spec.source_text, plan_rows(bases),
                                 tags={"ablate.search": "optuna"})
    summary = SweepSummary(spec.name, parent, tracker.tracking_uri)
    os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")  # not every report carries val/psnr
    _init_ray(opts.address, None)
    cpus, gpus, max_conc = trial_resources(spec, opts)
    configs = {c.id: c.to_config() for c in bases}
    ckpt_root = checkpoint_root(state_dir, spec.name)
    callback = SweepCallback(tracker, parent, configs, ckpt_root, stream=stream, tags={"ablate.search": "optuna"})
    status = "FINISHED"
    try:
        for base in bases:
            stream.write(f"search: {srch.num_samples} trials for base cell {base.id} "
                         f"({base.norm.label()}, rescale={base.rescale}) over {', '.join(srch.space)}\n")
            scheduler = None
            if getattr(srch, "scheduler", "none") == "asha":
                scheduler = ASHAScheduler(time_attr=STEP, max_t=base.train.steps,
                                          grace_period=max(base.train.eval_every, 1), reduction_factor=2,
                                          stop_last_trials=False)  # a trial that got there reports its summary
            searcher = _searcher(srch.metric, srch.mode, base.seed)
            trainable = tune.with_resources(
                tune.with_parameters(cell_trial, cells=configs, ckpt_root=str(ckpt_root), threads=int(max(1, cpus))),
                {"cpu": cpus, "gpu": gpus})
            tuner = Tuner(
                trainable,
                param_space={"base": base.id, **_space(srch)},
                tune_config=TuneConfig(search_alg=searcher, scheduler=scheduler, num_samples=srch.num_samples,
                                       metric=srch.metric, mode=srch.mode, max_concurrent_trials=max_conc),
                run_config=RunConfig(name=f"{_safe(spec.name)}-search-{base.id}-{time.strftime('%Y%m%d-%H%M%S')}",
                                     storage_path=str(state_dir / "ray"), verbose=0, callbacks=[callback],
                                     failure_config=FailureConfig(max_failures=0)),
            )
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                grid = tuner.fit()
            try:
                best = grid.get_best_result(metric=srch.metric, mode=srch.mode)
                picked = {k: v for k, v in (best.config or {}).items() if k != "base"}
                stream.write(f"best for {base.id}: {srch.metric} = {(best.metrics or {}).get(srch.metric)}  "
                             f"{picked}\n")
                tracker.set_tags(parent, {f"ablate.best.{base.id}": str(picked)[:4000]})
            except Exception as err:  # every trial failed: the table says why
                stream.write(f"no successful trial for {base.id}: {err}\n")
    except KeyboardInterrupt:
        status = "KILLED"
    finally:
        callback.close()
        summary.statuses = {cid: row["status"] for cid, row in callback.rows.items()}
        tracker.end_sweep(parent, status)
        summary.mlflow_s = tracker.log_time
        summary.wall_s = time.perf_counter() - t0
    return summary
