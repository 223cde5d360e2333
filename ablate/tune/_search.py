"""Hyperparameter search: one Optuna study per variant, every study's trials in one Ray Tune run.

Each base cell of the experiment's grid is a variant with its own study (:mod:`._studies`) of
``search.num_samples`` trials; :class:`._searcher.StudySearcher` hands out the trials of all studies, the variant with
the fewest started first, into one resource pool (``resources.max_concurrent`` trials in all), and
:class:`._searcher.StudyPruner` stops a trial when its own variant's pruner (ASHA or Hyperband rungs over training
steps) says so, so a rung compares trials of one variant only. Every trial is a cell of its own (its id
includes the sampled values) logged as an MLflow child run tagged ``ablate.search``. The studies live in
durable storage (:func:`._studies.storage_url`): a killed search, run again, continues where it stopped.
A finished search writes ``<state>/<name>-confirm.yaml``: each variant at its best values on fresh seeds.
"""

from __future__ import annotations

import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ablate.errors import AblateError
from ablate.naming import safe_name
from ablate.status import CellStatus
from ablate.track import State, Tag

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
from ._studies import VariantStudies, estimated_steps, rungs, storage_url

if TYPE_CHECKING:
    from ablate.spec import CellSpec, ExperimentSpec

    from ._callback import SweepCallback

_TAGS = {Tag.SEARCH: "optuna"}


@dataclass
class SearchSummary(SweepSummary):
    """A sweep's summary, plus what the search adds."""

    slots: int = 0  # trials that could run at once
    busy_share: float = 0.0  # share of trial-slot time a trial ran, over the Tune run
    fit_s: float = 0.0  # the Tune run's wall time
    confirm_file: Path | None = None  # written when every variant has a best trial
    storage: str = ""  # the studies' Optuna storage
    best: dict[str, tuple[dict[str, Any], float]] = field(default_factory=dict)  # variant -> (values, metric)


def variant_labels(spec: ExperimentSpec, cells: list[CellSpec]) -> dict[str, str]:
    """Base cell id -> a short label from its grid axes (``token_ln``, ``group_norm/sr-x2``)."""
    from ablate.spec import plan_rows

    axes = [a for a in spec.axes if a != "seed"]
    rows = plan_rows(cells, [a for a in axes if a not in ("norm", "rescale", "backbone", "task")])
    return {row["id"]: "/".join(str(row[a]) for a in axes if a in row) or str(row["norm"]) for row in rows}


def search_preview(spec: ExperimentSpec) -> str:
    """Per variant: trials, rungs, estimated and largest training steps — what ``--preview`` prints."""
    from ablate.report import table
    from ablate.spec import expand

    srch = _need_search(spec)
    cells = expand(spec)
    labels = variant_labels(spec, cells)
    rows = []
    for c in cells:
        est = estimated_steps(srch, c.train.steps, c.train.eval_every)
        rows.append({"variant": labels[c.id], "cell": c.id, "trials": str(srch.num_samples),
                     "rungs (steps)": ", ".join(map(str, rungs(srch, c.train.steps, c.train.eval_every))) or "-",
                     "est. steps": f"{est:,}", "max steps": f"{srch.num_samples * c.train.steps:,}",
                     "est. cells": f"{est / c.train.steps:.1f}"})
    total = sum(estimated_steps(srch, c.train.steps, c.train.eval_every) for c in cells)
    full = sum(srch.num_samples * c.train.steps for c in cells)
    space = ", ".join(f"{k} ({d.type}{' when ' + str(dict(d.when)) if d.when else ''})"
                      for k, d in srch.space.items())
    return (f"{spec.name}: {len(cells)} variants × {srch.num_samples} trials over {space}; scheduler "
            f"{srch.scheduler} (reduction factor {srch.reduction_factor}); same space, TPE seed and rungs "
            f"for every variant\n{table(rows, list(rows[0]))}\n"
            f"in all ≈ {total:,} training steps, at most {full:,}; confirm seeds {list(srch.fresh_seeds({c.seed for c in cells}))}; "
            "nothing was run\n")


