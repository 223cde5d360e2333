"""Options shared by the commands that run sweeps."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from ablate.errors import AblateError

F = Callable[..., Any]


def state_dir_option(f: F) -> F:
    return click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path), default=Path(".ablate"),
                        show_default=True, envvar="ABLATE_STATE_DIR",
                        help="Where the SQLite MLflow store, dashboards, logs and (without --storage) checkpoints and "
                             "Ray Tune's state live.")(f)


def tracking_option(f: F) -> F:
    return click.option("--tracking-uri", default=None, metavar="URI",
                        help="MLflow tracking URI (default: MLFLOW_TRACKING_URI, the spec's tracking.uri, "
                             "then SQLite in the state folder).")(f)


def cluster_options(f: F) -> F:
    for opt in reversed([
        click.option("--address", default=None, metavar="ADDR",
                     help="An existing Ray cluster, host:port of its head (RAY_ADDRESS wins when set); its "
                          "token comes from RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token. "
                          "Default: a local Ray."),
        click.option("--cpus-per-trial", type=click.FloatRange(min=0.01), default=None,
                     help="CPUs per cell (default: the spec's resources, else 1)."),
        click.option("--gpus-per-trial", type=click.FloatRange(min=0), default=None,
                     help="GPUs per cell (default: the spec's resources, else 0)."),
        click.option("--max-concurrent", type=click.IntRange(min=1), default=None,
                     help="At most this many cells at once (default: as many as resources allow)."),
    ]):
        f = opt(f)
    return f


def storage_options(f: F) -> F:
    for opt in reversed([
        click.option("--storage", default=None, metavar="URI", envvar="ABLATE_STORAGE",
                     help="Where checkpoints and Ray Tune's state go: a folder every node sees, or an object "
                          "store (s3://BUCKET/PREFIX). Default: the state folder."),
        click.option("--storage-endpoint", default=None, metavar="URL",
                     help="An S3-compatible server for s3:// storage (MinIO, Ceph: http://host:9000). "
                          "Default: AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, else AWS itself."),
        click.option("--keep-checkpoints", type=click.IntRange(min=1), default=1, show_default=True,
                     help="Checkpoints kept per cell, the latest ones."),
    ]):
        f = opt(f)
    return f


def load(file: str) -> Any:
    from ablate.spec import load_experiment

    return load_experiment(file)


LARGE_GRID = 500  # cells (a search: trials) above which a sweep asks before it starts


def yes_option(f: F) -> F:
    return click.option("--yes", "-y", is_flag=True,
                        help=f"Start a grid of more than {LARGE_GRID} cells (trials) without asking.")(f)


def _interactive() -> bool:
    return sys.stdin.isatty()


def _duration(seconds: float) -> str:
    for unit, size in (("days", 86400.0), ("h", 3600.0), ("min", 60.0)):
        if seconds >= 2 * size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"


def _time_estimate(spec: Any, steps: int, state_dir: Path, tracking_uri: str | None) -> str:
    """`` (≈ 12.5 h of trial time at 0.15 s/step, measured on 40 finished cells)`` from the cells of the
    experiment that finished in a local SQLite store; "" when there are none (or the store is a server:
    the guard stays offline and quick)."""
    from ablate.track import RunStore, resolve_tracking_uri, sqlite_path

    uri = resolve_tracking_uri(tracking_uri, spec.tracking.uri, state_dir)
    if sqlite_path(uri) is None:
        return ""
    timed = [(r["metrics"]["time/total_s"], r["metrics"]["steps"]) for r in RunStore(uri).runs(spec.name)
             if r["status"] == "finished" and r["metrics"].get("time/total_s", 0) > 0
             and r["metrics"].get("steps", 0) > 0]
    if not timed:
        return ""
    rate = sum(t for t, _ in timed) / sum(n for _, n in timed)
    return (f" (≈ {_duration(rate * steps)} of trial time at {rate:.3g} s/step, measured on {len(timed)} "
            f"finished cell{'s' if len(timed) != 1 else ''})")


def confirm_size(spec: Any, state_dir: Path, tracking_uri: str | None, yes: bool, *, trials_per_cell: int = 1) -> None:
    """Above :data:`LARGE_GRID` cells (a search: trials), print the size and the cost (training steps,
    and the time when finished cells of the experiment tell it) and ask; without a terminal, refuse
    in one line unless ``--yes``. A slip in a grid (one axis too many) costs days of compute."""
    from ablate.spec import expand

    cells = expand(spec)
    n = len(cells) * trials_per_cell
    if n <= LARGE_GRID or yes:
        return
    steps = sum(c.train.steps for c in cells) * trials_per_cell
    size = (f"{n:,} cells" if trials_per_cell == 1
            else f"{len(cells):,} base cells × {trials_per_cell:,} trials = {n:,} trials")
    cost = f"{spec.file or spec.name}: {size}, {steps:,} training steps"
    cost += _time_estimate(spec, steps, state_dir, tracking_uri)
    if not _interactive():
        raise AblateError(f"{cost}; that is more than {LARGE_GRID}: pass --yes to start it")
    click.echo(cost)
    if not click.confirm("start it?", default=False):
        raise click.Abort()
