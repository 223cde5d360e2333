"""Where results go: the tracking URI, resolved once and always absolute.

    from ablate.track import resolve_tracking_uri
    uri = resolve_tracking_uri(None, None, ".ablate")   # 'sqlite:////abs/.ablate/mlflow.db'

Precedence: the CLI value (``--tracking-uri``) > ``MLFLOW_TRACKING_URI`` > the experiment spec's
``tracking.uri`` > the embedded default, SQLite under the state folder. Relative local paths are made
absolute here because Ray workers and ``mlflow ui`` run in other working directories.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import unquote, urlparse

DEFAULT_STATE_DIR = ".ablate"
ENV_STATE_DIR = "ABLATE_STATE_DIR"
_REMOTE_SCHEMES = ("http", "https", "databricks", "databricks-uc", "uc")
_SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3")


def default_state_dir(env: Mapping[str, str] | None = None) -> Path:
    """``$ABLATE_STATE_DIR`` or ``.ablate`` (relative to the working directory)."""
    env = os.environ if env is None else env
    return Path(env.get(ENV_STATE_DIR) or DEFAULT_STATE_DIR)


def default_tracking_uri(state_dir: str | Path) -> str:
    """``sqlite:////abs/<state_dir>/mlflow.db`` (four slashes: an absolute path)."""
    return "sqlite:///" + Path(state_dir).expanduser().resolve().joinpath("mlflow.db").as_posix()


def resolve_tracking_uri(cli_value: str | None = None, spec_value: str | None = None,
                         state_dir: str | Path = DEFAULT_STATE_DIR, *,
                         env: Mapping[str, str] | None = None) -> str:
    """The tracking URI to use: CLI > env ``MLFLOW_TRACKING_URI`` > spec ``tracking.uri`` > default.

    Empty strings count as unset. The result is normalized by :func:`normalize_tracking_uri`.
    """
    env = os.environ if env is None else env
    for value in (cli_value, env.get("MLFLOW_TRACKING_URI"), spec_value):
        if value is not None and str(value).strip():
            return normalize_tracking_uri(str(value).strip())
    return default_tracking_uri(state_dir)


def normalize_tracking_uri(uri: str, base: str | Path | None = None) -> str:
    """Make a local store URI absolute; leave server and database URIs as they are.

    ``sqlite:///runs.db`` → ``sqlite:////cwd/runs.db``; ``./mlruns`` or ``file:mlruns`` →
    ``file:///cwd/mlruns``; a bare path ending in ``.db`` becomes a SQLite URI.
    """
    root = Path(base) if base is not None else Path.cwd()
    scheme = urlparse(uri).scheme.lower()
    if scheme == "sqlite":
        prefix = "sqlite:///"
        if not uri.startswith(prefix) or uri in (prefix, "sqlite://"):
            return uri  # sqlite:// is an in-memory database: nothing to resolve
        path = uri[len(prefix):]
        if path.startswith("/") or path == ":memory:":
            return uri
        return prefix + (root / path).resolve().as_posix()
    if scheme == "file":
        parsed = urlparse(uri)
        path = unquote(parsed.netloc + parsed.path) if parsed.netloc not in ("", "localhost") else unquote(parsed.path)
        return (root / path).resolve().as_uri()
    if scheme and len(scheme) > 1:  # "c:" would be a Windows drive letter, i.e. a path
        return uri
    local = (root / Path(uri).expanduser()).resolve()
    if local.suffix.lower() in _SQLITE_SUFFIXES:
        return "sqlite:///" + local.as_posix()
    return local.as_uri()


def is_remote(uri: str) -> bool:
    """True for a tracking server (it owns artifact storage), False for a database or file store."""
    return urlparse(uri).scheme.lower() in _REMOTE_SCHEMES


def is_file_store(uri: str) -> bool:
    return urlparse(uri).scheme.lower() == "file"


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI (None for other stores and in-memory databases)."""
    if not uri.startswith("sqlite:///"):
        return None
    path = uri[len("sqlite:///"):].split("?", 1)[0]
    if not path or path == ":memory:":
        return None
    return Path(path)
