"""`ablate run`: the sweep."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from ._options import cluster_options, load, state_dir_option, tracking_option


def sweep_command(file: str, state_dir: Path, tracking_uri: str | None, address: str | None,
                  cpus_per_trial: float | None, gpus_per_trial: float | None, max_concurrent: int | None,
                  force: bool, dashboard: bool) -> None:
    from ablate.spec import expand
    from ablate.tune import SweepOptions, run_sweep

    spec = load(file)
    opts = SweepOptions(state_dir=state_dir, address=address, tracking_uri=tracking_uri,
                        cpus_per_trial=cpus_per_trial, gpus_per_trial=gpus_per_trial,
                        max_concurrent=max_concurrent, force=force, dashboard=dashboard)
    summary = run_sweep(spec, opts)
    counts: dict[str, int] = {}
    for status in summary.statuses.values():
        counts[status] = counts.get(status, 0) + 1
    click.echo(f"\n{spec.name}: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
               + f" in {summary.wall_s:.0f} s")
    _echo_signal(spec.name, summary.tracking_uri, [c.id for c in expand(spec)])
    click.echo(f"results: MLflow {summary.tracking_uri} (experiment {spec.name!r}); "
               f"open with `ablate ui --state-dir {state_dir}`")
    if summary.dashboard:
        click.echo(f"dashboard: {summary.dashboard}")
    if any(s in ("failed", "killed") for s in summary.statuses.values()):
        sys.exit(1)


def _echo_signal(experiment: str, tracking_uri: str, cells: list[str]) -> None:
    """The traces of ``cells`` (a plan's ids, in order) first: they reproduce, one seed's PSNR does not."""
    from ablate.report import signal_summary

    try:
        text = signal_summary(experiment, tracking_uri, cells)
    except Exception as err:  # the results are logged; a summary that fails must not hide where they are
        click.echo(f"warning: no trace summary: {type(err).__name__}: {err}", err=True)
        return
    if text:
        click.echo(text)


@click.command("run")
@click.argument("file", type=click.Path(dir_okay=False))
@state_dir_option
@tracking_option
@cluster_options
@click.option("--force", is_flag=True, help="Rerun cells that already finished.")
@click.option("--no-dashboard", "dashboard", flag_value=False, default=True,
              help="Do not build the dashboard at the end.")
def command(**kwargs: object) -> None:
    """Run every cell of an experiment on Ray Tune and log it to MLflow.

    \b
        ablate run experiments/quickstart.yaml
        ablate run experiments/paper/hat-mini-sr.yaml --address auto --gpus-per-trial 1

    Cells that already finished in the same MLflow experiment are skipped (extend a grid and only
    the new cells run); cells that were interrupted resume from their last checkpoint. Exit status 1
    when a cell failed.
    """
    sweep_command(**kwargs)  # type: ignore[arg-type]
