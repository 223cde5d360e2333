"""Options shared by the commands that run sweeps."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

F = Callable[..., Any]


def state_dir_option(f: F) -> F:
    return click.option("--state-dir", type=click.Path(file_okay=False, path_type=Path), default=Path(".ablate"),
                        show_default=True, envvar="ABLATE_STATE_DIR",
                        help="Where Ray storage, checkpoints, the SQLite MLflow store and dashboards live.")(f)


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
