"""`ablate run`: the sweep."""

from __future__ import annotations

import sys
from pathlib import Path

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


def sweep_command(file: str, state_dir: Path, tracking_uri: str | None, address: str | None,
                  cpus_per_trial: float | None, gpus_per_trial: float | None, max_concurrent: int | None,
                  storage: str | None, storage_endpoint: str | None, keep_checkpoints: int,
                  force: bool, dashboard: bool, yes: bool) -> None:
    from ablate.tune import SweepOptions, run_sweep

    spec = load(file)
    confirm_size(spec, state_dir, tracking_uri, yes)
    opts = SweepOptions(state_dir=state_dir, address=address, tracking_uri=tracking_uri,
                        cpus_per_trial=cpus_per_trial, gpus_per_trial=gpus_per_trial,
                        max_concurrent=max_concurrent, storage=storage, storage_endpoint=storage_endpoint,
                        keep_checkpoints=keep_checkpoints, force=force, dashboard=dashboard)
    summary = run_sweep(spec, opts)
    counts: dict[str, int] = {}
    for status in summary.statuses.values():
        counts[status] = counts.get(status, 0) + 1
    click.echo(f"\n{spec.name}: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
               + f" in {summary.wall_s:.0f} s")
    click.echo(f"results: MLflow {summary.tracking_uri} (experiment {spec.name!r}); "
               f"open with `ablate ui --state-dir {state_dir}`")
    if summary.dashboard:
        click.echo(f"dashboard: {summary.dashboard}")
    if any(s in ("failed", "killed") for s in summary.statuses.values()):
        sys.exit(1)


@click.command("run")
@click.argument("file", type=click.Path(dir_okay=False))
@state_dir_option
@tracking_option
@cluster_options
@storage_options
@click.option("--force", is_flag=True, help="Rerun cells that already finished.")
@click.option("--no-dashboard", "dashboard", flag_value=False, default=True,
              help="Do not build the dashboard at the end.")
@yes_option
def command(**kwargs: object) -> None:
    """Run every cell of an experiment on Ray Tune and log it to MLflow.

    \b
        ablate run experiments/quickstart.yaml
        ablate run experiments/paper/hat-mini-sr.yaml --address auto --gpus-per-trial 1
        ablate run experiments/quickstart.yaml --address head:6379 --storage s3://team/ablate

    Cells that already finished in the same MLflow experiment are skipped (extend a grid and only
    the new cells run); cells that were interrupted resume from their last checkpoint. Exit status 1
    when a cell failed. A grid of more than 500 cells asks first (--yes starts it). One driver at a
    time per experiment and store: a second is refused while the first is alive.
    """
    sweep_command(**kwargs)  # type: ignore[arg-type]
