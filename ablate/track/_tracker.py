"""The single MLflow writer: one parent run per sweep, one child run per cell, metrics in batches.

    from ablate.track import Tracker
    tracker = Tracker(None, ".ablate")                       # sqlite:////abs/.ablate/mlflow.db
    parent = tracker.start_sweep("quick", "3f2a…", yaml_text, plan_rows)
    run = tracker.start_cell(parent, "c0ffee1234", "token_ln·s0", cell.flat_params(), {"ablate.norm": "token_ln"})
    tracker.log(run, {"train/loss": 0.12, "feat/g0.b0/msq": 1.3}, step=50)   # buffered, no MLflow call
    tracker.end_cell(run, "finished", summary={"final/psnr": 33.1})          # flushes, then terminates
    tracker.end_sweep(parent, "finished")

Only the driver writes (the Tune callback owns one Tracker), so an embedded SQLite store never sees
concurrent writers. Every MLflow call goes through :meth:`Tracker._timed`, so ``log_time`` is the
total time spent in MLflow — a benchmark divides it by the cell time. The layout it writes (run
names, tags, params, metrics, artifacts) is specified in ``docs/mlflow.md``.
"""

from __future__ import annotations

import csv
import io
import json
import posixpath
import re
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ablate.naming import safe_name
from ablate.status import DONE, ENDED, CellStatus

from ._client import mlflow_client
from ._store import RunStore, latest_per_cell
from ._uri import DEFAULT_STATE_DIR, default_tracking_uri, is_file_store, is_remote, normalize_tracking_uri

# MLflow's own limits (mlflow.utils.validation): a request that exceeds them is rejected whole.
MAX_METRICS_PER_BATCH = 1000
MAX_PARAMS_TAGS_PER_BATCH = 100
MAX_PARAM_VALUE = 6000
MAX_TAG_VALUE = 8000
MAX_KEY = 250
# Buffered metrics are also written once they are this old, so a driver killed between two full
# batches loses seconds of points rather than up to 1,000 (resuming restores them either way).
FLUSH_SECONDS = 5.0

_BAD_KEY_CHARS = re.compile(r"[^/\w.\- ]")


def safe_key(key: str) -> str:
    """A metric/param/tag key MLflow accepts: bad characters become ``_``, at most 250 characters."""
    key = _BAD_KEY_CHARS.sub("_", str(key)).strip("/") or "_"
    key = re.sub(r"/+", "/", key)
    if posixpath.normpath(key) != key:  # "a/./b", "../x": MLflow rejects names that resolve elsewhere
        key = key.replace("/", "_")
    return key[:MAX_KEY]


def _param_value(value: Any) -> str:
    text = str(value)
    return text if len(text) <= MAX_PARAM_VALUE else text[:MAX_PARAM_VALUE - 3] + "..."


def _tag_value(value: Any) -> str:
    text = str(value)
    return text if len(text) <= MAX_TAG_VALUE else text[:MAX_TAG_VALUE - 3] + "..."


def _now_ms() -> int:
    return int(time.time() * 1000)


