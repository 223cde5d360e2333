"""MLflow tracking: the single writer (:class:`Tracker`) and the reader (:class:`RunStore`).

    from ablate.track import Tracker, cell_run_identity, resolve_tracking_uri
    tracker = Tracker(resolve_tracking_uri(None, None, ".ablate"), ".ablate")
    parent = tracker.start_sweep("quick", spec_hash, yaml_text, plan_rows)
    name, tags = cell_run_identity(cell, "i_ln")           # "i_ln·swinir-tiny·sr-x2·s0", ablate.* tags
    run = tracker.start_cell(parent, cell.id, name, cell.flat_params(), tags)

What lands where (experiments, runs, tags, params, metrics, artifacts) is written down once, in
``docs/mlflow.md``. This is the only subpackage that imports ``mlflow`` (inside functions, so
importing it is cheap); cell statuses are :class:`ablate.status.CellStatus`.
"""

from __future__ import annotations

from ._client import cache_dir, seed_sqlite_store
from ._identity import cell_run_identity, cell_run_name
from ._store import RunStore, latest_per_cell
from ._tracker import Tracker, git_commit, safe_key
from ._uri import (
    DEFAULT_STATE_DIR,
    default_state_dir,
    default_tracking_uri,
    normalize_tracking_uri,
    resolve_tracking_uri,
    sqlite_path,
)

__all__ = [
    "DEFAULT_STATE_DIR",
    "RunStore",
    "Tracker",
    "cache_dir",
    "cell_run_identity",
    "cell_run_name",
    "default_state_dir",
    "default_tracking_uri",
    "git_commit",
    "latest_per_cell",
    "normalize_tracking_uri",
    "resolve_tracking_uri",
    "safe_key",
    "seed_sqlite_store",
    "sqlite_path",
]
