"""`ablate search`: Optuna hyperparameter search per base cell."""

from __future__ import annotations

import sys

import click

from ._options import (
    cluster_options,
    confirm_size,
    load,
    state_dir_option,
    storage_options,
    tracking_option,
    yes_option,
)
from .cmd_run import failure_line, max_retries_option


@click.command("search")
@click.argument("file", type=click.Path(dir_okay=False))
@state_dir_option
@tracking_option
@cluster_options
@storage_options
@yes_option
@max_retries_option
@click.option("--preview", is_flag=True,
              help="Print per variant the trials, rungs and estimated training steps, and run nothing.")
def command(file: str, state_dir, tracking_uri, address, cpus_per_trial, gpus_per_trial,  # type: ignore[no-untyped-def]
            max_concurrent, storage, storage_endpoint, keep_checkpoints, yes, max_retries, preview=False) -> None:
    """Tune hyperparameters with Optuna (TPE) on Ray Tune: one study per variant (base cell of the
    grid), the trials of every study at once in one resource pool.

    \b
        ablate search experiments/search-lr-tiny.yaml --preview
        ablate search experiments/paper/search-lr.yaml

    The file needs a `search:` section: metric (val/psnr), mode (max), num_samples, space
    ({train.optimizer.lr: {type: loguniform, low: 1e-4, high: 2e-3}}), scheduler (asha | hyperband |
    none). Every variant gets the same trials, space, seed and rungs; a failed trial is run again.
    The studies are kept beside the MLflow store: run the same command again (or `ablate resume`)
    to continue a stopped search. A finished search writes <state>/<name>-confirm.yaml (each variant
    at its best values on fresh seeds) for `ablate run`. More than 500 trials in all ask first (--yes
    starts them). Exit status 1 when a trial failed for good or the search was interrupted (trials
    stopped early by ASHA are results).
    """
    from ablate.tune import SweepOptions, run_search

    spec = load(file)
    if preview:
        from ablate.tune import search_preview

        click.echo(search_preview(spec), nl=False)
        return
    confirm_size(spec, state_dir, tracking_uri, yes, trials_per_cell=spec.search.num_samples if spec.search else 1)
    summary = run_search(spec, SweepOptions(state_dir=state_dir, address=address, tracking_uri=tracking_uri,
                                            cpus_per_trial=cpus_per_trial, gpus_per_trial=gpus_per_trial,
                                            max_concurrent=max_concurrent, storage=storage,
                                            storage_endpoint=storage_endpoint, keep_checkpoints=keep_checkpoints,
                                            dashboard=False, max_retries=max_retries))
    # a SearchSummary; read tolerantly, since stand-ins for run_search may return a plain SweepSummary
    storage, confirm = getattr(summary, "storage", ""), getattr(summary, "confirm_file", None)
    click.echo(f"{spec.name}: {len(summary.statuses)} trials in {summary.wall_s:.0f} s; "
               f"MLflow {summary.tracking_uri}{f'; studies {storage}' if storage else ''}")
    line = failure_line(summary, file, state_dir)
    if line:
        click.echo(line)
    if confirm is not None:
        click.echo(f"confirm experiment: {confirm}")
    if any(status in ("failed", "killed") for status in summary.statuses.values()):
        sys.exit(1)