def git_commit(cwd: str | Path | None = None) -> str | None:
    """HEAD's commit of the git repository around ``cwd`` (None outside a repository or without git)."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    commit = out.stdout.strip()
    return commit if out.returncode == 0 and re.fullmatch(r"[0-9a-f]{40,64}", commit) else None


def _plan_csv(rows: Sequence[Mapping[str, Any]]) -> str:
    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: json.dumps(v) if isinstance(v, (dict, list)) else v for k, v in row.items()})
    return buf.getvalue()


class Tracker:
    """Writes sweeps and cells to MLflow through ``MlflowClient`` (never the fluent API).

    ``tracking_uri=None`` means SQLite at ``<state_dir>/mlflow.db``; artifacts of the experiments it
    creates go to ``<state_dir>/mlartifacts/<experiment>`` (unless the URI is a tracking server,
    which owns its artifact storage). Metrics logged with :meth:`log` are buffered and written with
    ``log_batch`` when ``flush_every`` accumulate or the oldest is ``flush_s`` seconds old (checked when
    logging), on :meth:`flush`, and when a cell ends.
    """

    def __init__(self, tracking_uri: str | None = None, state_dir: str | Path = DEFAULT_STATE_DIR, *,
                 flush_every: int = MAX_METRICS_PER_BATCH, flush_s: float | None = None) -> None:
        self.state_dir = Path(state_dir).expanduser().resolve()
        self.tracking_uri = (normalize_tracking_uri(tracking_uri) if tracking_uri
                             else default_tracking_uri(self.state_dir))
        if self.tracking_uri.startswith("sqlite:///") or is_file_store(self.tracking_uri):
            self.state_dir.mkdir(parents=True, exist_ok=True)
        self.flush_every = max(1, int(flush_every))
        self.flush_s = FLUSH_SECONDS if flush_s is None else float(flush_s)
        self._first_buffered = 0.0  # monotonic time the oldest buffered metric arrived
        self.log_time = 0.0  # seconds spent inside MLflow calls
        self.calls = 0  # MLflow requests made
        self._buffer: dict[str, list[Any]] = {}
        self._buffered = 0
        self._last_step: dict[str, int] = {}
        self._attempt: dict[str, int] = {}  # run id -> its ablate.attempt
        self._experiments: dict[str, str] = {}  # name -> id
        self._run_experiment: dict[str, str] = {}  # run id -> experiment id
        t0 = time.perf_counter()
        self.client = mlflow_client(self.tracking_uri)
        from mlflow.entities import Metric, Param, RunTag

        self._Metric, self._Param, self._RunTag = Metric, Param, RunTag
        self.log_time += time.perf_counter() - t0

    def __repr__(self) -> str:
        return f"Tracker({self.tracking_uri!r})"

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Write whatever is still buffered."""
        self.flush()

    @contextmanager
    def _timed(self) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.log_time += time.perf_counter() - t0
            self.calls += 1

    # experiments ------------------------------------------------------------------------------
    def artifact_location(self, experiment: str) -> str | None:
        """Where a new experiment's artifacts go (None: let the tracking server decide)."""
        if is_remote(self.tracking_uri):
            return None
        return (self.state_dir / "mlartifacts" / safe_name(experiment, "experiment")).as_uri()

    def experiment_id(self, name: str, *, create: bool = True) -> str | None:
        """The id of experiment ``name``, created (with ``artifact_location``) when missing."""
        if name in self._experiments:
            return self._experiments[name]
        with self._timed():
            exp = self.client.get_experiment_by_name(name)
            if exp is not None and exp.lifecycle_stage == "deleted":
                # a deleted experiment keeps its name; bring it back rather than fail on create
                self.client.restore_experiment(exp.experiment_id)
            if exp is None:
                if not create:
                    return None
                exp_id = self.client.create_experiment(name, artifact_location=self.artifact_location(name))
            else:
                exp_id = exp.experiment_id
        self._experiments[name] = exp_id
        return exp_id

    # sweeps -----------------------------------------------------------------------------------------
    def start_sweep(self, name: str, spec_hash: str, yaml_text: str, plan_rows: Sequence[Mapping[str, Any]],
                    tags: Mapping[str, Any] | None = None, run_name: str | None = None) -> str:
        """Create the sweep's parent run in experiment ``name``, tag it (plus ``tags``) and log the spec
        and the plan as artifacts (see ``docs/mlflow.md``). Returns the run id."""
        from ablate import __version__

        exp_id = self.experiment_id(name)
        assert exp_id is not None
        all_tags = {"ablate.sweep": "1", "ablate.spec_hash": spec_hash, "ablate.version": __version__,
                    "ablate.status": CellStatus.RUNNING, "ablate.cells": str(len(plan_rows))}
        commit = git_commit()
        if commit:
            all_tags["ablate.git_commit"] = commit
            all_tags["mlflow.source.git.commit"] = commit
        all_tags.update({str(k): v for k, v in (tags or {}).items()})
        with self._timed():
            run = self.client.create_run(exp_id, run_name=run_name or f"sweep-{time.strftime('%Y%m%d-%H%M%S')}",
                                         tags={safe_key(k): _tag_value(v) for k, v in all_tags.items()})
        run_id: str = run.info.run_id
        self._run_experiment[run_id] = exp_id
        self.log_text(run_id, yaml_text, "spec/experiment.yaml")
        self.log_text(run_id, json.dumps(list(plan_rows), indent=1, default=str), "plan/plan.json")
        self.log_text(run_id, _plan_csv(plan_rows), "plan/plan.csv")
        return run_id

    def end_sweep(self, parent_run_id: str, status: str = CellStatus.FINISHED) -> None:
        """Flush everything and terminate the parent run (``finished``, ``failed`` or ``killed``;
        MLflow's upper-case states are accepted too)."""
        self.flush()
        state = status.upper()
        if state not in ("FINISHED", "FAILED", "KILLED"):
            raise ValueError(f"sweep status must be finished, failed or killed, got {status!r}")
        with self._timed():
            self.client.set_tag(parent_run_id, "ablate.status", state.lower())
            self.client.set_terminated(parent_run_id, status=state)

    # cells --------------------------------------------------------------------------------------------
    def _reusable_run(self, exp_id: str, cell_id: str) -> Any | None:
        """The newest run of ``cell_id`` that did not finish (so a resumed cell keeps one run)."""
        with self._timed():
            runs = self.client.search_runs([exp_id], filter_string=f"tags.`ablate.cell` = '{cell_id}'",
                                           max_results=50, order_by=["attributes.start_time DESC"])
        for run in runs:
            if run.data.tags.get("ablate.status") not in DONE:
                return run
        return None

    def start_cell(self, parent_run_id: str, cell_id: str, run_name: str, params: Mapping[str, Any],
                   tags: Mapping[str, Any] | None = None) -> str:
        """The child run of ``cell_id`` under ``parent_run_id``; returns its run id.

        An existing run of the same cell in this experiment that did not finish (running, failed,
        killed, pruned) is reused — re-parented to this sweep, its metrics continued — so a resumed
        cell stays one run. ``params`` (the flattened cell config) are stringified and truncated at
        MLflow's 6,000 characters; params a reused run already has are not logged again (MLflow
        params are immutable). ``run_name`` and ``tags`` come from :func:`ablate.track.cell_run_identity`.
        """
        exp_id = self._run_experiment.get(parent_run_id)
        if exp_id is None:
            with self._timed():
                exp_id = self.client.get_run(parent_run_id).info.experiment_id
            self._run_experiment[parent_run_id] = exp_id
        all_tags = {str(k): v for k, v in (tags or {}).items()}
        all_tags.update({"mlflow.parentRunId": parent_run_id, "ablate.cell": cell_id,
                         "ablate.status": CellStatus.RUNNING, "ablate.reason": ""})
        old = self._reusable_run(exp_id, cell_id)
        if old is None:
            with self._timed():
                run = self.client.create_run(exp_id, run_name=run_name,
                                             tags={safe_key(k): _tag_value(v) for k, v in all_tags.items()})
            run_id: str = run.info.run_id
            have: dict[str, str] = {}
        else:
            run_id = old.info.run_id
            have = dict(old.data.params)
            previous = old.data.tags.get("mlflow.parentRunId")
            if previous and previous != parent_run_id:
                all_tags["ablate.previous_parent"] = previous
            self._attempt[run_id] = int(old.data.tags.get("ablate.attempt", "1")) + 1
            all_tags["ablate.attempt"] = str(self._attempt[run_id])
            with self._timed():
                self.client.update_run(run_id, status="RUNNING")
            self.set_tags(run_id, all_tags)
            # MLflow's "latest" value of a key is the one at the highest step: summary metrics of
            # this attempt must not land below the steps an earlier attempt reached.
            store = RunStore(self.tracking_uri, client=self.client)
            last = store.max_step(run_id)
            self.log_time += store.read_time
            if last is not None:
                self._last_step[run_id] = last
        self._run_experiment[run_id] = exp_id
        todo = [self._Param(safe_key(k), _param_value(v)) for k, v in params.items() if safe_key(k) not in have]
        for i in range(0, len(todo), MAX_PARAMS_TAGS_PER_BATCH):
            with self._timed():
                self.client.log_batch(run_id, params=todo[i:i + MAX_PARAMS_TAGS_PER_BATCH])
        return run_id

    def log(self, run_id: str, metrics: Mapping[str, float | int | None], step: int) -> None:
        """Buffer ``metrics`` at ``step`` (no MLflow call until ``flush_every`` metrics accumulate).

        None values are skipped; NaN and ±inf are kept (MLflow stores them; a diverged cell has them).
        """
        ts = _now_ms()
        step = int(step)
        batch = self._buffer.setdefault(run_id, [])
        before = len(batch)
        if not self._buffered:
            self._first_buffered = time.monotonic()
        for key, value in metrics.items():
            if value is None:
                continue
            batch.append(self._Metric(safe_key(key), float(value), ts, step))
        self._buffered += len(batch) - before
        self._last_step[run_id] = max(step, self._last_step.get(run_id, step))
        if self._buffered >= self.flush_every or (
                self._buffered and time.monotonic() - self._first_buffered >= self.flush_s):
            self.flush()

    def flush(self, run_id: str | None = None) -> None:
        """Write buffered metrics (of one run, or of all) with ``log_batch``, ≤ 1,000 per request."""
        for rid in [run_id] if run_id is not None else list(self._buffer):
            batch = self._buffer.pop(rid, [])
            self._buffered -= len(batch)
            for i in range(0, len(batch), MAX_METRICS_PER_BATCH):
                with self._timed():
                    self.client.log_batch(rid, metrics=batch[i:i + MAX_METRICS_PER_BATCH])

    def points(self, run_id: str) -> dict[str, set[int]]:
        """``{key: steps}`` of every metric point ``run_id`` holds in MLflow (see :meth:`RunStore.points`);
        a writer continuing a reused run skips these, so no (key, step) is ever logged twice."""
        store = RunStore(self.tracking_uri, client=self.client)
        out = store.points(run_id)
        self.log_time += store.read_time
        return out

    def new_attempt(self, run_id: str, tags: Mapping[str, Any] | None = None) -> int:
        """Count one more attempt of a cell run (a retry after its worker died): ``ablate.attempt`` is
        raised and set with ``tags``; returns the new attempt number."""
        attempt = self._attempt.get(run_id, 1) + 1
        self._attempt[run_id] = attempt
        self.set_tags(run_id, {**(tags or {}), "ablate.attempt": str(attempt)})
        return attempt

    def set_tags(self, run_id: str, tags: Mapping[str, Any]) -> None:
        """Set tags (values stringified, truncated at MLflow's 8,000 characters) in ≤ 100-tag batches."""
        items = [self._RunTag(safe_key(k), _tag_value(v)) for k, v in tags.items()]
        for i in range(0, len(items), MAX_PARAMS_TAGS_PER_BATCH):
            with self._timed():
                self.client.log_batch(run_id, tags=items[i:i + MAX_PARAMS_TAGS_PER_BATCH])

    def log_artifact(self, run_id: str, path: str | Path, artifact_path: str | None = None) -> None:
        """Copy a file (or a directory's files) into the run's artifacts, under ``artifact_path``."""
        path = Path(path)
        with self._timed():
            if path.is_dir():
                self.client.log_artifacts(run_id, str(path), artifact_path)
            else:
                self.client.log_artifact(run_id, str(path), artifact_path)

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        """Write ``text`` as the artifact ``artifact_file`` (e.g. ``spec/experiment.yaml``)."""
        with self._timed():
            self.client.log_text(run_id, text, artifact_file)

    def end_cell(self, run_id: str, status: str, reason: str = "",
                 summary: Mapping[str, float | int | None] | None = None, failure: str | None = None) -> None:
        """Flush the cell's metrics, log ``summary`` metrics (at the cell's last step), set
        ``ablate.status``/``ablate.reason`` (and ``ablate.failure`` when ``failure`` is given: the class
        of what failed it, "" for none) and terminate the run: finished and diverged → FINISHED,
        failed → FAILED, pruned and killed → KILLED."""
        if status not in ENDED:
            raise ValueError(f"cell status must be one of {', '.join(ENDED)}, got {status!r}")
        state = CellStatus(status)
        if summary:
            self.log(run_id, summary, self._last_step.get(run_id, 0))
        self.flush(run_id)
        tags = {"ablate.status": state.value, "ablate.reason": reason}
        if failure is not None:
            tags["ablate.failure"] = failure
        self.set_tags(run_id, tags)
        with self._timed():
            self.client.set_terminated(run_id, status=state.mlflow_state)
        self._last_step.pop(run_id, None)
        self._attempt.pop(run_id, None)

    # reading back ------------------------------------------------------------------------------------
    def store(self) -> RunStore:
        """A reader on the same store (after flushing, so it sees everything logged so far)."""
        self.flush()
        return RunStore(self.tracking_uri, client=self.client)

    def cell_runs(self, experiment_name: str, *, latest: bool = False) -> list[dict[str, Any]]:
        """Every cell run of the experiment as a plain dict (see :meth:`RunStore.runs`): cell id,
        status, reason, norm, params, latest metrics… ``latest=True`` keeps one run per cell."""
        store = self.store()
        runs = store.runs(experiment_name)
        self.log_time += store.read_time
        return latest_per_cell(runs) if latest else runs

    def finished_cells(self, experiment_name: str) -> dict[str, str]:
        """``{cell_id: run_id}`` of cells whose status is finished or diverged (need not rerun)."""
        return {r["cell"]: r["run_id"] for r in self.cell_runs(experiment_name, latest=True)
                if r["status"] in DONE}
