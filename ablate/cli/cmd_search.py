"""`ablate search`: Optuna hyperparameter search per base cell."""

from __future__ import annotations

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


@click.command("search")
@click.argument("file", type=click.Path(dir_okay=False))
@state_dir_option
@tracking_option
@cluster_options
@storage_options
@yes_option
def command(file: str, state_dir, tracking_uri, address, cpus_per_trial, gpus_per_trial,  # type: ignore[no-untyped-def]
            max_concurrent, storage, storage_endpoint, keep_checkpoints, yes) -> None:
    """Tune hyperparameters with Optuna (TPE) on Ray Tune, one study per base cell of the grid.

    \b
        ablate search experiments/paper/search-lr.yaml

    The file needs a `search:` section: metric (val/psnr), mode (max), num_samples, space
    ({train.optimizer.lr: {type: loguniform, low: 1e-4, high: 2e-3}}), scheduler (asha | none).
    More than 500 trials in all ask first (--yes starts them).
    """
    from ablate.tune import SweepOptions, run_search

    spec = load(file)
    confirm_size(spec, state_dir, tracking_uri, yes, trials_per_cell=spec.search.num_samples if spec.search else 1)
    summary = run_search(spec, SweepOptions(state_dir=state_dir, address=address, tracking_uri=tracking_uri,
                                            cpus_per_trial=cpus_per_trial, gpus_per_trial=gpus_per_trial,
                                            max_concurrent=max_concurrent, storage=storage,
                                            storage_endpoint=storage_endpoint,
                                            keep_checkpoints=keep_checkpoints, dashboard=False))
    click.echo(f"{spec.name}: {len(summary.statuses)} trials in {summary.wall_s:.0f} s; "
               f"MLflow {summary.tracking_uri}")
