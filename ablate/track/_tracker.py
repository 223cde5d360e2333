"""The single MLflow writer: one parent run per sweep, one child run per cell, metrics in batches.

    from ablate.track import Tracker
    tracker = Tracker(None, ".ablate")                       # sqlite:////abs/.ablate/mlflow.db
    parent = tracker.start_sweep("quick", "3f2a…", yaml_text, plan_rows)
    run = tracker.start_cell(parent, "c0ffee1234", "token_ln·s0", cell.flat_params(), {"ablate.norm": "token_ln"})
    tracker.log(run, {"train/loss": 0.12, "feat/g0.b0/msq": 1.3}, step=50)   # buffered, no MLflow call
    tracker.end_cell(run, "finished", summary={"final/psnr": 33.1})          # flushes, then terminates
    tracker.end_sweep(parent, "finished")

Only the driver writes (the Tune callback owns one Tracker), so an embedded SQLite store never sees
concurrent writers. A driver claims its experiment first (:meth:`Tracker.claim`: a second driver of the
same experiment on the same store is refused; the runs of a driver that is gone end as killed) and
holds a lease while its sweep runs (``start_sweep(..., driver=True)``, see ``_lease``). Runs carry
Markdown descriptions for the MLflow UI (the sweep's plan, then its results; each cell's identity and
status), each cell its dataset as an MLflow dataset input.

Every MLflow call goes through :meth:`Tracker._call`: timed, so ``log_time`` is the total time spent in
MLflow (a benchmark divides it by the cell time), and retried with exponential backoff while the store
is unreachable or busy, for up to ``$ABLATE_MLFLOW_RETRY_S`` (300 s) — a tracking server restarting
costs the sweep nothing. Metric flushes do not wait for it: the metrics stay buffered and the next
flush tries again, so the Tune loop is held up only where a call must complete (a cell starting or
ending). The layout it writes (run names, tags, descriptions, dataset inputs, params, metrics,
artifacts) is specified in ``docs/mlflow.md``.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import posixpath
import re
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from ablate.errors import AblateError
from ablate.naming import safe_name
from ablate.status import DONE, ENDED, CellStatus

from ._client import mlflow_client, quick_http_retries, transient
from ._lease import Heartbeat, Lease, drivers, lease_tags, local_time, runs_of
from ._notes import NOTE_TAG, cell_info, cell_note, plan_note, results_note, results_rows
from ._store import RunStore, latest_per_cell
from ._ui import DATASET_CONTEXT, DATASET_CONTEXT_TAG, EXPERIMENT_KIND_TAG, MODEL_TRAINING, cell_dataset
from ._uri import DEFAULT_STATE_DIR, default_tracking_uri, is_file_store, is_remote, normalize_tracking_uri

# MLflow's own limits (mlflow.utils.validation): a request that exceeds them is rejected whole.
MAX_METRICS_PER_BATCH = 1000
MAX_PARAMS_TAGS_PER_BATCH = 100
MAX_PARAM_VALUE = 6000
MAX_TAG_VALUE = 8000
MAX_KEY = 250
# Buffered metrics are also written once they are this old, so a driver killed between two full
# batches loses seconds of points rather than up to 1,000 (resuming restores them either way); read
# when a Tracker is made.
FLUSH_SECONDS = 5.0

_BAD_KEY_CHARS = re.compile(r"[^/\w.\- ]")
ENV_RETRY = "ABLATE_MLFLOW_RETRY_S"
DEFAULT_RETRY_S = 300.0  # how long the store may stay unreachable before the sweep gives up
MAX_BACKOFF_S = 30.0

_log = logging.getLogger(__name__)
T = TypeVar("T")


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


def _retry_seconds() -> float:
    try:
        return max(0.0, float(os.environ.get(ENV_RETRY) or DEFAULT_RETRY_S))
    except ValueError:
        return DEFAULT_RETRY_S


def _busy(experiment: str, lease: Lease) -> AblateError:
    return AblateError(f"experiment {experiment!r} is being run by another driver ({lease.describe()}); "
                       "wait for it to end or stop it, then `ablate resume`")


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
    ``log_batch`` when ``flush_every`` accumulate or the oldest has waited ``flush_s`` seconds, on
    :meth:`flush`, and when a cell ends; while the store is unreachable they stay buffered
    (``retry_s``: how long it may stay so, default ``$ABLATE_MLFLOW_RETRY_S`` or 300 s).
    """

    def __init__(self, tracking_uri: str | None = None, state_dir: str | Path = DEFAULT_STATE_DIR, *,
                 flush_every: int = MAX_METRICS_PER_BATCH, flush_s: float | None = None,
                 retry_s: float | None = None) -> None:
        self.state_dir = Path(state_dir).expanduser().resolve()
        self.tracking_uri = (normalize_tracking_uri(tracking_uri) if tracking_uri
                             else default_tracking_uri(self.state_dir))
        if self.tracking_uri.startswith("sqlite:///") or is_file_store(self.tracking_uri):
            self.state_dir.mkdir(parents=True, exist_ok=True)
        self.flush_every = max(1, int(flush_every))
        self.flush_s = FLUSH_SECONDS if flush_s is None else float(flush_s)
        self._oldest: float | None = None  # monotonic time the oldest buffered metric was logged
        self.log_time = 0.0  # seconds spent inside MLflow calls
        self.calls = 0  # MLflow requests made
        self._buffer: dict[str, list[Any]] = {}
        self._buffered = 0
        self._last_step: dict[str, int] = {}
        self._attempt: dict[str, int] = {}  # run id -> its ablate.attempt
        self._experiments: dict[str, str] = {}  # name -> id
        self._run_experiment: dict[str, str] = {}  # run id -> experiment id
        self._plans: dict[str, tuple[str, list[Mapping[str, Any]]]] = {}  # sweep run id -> (experiment, plan)
        self._cell_info: dict[str, dict[str, Any]] = {}  # cell run id -> what its description shows
        self.remote = is_remote(self.tracking_uri)
        self.retry_s = _retry_seconds() if retry_s is None else float(retry_s)
        self._down_since: float | None = None  # monotonic time of the first failure in a row
        self._retry_at = 0.0  # no metric flush before this monotonic time (the store is down)
        self._heartbeat: Heartbeat | None = None
        if self.remote:
            quick_http_retries()
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
        """Write whatever is still buffered; stop a heartbeat still running."""
        self._release()
        self.flush()

    @contextmanager
    def _timed(self) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.log_time += time.perf_counter() - t0
            self.calls += 1

    def _timed_call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        with self._timed():
            return fn(*args, **kwargs)

    def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)``, an MLflow call: timed, and while the store is unreachable or busy
        (:func:`~ablate.track._client.transient`) retried with exponential backoff (1 s, 2 s, … at
        most 30 s apart) until it has been so for ``retry_s``; then its error is raised."""
        return self._retry(self._timed_call, fn, *args, **kwargs)

    def _retry(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        delay = 1.0
        while True:
            try:
                out = fn(*args, **kwargs)
            except Exception as err:
                if not self._failed(err):
                    raise
                assert self._down_since is not None
                left = self._down_since + self.retry_s - time.monotonic()
                time.sleep(max(0.0, min(delay, left)))
                delay = min(2 * delay, MAX_BACKOFF_S)
                continue
            self._recovered()
            return out

    def _failed(self, err: Exception) -> bool:
        """Record a failure; True when it is worth another try (transient, and the store has been
        failing for less than ``retry_s``)."""
        if not transient(err, self.remote):
            return False
        now = time.monotonic()
        if self._down_since is None:
            self._down_since = now
            _log.warning("MLflow store %s unreachable (%s); retrying for up to %.0f s, metrics stay buffered",
                         self.tracking_uri, str(err).splitlines()[0][:200] if str(err) else type(err).__name__,
                         self.retry_s)
        return now - self._down_since < self.retry_s

    def _recovered(self) -> None:
        if self._down_since is not None:
            _log.warning("MLflow store %s reachable again after %.0f s", self.tracking_uri,
                         time.monotonic() - self._down_since)
        self._down_since = None
        self._retry_at = 0.0

    # experiments ------------------------------------------------------------------------------
    def artifact_location(self, experiment: str) -> str | None:
        """Where a new experiment's artifacts go (None: let the tracking server decide)."""
        if is_remote(self.tracking_uri):
            return None
        return (self.state_dir / "mlartifacts" / safe_name(experiment, "experiment")).as_uri()

    def experiment_id(self, name: str, *, create: bool = True) -> str | None:
        """The id of experiment ``name``, created (with ``artifact_location``) when missing.

        With ``create`` (a sweep is about to write to it) the experiment is also marked as model
        training (tag ``mlflow.experimentKind``) unless it already names a kind; only then is the id
        remembered, so a lookup without ``create`` never stands in for that.
        """
        if name in self._experiments:
            return self._experiments[name]
        exp = self._call(self.client.get_experiment_by_name, name)
        if exp is not None and exp.lifecycle_stage == "deleted":
            # a deleted experiment keeps its name; bring it back rather than fail on create
            self._call(self.client.restore_experiment, exp.experiment_id)
        if exp is None:
            if not create:
                return None
            exp_id = self._call(self._create_experiment, name)
        else:
            exp_id = exp.experiment_id
            if create and EXPERIMENT_KIND_TAG not in exp.tags:  # made by an older ablate, or by hand
                self._call(self.client.set_experiment_tag, exp_id, EXPERIMENT_KIND_TAG, MODEL_TRAINING)
        if create:
            self._experiments[name] = exp_id
        return exp_id

    def _create_experiment(self, name: str) -> str:
        from mlflow.exceptions import MlflowException

        try:
            exp_id: str = self.client.create_experiment(name, artifact_location=self.artifact_location(name),
                                                        tags={EXPERIMENT_KIND_TAG: MODEL_TRAINING})
        except MlflowException as err:
            # created by an attempt whose answer was lost (a retry), or by another process meanwhile
            exp = self.client.get_experiment_by_name(name) if err.error_code == "RESOURCE_ALREADY_EXISTS" else None
            if exp is None:
                raise
            exp_id = exp.experiment_id
        return exp_id

    # drivers ----------------------------------------------------------------------------------------
    def claim(self, experiment: str) -> list[str]:
        """Make way for a new driver of ``experiment`` before it touches anything.

        Raises :class:`AblateError` (one line naming the host, pid and start of the other driver) while
        another driver's sweep of the experiment is alive on this store; nothing is written then. The
        sweep and cell runs a gone driver left ``running`` end as killed, reason ``driver gone since
        <its last heartbeat>`` (a resumed sweep then continues those cells from their checkpoints).
        Returns one line per gone driver, saying what was ended.
        """
        records = self._read(lambda store: store.runs(experiment, kind="all"))
        live, gone = drivers(records)
        if live:
            raise _busy(experiment, live[0])
        notes = []
        for lease in gone:
            ended = runs_of(lease, records)
            reason = lease.gone_reason()
            for run_id in ended:
                self.set_tags(run_id, {"ablate.status": CellStatus.KILLED.value, "ablate.reason": reason})
                self._call(self.client.set_terminated, run_id, status="KILLED", end_time=int(lease.heartbeat * 1000))
            notes.append(f"the driver of sweep run {lease.run_id} ({lease.describe()}) is gone since "
                         f"{local_time(lease.heartbeat)}: its sweep run and {len(ended) - 1} running cell run(s) "
                         "recorded as killed")
        return notes

    def _hold(self, experiment: str, run_id: str) -> None:
        """Start the heartbeat of ``run_id``, a sweep run just created with lease tags — unless another
        live driver slipped in between :meth:`claim` and its creation: then the run is deleted and the
        start refused. (Two drivers that start at the same instant may both back off: neither runs
        twice, and a rerun goes through.)"""
        # beating first: a lease of this process counts as live only while a thread keeps it
        beat = Heartbeat(self.tracking_uri, run_id).start()
        live, _ = drivers(self._read(lambda store: store.runs(experiment, kind="sweeps")))
        rivals = [lease for lease in live if lease.run_id != run_id]
        if rivals:
            beat.stop()
            self._call(self.client.delete_run, run_id)
            raise _busy(experiment, rivals[0])
        self._heartbeat = beat

    def _release(self, run_id: str | None = None) -> None:
        """Stop the heartbeat (of ``run_id``, or whichever runs)."""
        if self._heartbeat is not None and run_id in (None, self._heartbeat.run_id):
            self._heartbeat.stop()
            self._heartbeat = None

    # sweeps -----------------------------------------------------------------------------------------
    def start_sweep(self, name: str, spec_hash: str, yaml_text: str, plan_rows: Sequence[Mapping[str, Any]],
                    tags: Mapping[str, Any] | None = None, run_name: str | None = None, *,
                    driver: bool = False) -> str:
        """Create the sweep's parent run in experiment ``name``, tag it (plus ``tags``) and log the spec
        and the plan as artifacts (see ``docs/mlflow.md``). Returns the run id.

        ``driver=True`` (``ablate run``, ``resume``, ``search``; after :meth:`claim`) makes the run hold
        the experiment's lease: ``ablate.driver.*`` tags and a heartbeat thread until :meth:`end_sweep`.
        """
        from ablate import __version__

        exp_id = self.experiment_id(name)
        assert exp_id is not None
        all_tags = {"ablate.sweep": "1", "ablate.spec_hash": spec_hash, "ablate.version": __version__,
                    "ablate.status": CellStatus.RUNNING, "ablate.cells": str(len(plan_rows))}
        commit = git_commit()
        if commit:
            all_tags["ablate.git_commit"] = commit
            all_tags["mlflow.source.git.commit"] = commit
        if driver:
            all_tags.update(lease_tags())
        all_tags.update({str(k): v for k, v in (tags or {}).items()})
        all_tags[NOTE_TAG] = plan_note(name, plan_rows)
        run = self._call(self.client.create_run, exp_id,
                         run_name=run_name or f"sweep-{time.strftime('%Y%m%d-%H%M%S')}",
                         tags={safe_key(k): _tag_value(v) for k, v in all_tags.items()})
        run_id: str = run.info.run_id
        self._run_experiment[run_id] = exp_id
        self._plans[run_id] = (name, list(plan_rows))
        if driver:
            self._hold(name, run_id)
        self.log_text(run_id, yaml_text, "spec/experiment.yaml")
        self.log_text(run_id, json.dumps(list(plan_rows), indent=1, default=str), "plan/plan.json")
        self.log_text(run_id, _plan_csv(plan_rows), "plan/plan.csv")
        return run_id

    def end_sweep(self, parent_run_id: str, status: str = CellStatus.FINISHED) -> None:
        """Stop its heartbeat, flush everything, describe the results (one row per cell of the plan,
        read back from the store) and terminate the parent run (``finished``, ``failed`` or ``killed``;
        MLflow's upper-case states are accepted too)."""
        self._release(parent_run_id)
        self.flush()
        state = status.upper()
        if state not in ("FINISHED", "FAILED", "KILLED"):
            raise ValueError(f"sweep status must be finished, failed or killed, got {status!r}")
        known = self._plans.pop(parent_run_id, None)
        experiment, plan = known if known is not None else self._read_plan(parent_run_id)
        runs = self.cell_runs(experiment, latest=True)
        note = results_note(experiment, results_rows(plan, runs, parent_run_id), state.lower())
        self.set_tags(parent_run_id, {"ablate.status": state.lower(), NOTE_TAG: note})
        self._call(self.client.set_terminated, parent_run_id, status=state)

    def _read_plan(self, run_id: str) -> tuple[str, list[Mapping[str, Any]]]:
        """Experiment name and plan of a sweep this Tracker did not start (its ``plan/plan.json``)."""
        from mlflow.exceptions import MlflowException

        with self._timed():
            exp_id = self._run_experiment.get(run_id) or self.client.get_run(run_id).info.experiment_id
            name: str = self.client.get_experiment(exp_id).name
            with tempfile.TemporaryDirectory() as tmp:
                try:
                    path = self.client.download_artifacts(run_id, "plan/plan.json", tmp)
                    plan = json.loads(Path(path).read_text())
                except (MlflowException, OSError, ValueError):  # no plan: the table lists the sweep's own runs
                    plan = []
        return name, plan if isinstance(plan, list) else []

    # cells --------------------------------------------------------------------------------------------
    def _reusable_run(self, exp_id: str, cell_id: str) -> Any | None:
        """The newest run of ``cell_id`` that did not finish (so a resumed cell keeps one run)."""
        runs = self._call(self.client.search_runs, [exp_id], filter_string=f"tags.`ablate.cell` = '{cell_id}'",
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
        params are immutable), nor is its dataset input (``data`` in ``params``, see
        :func:`ablate.track._ui.cell_dataset`). ``run_name`` and ``tags`` come from
        :func:`ablate.track.cell_run_identity`.
        """
        exp_id = self._run_experiment.get(parent_run_id)
        if exp_id is None:
            exp_id = self._call(self.client.get_run, parent_run_id).info.experiment_id
            self._run_experiment[parent_run_id] = exp_id
        all_tags = {str(k): v for k, v in (tags or {}).items()}
        info = cell_info(cell_id, params, all_tags)
        all_tags.update({"mlflow.parentRunId": parent_run_id, "ablate.cell": cell_id,
                         "ablate.status": CellStatus.RUNNING, "ablate.reason": "",
                         NOTE_TAG: cell_note(info, CellStatus.RUNNING)})
        old = self._reusable_run(exp_id, cell_id)
        if old is None:
            run = self._call(self.client.create_run, exp_id, run_name=run_name,
                             tags={safe_key(k): _tag_value(v) for k, v in all_tags.items()})
            run_id: str = run.info.run_id
            have: dict[str, str] = {}
            has_input = False
        else:
            run_id = old.info.run_id
            have = dict(old.data.params)
            has_input = bool(old.inputs and old.inputs.dataset_inputs)
            previous = old.data.tags.get("mlflow.parentRunId")
            if previous and previous != parent_run_id:
                all_tags["ablate.previous_parent"] = previous
            self._attempt[run_id] = int(old.data.tags.get("ablate.attempt", "1")) + 1
            all_tags["ablate.attempt"] = str(self._attempt[run_id])
            self._call(self.client.update_run, run_id, status="RUNNING")
            self.set_tags(run_id, all_tags)
            # MLflow's "latest" value of a key is the one at the highest step: summary metrics of
            # this attempt must not land below the steps an earlier attempt reached.
            last = self._read(lambda store: store.max_step(run_id))
            if last is not None:
                self._last_step[run_id] = last
        self._run_experiment[run_id] = exp_id
        self._cell_info[run_id] = info
        todo = [self._Param(safe_key(k), _param_value(v)) for k, v in params.items() if safe_key(k) not in have]
        for i in range(0, len(todo), MAX_PARAMS_TAGS_PER_BATCH):
            self._call(self.client.log_batch, run_id, params=todo[i:i + MAX_PARAMS_TAGS_PER_BATCH])
        if not has_input:
            self._log_dataset(run_id, params)
        return run_id

    def _log_dataset(self, run_id: str, params: Mapping[str, Any]) -> None:
        """The cell's dataset as the run's input (what the UI's Dataset column and filter show)."""
        dataset = cell_dataset(params)
        if dataset is None:
            return
        from mlflow.entities import Dataset, DatasetInput, InputTag

        entry = DatasetInput(Dataset(**dataset), tags=[InputTag(DATASET_CONTEXT_TAG, DATASET_CONTEXT)])
        self._call(self.client.log_inputs, run_id, datasets=[entry])

    def log(self, run_id: str, metrics: Mapping[str, float | int | None], step: int) -> None:
        """Buffer ``metrics`` at ``step`` (no MLflow call until ``flush_every`` metrics accumulate).

        None values are skipped; NaN and ±inf are kept (MLflow stores them; a diverged cell has them).
        While the store is unreachable the metrics stay buffered and the write is tried again later,
        without waiting here.
        """
        ts = _now_ms()
        now = time.monotonic()
        if self._oldest is None:
            self._oldest = now
        step = int(step)
        batch = self._buffer.setdefault(run_id, [])
        before = len(batch)
        for key, value in metrics.items():
            if value is None:
                continue
            batch.append(self._Metric(safe_key(key), float(value), ts, step))
        self._buffered += len(batch) - before
        self._last_step[run_id] = max(step, self._last_step.get(run_id, step))
        due = self._buffered >= self.flush_every or now - self._oldest >= self.flush_s
        if due and now >= self._retry_at:
            self._write_metrics(None, wait=False)

    def flush(self, run_id: str | None = None) -> None:
        """Write buffered metrics (of one run, or of all) with ``log_batch``, ≤ 1,000 per request;
        while the store is unreachable, wait for it (up to ``retry_s``)."""
        self._write_metrics(run_id, wait=True)

    def _write_metrics(self, run_id: str | None, wait: bool) -> None:
        """Write buffered metrics; on a failure put back what was not written, ahead of anything
        buffered since. ``wait=False``: one try, and a transient failure leaves the metrics buffered
        (the next try after a backoff) unless the store has been failing for ``retry_s``."""
        for rid in [run_id] if run_id is not None else list(self._buffer):
            batch = self._buffer.pop(rid, [])
            self._buffered -= len(batch)
            for i in range(0, len(batch), MAX_METRICS_PER_BATCH):
                chunk = batch[i:i + MAX_METRICS_PER_BATCH]
                try:
                    if wait:
                        self._call(self.client.log_batch, rid, metrics=chunk)
                    else:
                        self._timed_call(self.client.log_batch, rid, metrics=chunk)
                        self._recovered()
                except Exception as err:
                    rest = batch[i:]
                    self._buffer[rid] = rest + self._buffer.get(rid, [])
                    self._buffered += len(rest)
                    if wait or not self._failed(err):
                        raise
                    assert self._down_since is not None
                    # back off as _retry does: the wait doubles with the time the store has been down
                    down = time.monotonic() - self._down_since
                    self._retry_at = time.monotonic() + min(max(1.0, down), MAX_BACKOFF_S)
                    return
        if not self._buffered:
            self._oldest = None

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
            self._call(self.client.log_batch, run_id, tags=items[i:i + MAX_PARAMS_TAGS_PER_BATCH])

    def log_artifact(self, run_id: str, path: str | Path, artifact_path: str | None = None) -> None:
        """Copy a file (or a directory's files) into the run's artifacts, under ``artifact_path``."""
        path = Path(path)
        if path.is_dir():
            self._call(self.client.log_artifacts, run_id, str(path), artifact_path)
        else:
            self._call(self.client.log_artifact, run_id, str(path), artifact_path)

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        """Write ``text`` as the artifact ``artifact_file`` (e.g. ``spec/experiment.yaml``)."""
        self._call(self.client.log_text, run_id, text, artifact_file)

    def end_cell(self, run_id: str, status: str, reason: str = "",
                 summary: Mapping[str, float | int | None] | None = None, failure: str | None = None) -> None:
        """Flush the cell's metrics, log ``summary`` metrics (at the cell's last step), set
        ``ablate.status``/``ablate.reason`` (and ``ablate.failure`` when ``failure`` is given: the class
        of what failed it, "" for none), update the run's description and terminate the run: finished
        and diverged → FINISHED, failed → FAILED, pruned and killed → KILLED."""
        if status not in ENDED:
            raise ValueError(f"cell status must be one of {', '.join(ENDED)}, got {status!r}")
        state = CellStatus(status)
        if summary:
            self.log(run_id, summary, self._last_step.get(run_id, 0))
        self.flush(run_id)
        info = self._cell_info.pop(run_id, None) or self._read_cell_info(run_id)
        tags = {"ablate.status": state.value, "ablate.reason": reason,
                NOTE_TAG: cell_note(info, state.value, reason, summary)}
        if failure is not None:
            tags["ablate.failure"] = failure
        self.set_tags(run_id, tags)
        self._call(self.client.set_terminated, run_id, status=state.mlflow_state)
        self._last_step.pop(run_id, None)
        self._attempt.pop(run_id, None)

    def _read_cell_info(self, run_id: str) -> dict[str, Any]:
        """:func:`cell_info` of a cell run this Tracker did not start (from its stored params and tags)."""
        data = self._call(self.client.get_run, run_id).data
        return cell_info(data.tags.get("ablate.cell", ""), data.params, data.tags)

    # reading back ------------------------------------------------------------------------------------
    def _read(self, read: Callable[[RunStore], T]) -> T:
        """``read(store)`` on a reader sharing this client, retried as :meth:`_call` retries, its time
        counted in ``log_time``."""
        store = RunStore(self.tracking_uri, client=self.client)
        try:
            return self._retry(read, store)
        finally:
            self.log_time += store.read_time

    def store(self) -> RunStore:
        """A reader on the same store (after flushing, so it sees everything logged so far)."""
        self.flush()
        return RunStore(self.tracking_uri, client=self.client)

    def cell_runs(self, experiment_name: str, *, latest: bool = False) -> list[dict[str, Any]]:
        """Every cell run of the experiment as a plain dict (see :meth:`RunStore.runs`): cell id,
        status, reason, norm, params, latest metrics… ``latest=True`` keeps one run per cell."""
        self.flush()
        runs = self._read(lambda store: store.runs(experiment_name))
        return latest_per_cell(runs) if latest else runs

    def finished_cells(self, experiment_name: str) -> dict[str, str]:
        """``{cell_id: run_id}`` of cells whose status is finished or diverged (need not rerun)."""
        return {r["cell"]: r["run_id"] for r in self.cell_runs(experiment_name, latest=True)
                if r["status"] in DONE}
