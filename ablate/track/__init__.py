"""MLflow tracking: the single writer (:class:`Tracker`) and the reader (:class:`RunStore`).

    from ablate.track import Tracker, cell_run_identity, resolve_tracking_uri
    tracker = Tracker(resolve_tracking_uri(None, None, ".ablate"), ".ablate")
    parent = tracker.start_sweep("quick", spec_hash, yaml_text, plan_rows)
    name, tags = cell_run_identity(cell, "i_ln")           # "i_ln·swinir-tiny·sr-x2·s0", ablate.* tags
    run = tracker.start_cell(parent, cell.id, name, cell.flat_params(), tags)

A driver (``ablate run``, ``resume``, ``search``, ``train --tracking-uri``) first calls
``tracker.claim(name)`` — refused while another driver runs the experiment on the store; the runs of a
driver that is gone end as killed — and starts its sweep with ``driver=True``: a lease (:class:`Lease`,
tags ``ablate.driver.*``) kept fresh by a :class:`Heartbeat` thread until ``end_sweep``. Every writer
logs metrics through ``tracker.log``, which logs each (run, key, step) once.

What lands where (experiments, runs, tags, descriptions, dataset inputs, params, metrics,
artifacts) is written down once, in ``docs/mlflow.md``; the names of tags and run states are the
constants of :class:`Tag` and :class:`State`; :func:`experiment_page` links to an
experiment in MLflow's UI the way ``ablate ui`` does. This is the only subpackage that imports
``mlflow`` (inside functions, so importing it is cheap); cell statuses are
:class:`ablate.status.CellStatus`.
"""

from __future__ import annotations

from ._artifacts import artifact_text, download_artifact
from ._client import seed_sqlite_store
from ._identity import cell_run_identity, cell_run_name, impl_tags
from ._lease import Heartbeat, Lease, heartbeat_interval, lease_tags
from ._names import State, Tag
from ._store import RunStore, latest_per_cell, spaced
from ._tracker import Tracker, git_commit, safe_key
from ._ui import experiment_page
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
    "Heartbeat",
    "Lease",
    "RunStore",
    "State",
    "Tag",
    "Tracker",
    "artifact_text",
    "cell_run_identity",
    "impl_tags",
    "cell_run_name",
    "default_state_dir",
    "default_tracking_uri",
    "download_artifact",
    "experiment_page",
    "git_commit",
    "heartbeat_interval",
    "latest_per_cell",
    "lease_tags",
    "normalize_tracking_uri",
    "resolve_tracking_uri",
    "safe_key",
    "seed_sqlite_store",
    "spaced",
    "sqlite_path",
]
