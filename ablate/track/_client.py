"""The one way ablate opens an MLflow client, shared by the writer and the reader.

    from ablate.track._client import mlflow_client
    client = mlflow_client("sqlite:////abs/.ablate/mlflow.db")

Both :class:`~ablate.track.Tracker` and :class:`~ablate.track.RunStore` build their client here,
so neither imports the other for it. Of this package it imports only the leaf ``_uri``.
"""

from __future__ import annotations

import logging
import os
import warnings
from typing import Any

from ._uri import is_file_store

_log = logging.getLogger(__name__)


def configure_env(uri: str) -> None:
    """Environment MLflow reads at call time; set before the first client call."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    if is_file_store(uri):
        os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"  # MLflow 3 refuses file stores otherwise
    # MLFLOW_RUN_ID would silently redirect fluent-API logging in Ray workers to that run.
    if os.environ.pop("MLFLOW_RUN_ID", None):
        _log.warning("ignoring MLFLOW_RUN_ID: ablate creates its own runs")
    # Alembic prints a page of INFO lines when it creates the database tables.
    for name in ("alembic", "mlflow.store.db.utils", "mlflow.tracking.fluent"):
        logging.getLogger(name).setLevel(logging.WARNING)


def mlflow_client(uri: str) -> Any:
    """An ``MlflowClient`` on ``uri`` (mlflow is imported here, on first use, with its import warnings muted)."""
    configure_env(uri)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri)
