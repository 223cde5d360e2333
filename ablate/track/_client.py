"""The one way ablate opens an MLflow client, shared by the writer and the reader.

    from ablate.track._client import mlflow_client
    client = mlflow_client("sqlite:////abs/.ablate/mlflow.db")

Both :class:`~ablate.track.Tracker` and :class:`~ablate.track.RunStore` build their client here,
so neither imports the other for it; :func:`transient` is the one rule for which failures of a store
are worth retrying. Of this package it imports only the leaf ``_uri``.

A new SQLite store starts as a copy of an empty one: MLflow builds a database by running its schema
migrations (68 in MLflow 3.17), 1–9 s measured on a busy 2-core VM and up to 20 s reported, most of
it waiting for the disk to sync each one. The first new store builds that empty database once per
MLflow version in the user's cache (``$ABLATE_CACHE_DIR``, else ``$XDG_CACHE_HOME/ablate``, else
``~/.cache/ablate``) without the syncs, and every later one copies it (0.1 s). Without a writable
cache MLflow builds the store itself.
"""

from __future__ import annotations

import logging
import os
import shutil
import sqlite3
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

from ablate.cache import cache_dir

from ._uri import is_file_store, sqlite_path

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
    """An ``MlflowClient`` on ``uri`` (mlflow is imported here, on first use, with its import warnings muted);
    a SQLite store that does not exist yet starts as a copy of the cached empty one."""
    configure_env(uri)
    db = sqlite_path(uri)
    if db is not None and not db.exists():
        seed_sqlite_store(db)
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


def _schema_version(db: Path) -> str | None:
    """The alembic revision of an MLflow SQLite database (None: not one, or unreadable)."""
    try:
        with sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True) as con:
            row = con.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.Error:
        return None
    return str(row[0]) if row else None


def empty_store_template(cache: Path | None = None) -> Path:
    """The cached empty MLflow SQLite database of the installed MLflow version, built when missing.

    Built in a scratch file with SQLite's syncs off (a crash leaves only the scratch file), then
    renamed into place, so a concurrent reader never sees half a database. OSError when the cache
    is not writable.
    """
    from importlib import metadata

    template = (cache or cache_dir()) / f"mlflow-{metadata.version('mlflow')}" / "mlflow.db"
    if template.exists() and _schema_version(template):
        return template
    template.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="build-", dir=template.parent))
    try:
        _build_store(scratch / "mlflow.db")
        with open(scratch / "mlflow.db", "rb") as f:
            os.fsync(f.fileno())  # the one sync the migrations skipped
        os.replace(scratch / "mlflow.db", template)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return template


def _build_store(db: Path) -> None:
    """Let MLflow create its schema in ``db``, every SQLite connection made meanwhile unsynced."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    def unsynced(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA synchronous = OFF")
        cursor.execute("PRAGMA journal_mode = MEMORY")
        cursor.close()

    uri = "sqlite:///" + db.resolve().as_posix()
    configure_env(uri)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from mlflow import MlflowClient

    event.listen(Engine, "connect", unsynced)
    try:
        MlflowClient(tracking_uri=uri).get_experiment_by_name("Default")  # runs the migrations
    finally:
        event.remove(Engine, "connect", unsynced)


def seed_sqlite_store(db: Path, cache: Path | None = None) -> bool:
    """Make ``db`` (which must not exist) a copy of the cached empty store; False when the cache could
    not serve one (MLflow then builds the store itself). An existing ``db`` is never overwritten.

    MLflow's own new store has a ``Default`` experiment whose artifacts go to ``./mlruns/0`` of the
    working directory of the process that created it; the copy gets this process's, as MLflow's would.
    """
    try:
        template = empty_store_template(cache)
    except Exception as err:  # no cache (no home, read-only, full disk): MLflow builds it, and says what fails
        _log.debug("no cached empty MLflow store (%s); MLflow builds the schema", err)
        return False
    db.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".mlflow-", suffix=".db", dir=db.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        shutil.copyfile(template, tmp)
        now = int(time.time() * 1000)
        with sqlite3.connect(tmp) as con:
            con.execute("UPDATE experiments SET artifact_location = ?, creation_time = ?, last_update_time = ? "
                        "WHERE experiment_id = 0", (str(Path.cwd() / "mlruns" / "0"), now, now))
        con.close()
        try:
            os.link(tmp, db)  # fails when another process created the store meanwhile: keep theirs
        except FileExistsError:
            pass
        except OSError:  # a file system without hard links
            if not db.exists():
                os.replace(tmp, db)
    except (OSError, sqlite3.Error) as err:
        _log.debug("could not copy the cached empty MLflow store into %s: %s", db, err)
        return False
    finally:
        tmp.unlink(missing_ok=True)
    return True