def run_search(spec: ExperimentSpec, opts: SweepOptions | None = None) -> SearchSummary:
    """Every variant's study at once on Ray Tune, every trial logged to MLflow as a cell."""
    from ablate.spec import plan_rows

    from ._callback import SweepCallback

    opts = opts or SweepOptions()
    _need_search(spec)
    t0 = time.perf_counter()
    setup = prepare(spec, opts)
    for note in setup.tracker.claim(spec.name):  # refuses while another driver runs the experiment
        setup.stream.write(note + "\n")
    os.environ.setdefault("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1")  # not every report carries val/psnr
    init_ray(opts.address, None)  # before MLflow is written to: a cluster that refuses us leaves no trace
    url = storage_url(setup.tracker.tracking_uri, setup.state_dir)
    studies = VariantStudies.open(url, spec, setup.cells, variant_labels(spec, setup.cells))
    parent = setup.tracker.start_sweep(spec.name, spec.hash, spec.source_text, plan_rows(setup.cells), tags=_TAGS,
                                       driver=True)
    summary = SearchSummary(spec.name, parent, setup.tracker.tracking_uri, storage=url)
    callback = SweepCallback(setup.tracker, parent, {c.id: c.to_config() for c in setup.cells}, setup.store,
                             stream=setup.stream, tags=_TAGS, max_retries=max_retries(spec, opts))
    callback.expected = len(setup.cells) * _need_search(spec).num_samples
    status = State.FINISHED  # the search run's MLflow state
    try:
        _fit(spec, opts, setup, studies, callback, summary)
        if status == State.FINISHED and CellStatus.KILLED in callback.statuses().values():
            status = State.KILLED  # Ray Tune turns Ctrl-C into a graceful stop, not an exception
    except KeyboardInterrupt:
        status = State.KILLED
    except BaseException:
        status = State.FAILED
        raise
    finally:
        callback.close()
        summary.statuses = callback.statuses()
        summary.failures = {cid: f.value for cid, f in callback.failures.items()}
        summary.cell_s = dict(callback.cell_seconds)
        summary.log_file = setup.log_file if setup.log_file.exists() else None
        if status == State.FINISHED:
            _conclude(spec, setup, studies, summary)
        setup.tracker.end_sweep(parent, status)
        summary.mlflow_s = setup.tracker.log_time
        summary.wall_s = time.perf_counter() - t0
    return summary


def _need_search(spec: ExperimentSpec) -> Any:
    if spec.search is None:
        raise AblateError(f"{spec.file or spec.name}: search: expected a 'search' section "
                          "(metric, mode, num_samples, space) for `ablate search`")
    return spec.search


def _fit(spec: ExperimentSpec, opts: SweepOptions, setup: Setup, studies: VariantStudies,
         callback: SweepCallback, summary: SearchSummary) -> None:
    """One Tune run over the trials of every study."""
    import ray
    from ray.tune import FailureConfig, RunConfig, TuneConfig, Tuner

    from ._searcher import StudyPruner, StudySearcher
    from ._trial import trainable

    srch = spec.search
    assert srch is not None
    cpus, gpus, max_conc = trial_resources(spec, opts)
    if studies.finished():
        setup.stream.write(f"search: every study of {spec.name!r} already has its {srch.num_samples} trials\n")
        return
    setup.stream.write(f"search: {len(setup.cells)} studies × {srch.num_samples} trials at once over "
                       f"{', '.join(srch.space)} ({cpus:g} CPU{f', {gpus:g} GPU' if gpus else ''} per trial); "
                       f"studies in {summary.storage}\n")
    storage_path, storage_fs = setup.store.ray_storage()
    tuner = Tuner(
        trainable({c.id: c.to_config() for c in setup.cells}, setup.store, cpus, gpus),
        param_space={},
        tune_config=TuneConfig(search_alg=StudySearcher(studies, srch.metric, srch.mode),
                               scheduler=StudyPruner(studies, srch.metric),
                               num_samples=-1, max_concurrent_trials=max_conc,
                               # as a sweep's: an ended (or pruned) trial's worker takes the next one
                               reuse_actors=True),
        run_config=RunConfig(name=ray_run_name(spec.name, "search"), storage_path=storage_path,
                             storage_filesystem=storage_fs, verbose=0, callbacks=[callback],
                             failure_config=FailureConfig(max_failures=callback.max_retries)),
    )
    res = ray.cluster_resources()
    fit_slots = int(res.get("GPU", 0) // gpus) if gpus else int(res.get("CPU", 1) // cpus)
    summary.slots = max(1, min(max_conc or fit_slots, fit_slots))
    t_fit = time.perf_counter()
    with warnings.catch_warnings(), ray_output_to(setup.log_file):
        warnings.simplefilter("ignore")
        tuner.fit()
    fit_s = summary.fit_s = time.perf_counter() - t_fit
    summary.busy_share = min(1.0, sum(callback.cell_seconds.values()) / (summary.slots * fit_s)) if fit_s else 0.0


def _conclude(spec: ExperimentSpec, setup: Setup, studies: VariantStudies, summary: SearchSummary) -> None:
    """The best trial per variant (printed, tagged on the search run) and, when every variant has one, the
    confirm experiment."""
    from ._confirm import write_confirm

    srch = spec.search
    assert srch is not None
    for vid, v in studies.variants.items():
        best = studies.best(vid)
        if best is None:
            setup.stream.write(f"no finished trial for {v.label} ({vid})\n")
            continue
        summary.best[vid] = best
        setup.stream.write(f"best for {v.label} ({vid}): {srch.metric} = {best[1]:.4g}  {best[0]}\n")
        setup.tracker.set_tags(summary.parent_run_id, {f"{Tag.BEST}{vid}": str(best[0])[:4000]})
    if studies.finished() and len(summary.best) == len(studies.variants):
        path = setup.state_dir / f"{safe_name(spec.name, 'search')}-confirm.yaml"
        write_confirm(spec, setup.cells, {vid: b[0] for vid, b in summary.best.items()}, path)
        summary.confirm_file = path
        seeds = list(srch.fresh_seeds({c.seed for c in setup.cells}))
        setup.stream.write(f"confirm: {path} (each variant at its best values on seeds {seeds}); run it with "
                           f"`ablate run {path}`\n")
    setup.stream.write(f"busy share of {summary.slots} trial slots: {summary.busy_share:.0%}\n")
