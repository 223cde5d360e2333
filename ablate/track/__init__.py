"""MLflow tracking: the single writer (:class:`Tracker`) and the reader (:class:`RunStore`).

    from ablate.track import Tracker, resolve_tracking_uri
    tracker = Tracker(resolve_tracking_uri(None, None, ".ablate"), ".ablate")
    parent = tracker.start_sweep("quick", spec_hash, yaml_text, plan_rows)

Layout: experiment = the spec's ``name``; one parent run per sweep (tag ``ablate.sweep=1``); one child
run per cell (``mlflow.parentRunId``, ``ablate.cell``, ``ablate.status``, ``ablate.reason``,
``ablate.norm``, ``ablate.pairing``, ``ablate.source.<kind>``), params = the flattened cell config.
This is the only subpackage that imports ``mlflow`` (inside functions, so importing it is cheap).
"""

from __future__ import annotations

from ._store import STATUSES, TERMINAL_OK, RunStore, latest_per_cell
from ._tracker import CELL_STATUSES, Tracker, git_commit, safe_key
from ._uri import (
    DEFAULT_STATE_DIR,
    default_state_dir,
    default_tracking_uri,
    normalize_tracking_uri,
    resolve_tracking_uri,
    sqlite_path,
)

__all__ = [
    "CELL_STATUSES",
    "DEFAULT_STATE_DIR",
    "STATUSES",
    "TERMINAL_OK",
    "RunStore",
    "Tracker",
    "default_state_dir",
    "default_tracking_uri",
    "git_commit",
    "latest_per_cell",
    "normalize_tracking_uri",
    "resolve_tracking_uri",
    "safe_key",
    "sqlite_path",
]
