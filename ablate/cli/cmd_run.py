"""`ablate run`: the sweep."""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from ablate.tune import SweepSummary


def max_retries_option(f: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--max-retries", type=click.IntRange(min=0), default=None,
                        help="Retry a cell whose worker died (killed, preempted, node lost) this many times "
                             "from its last checkpoint (default: the spec's resources.max_retries, else 3).")(f)


def failure_line(summary: SweepSummary, file: str, state_dir: Path) -> str | None:
    """One line counting the failed cells by class, or None when none failed."""
    failed = [cid for cid, status in summary.statuses.items() if status == "failed"]
    if not failed:
        return None
    classes = Counter(summary.failures.get(cid, "crash") for cid in failed)
    kinds = ", ".join(f"{n} {kind}" for kind, n in sorted(classes.items()))
    log = f"; Ray's log: {summary.log_file}" if summary.log_file else ""
    return (f"{len(failed)} of {len(summary.statuses)} cells failed ({kinds}); "
            f"see `ablate status {file} --state-dir {state_dir}`{log}")


def sweep_command(file: str, state_dir: Path, tracking_uri: str | None, address: str | None,
                  cpus_per_trial: float | None, gpus_per_trial: float | None, max_concurrent: int | None,
                  storage: str | None, storage_endpoint: str | None, keep_checkpoints: int,
                  force: bool, dashboard: bool, yes: bool, max_retries: int | None) -> None:
    from ablate.spec import expand
    from ablate.tune import SweepOptions, run_sweep

    spec = load(file)
    confirm_size(spec, state_dir, tracking_uri, yes)
    opts = SweepOptions(state_dir=state_dir, address=address, tracking_uri=tracking_uri,
                        cpus_per_trial=cpus_per_trial, gpus_per_trial=gpus_per_trial,
                        max_concurrent=max_concurrent, storage=storage, storage_endpoint=storage_endpoint,
                        keep_checkpoints=keep_checkpoints, force=force, dashboard=dashboard,
                        max_retries=max_retries)
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
    line = failure_line(summary, file, state_dir)
    if line:
        click.echo(line)
    if not summary.ok:  # a failed or killed cell: only finished and diverged cells are results
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
@storage_options
@max_retries_option
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
    the new cells run); cells that were interrupted resume from their last checkpoint, and a cell
    whose worker dies is retried from it. Exit status 0 when every cell finished or diverged, 1
    otherwise (one line then counts the failed cells by cause: preempted, oom, crash). A grid of more
    than 500 cells asks first (--yes starts it). One driver at a time per experiment and store: a
    second is refused while the first is alive.
    """
    sweep_command(**kwargs)  # type: ignore[arg-type]
