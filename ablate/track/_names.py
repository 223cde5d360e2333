"""Every name ablate writes into MLflow, once: run tags, the experiment tag, dataset tags, run states.

    from ablate.track import State, Tag
    tracker.set_tags(run_id, {Tag.WARNING: "checkpoint unreadable"})
    runs = [r for r in store.runs("quick") if r["tags"].get(Tag.MODE) == "train"]
    f"{Tag.EVAL}{set_name}"                      # a prefix: ablate.eval.<set>
    tracker.end_sweep(parent, State.KILLED)

docs/mlflow.md lists each of them (and tests/track/test_tag_names.py checks that it lists exactly these);
MLflow keeps its own the same way (``mlflow.utils.mlflow_tags``). A name ending in ``.`` is a prefix:
the tag is the prefix plus a key (a set, a base cell, a component kind). Values of ``ablate.status``
are :class:`ablate.status.CellStatus`; a cell status maps to its run state with ``mlflow_state``.
Imports nothing: any module of ``ablate.track`` and its users may use it.
"""

from __future__ import annotations

from typing import Final


class Tag:
    """Tag names (the values are what MLflow stores and the UI shows)."""

    # the sweep (parent) run of `ablate run`, `resume`, `search` and `train --tracking-uri`
    SWEEP: Final = "ablate.sweep"  # "1": marks the parent run
    SPEC_HASH: Final = "ablate.spec_hash"
    VERSION: Final = "ablate.version"
    CELLS: Final = "ablate.cells"  # cells in the plan
    GIT_COMMIT: Final = "ablate.git_commit"
    MODE: Final = "ablate.mode"  # "train" for `ablate train`
    SEARCH: Final = "ablate.search"  # "optuna" for `ablate search` (its cell runs too)
    BEST: Final = "ablate.best."  # + base cell id: a search's best sampled config
    # the lease of the driver that runs the sweep (ablate.track._lease)
    DRIVER_HOST: Final = "ablate.driver.host"
    DRIVER_PID: Final = "ablate.driver.pid"
    DRIVER_STARTED: Final = "ablate.driver.started"
    DRIVER_HEARTBEAT: Final = "ablate.driver.heartbeat"
    DRIVER_INTERVAL: Final = "ablate.driver.interval"
    # sweep and cell runs
    STATUS: Final = "ablate.status"  # a CellStatus value
    REASON: Final = "ablate.reason"
    # a cell (child) run
    CELL: Final = "ablate.cell"  # the cell id
    FAILURE: Final = "ablate.failure"  # a Failure value: preempted, oom, crash
    WARNING: Final = "ablate.warning"
    NORM: Final = "ablate.norm"  # the variant label
    PAIRING: Final = "ablate.pairing"
    SOURCE: Final = "ablate.source."  # + component kind (norm, backbone, task, data): where it came from
    ATTEMPT: Final = "ablate.attempt"
    PREVIOUS_PARENT: Final = "ablate.previous_parent"
    EVAL: Final = "ablate.eval."  # + test set: how `ablate eval` scored it (JSON)
    IMPL: Final = "ablate.impl."  # + a key of Trainer.provenance(): how the cell was computed (not in its id)
    SYNTHETIC: Final = "ablate.synthetic"  # "1": logged by ablate.testing.synthetic, not trained
    # MLflow's own tags, as ablate sets them
    PARENT_RUN: Final = "mlflow.parentRunId"
    NOTE: Final = "mlflow.note.content"  # the run's Markdown description
    SOURCE_GIT_COMMIT: Final = "mlflow.source.git.commit"
    EXPERIMENT_KIND: Final = "mlflow.experimentKind"  # an experiment tag
    # a cell's dataset input
    DATASET_CONTEXT: Final = "mlflow.data.context"  # tag of the input
    DATA: Final = "ablate.data"  # tag in the source of a dataset that is not a folder: its name


class State:
    """MLflow run states (``RunStatus`` names) ablate writes and reads."""

    RUNNING: Final = "RUNNING"
    FINISHED: Final = "FINISHED"
    FAILED: Final = "FAILED"
    KILLED: Final = "KILLED"
    SCHEDULED: Final = "SCHEDULED"  # never written by ablate; a reader takes it for running
    ENDED: Final = (FINISHED, FAILED, KILLED)  # what a sweep run may end as


def names(kind: type) -> dict[str, str]:
    """``{constant: value}`` of :class:`Tag` or :class:`State` (the string ones)."""
    return {k: v for k, v in vars(kind).items() if k.isupper() and isinstance(v, str)}
