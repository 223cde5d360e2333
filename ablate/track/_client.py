"""The one way ablate opens an MLflow client, shared by the writer and the reader.

    from ablate.track._client import mlflow_client
    client = mlflow_client("sqlite:////abs/.ablate/mlflow.db")

Both :class:`~ablate.track.Tracker` and :class:`~ablate.track.RunStore` build their client here,
so neither imports the other for it; :func:`transient` is the one rule for which failures of a store
are worth retrying. Of this package it imports only the leaf ``_uri``.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import warnings
from typing import Any

from ._uri import is_file_store

# MLflow error codes that say "try again later", whatever the store (a locked SQLite database is
# TEMPORARILY_UNAVAILABLE); a tracking server's INTERNAL_ERROR also covers "could not connect".
_RETRY_CODES = frozenset({"TEMPORARILY_UNAVAILABLE", "DEADLINE_EXCEEDED", "REQUEST_LIMIT_EXCEEDED",
                          "SERVICE_UNDER_MAINTENANCE", "RESOURCE_EXHAUSTED"})
_RETRY_HTTP = frozenset({408, 429, 500, 502, 503, 504})

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


def quick_http_retries() -> None:
    """Ask MLflow for 2 quick retries of an HTTP request (about 2 s) instead of its default 7 over
    about 4 minutes, during which the caller — the driver's Tune loop — is blocked. The writer backs
    off on its own, keeping metrics buffered meanwhile (:class:`~ablate.track.Tracker`). Variables the
    user set are left alone."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")


def mlflow_client(uri: str) -> Any:
    """An ``MlflowClient`` on ``uri`` (mlflow is imported here, on first use, with its import warnings muted)."""
    configure_env(uri)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri)


def transient(err: BaseException, remote: bool) -> bool:
    """Whether ``err`` from a store call may pass if tried again: the store unreachable, busy or
    failing on its side (5xx). ``remote``: a tracking server, where MLflow reports a refused
    connection as an internal error; on a local store an internal error is a bug and is not retried."""
    if isinstance(err, (ConnectionError, TimeoutError)):
        return True
    if isinstance(err, sqlite3.OperationalError):  # RunStore's own reads of a SQLite store
        return "locked" in str(err) or "busy" in str(err)
    from mlflow.exceptions import MlflowException
    from requests.exceptions import ConnectionError as RequestsConnectionError
    from requests.exceptions import Timeout

    if isinstance(err, (RequestsConnectionError, Timeout)):
        return True

    if not isinstance(err, MlflowException):
        return False
    if err.error_code in _RETRY_CODES or "database is locked" in str(err):  # some store paths wrap it as internal
        return True
    return remote and err.get_http_status_code() in _RETRY_HTTP
