"""The single MLflow writer: one parent run per sweep, one child run per cell, metrics in batches.

    from ablate.track import Tracker
    tracker = Tracker(None, ".ablate")                       # sqlite:////abs/.ablate/mlflow.db
    parent = tracker.start_sweep("quick", "3f2a…", yaml_text, plan_rows)
    run = tracker.start_cell(parent, "c0ffee1234", "token_ln·s0", cell.flat_params(), {Tag.NORM: "token_ln"})
    tracker.log(run, {"train/loss": 0.12, "feat/g0.b0/msq": 1.3}, step=50)   # buffered, no MLflow call
    tracker.end_cell(run, "finished", summary={"final/psnr": 33.1})          # flushes, then terminates
    tracker.end_sweep(parent, State.FINISHED)

Only the driver writes (the Tune callback owns one Tracker; ``ablate train`` and ``ablate eval`` their
own), so an embedded SQLite store never sees concurrent writers. A driver claims its experiment first
(:meth:`Tracker.claim`: a second driver of the same experiment on the same store is refused; the runs of
a driver that is gone end as killed) and holds a lease while its sweep runs (``start_sweep(...,
driver=True)``; :class:`~ablate.track._claims.Claims`). Runs carry Markdown descriptions for the MLflow
UI (the sweep's plan, then its results; each cell's identity and status), each cell its dataset as an
MLflow dataset input.

The Tracker puts together three pieces, each tested on its own: every MLflow call goes through a
:class:`~ablate.track._retry.Retry` (timed, so ``log_time`` is the total time spent in MLflow — a
benchmark divides it by the cell time — and retried with exponential backoff while the store is
unreachable or busy, for up to ``$ABLATE_MLFLOW_RETRY_S`` (300 s): a tracking server restarting costs
the sweep nothing); every metric point passes the :class:`~ablate.track._ledger.Ledger` (each (run, key,
step) is logged once, whichever writer logs it and however often the cell was interrupted) into a
:class:`~ablate.track._buffer.MetricBuffer`. Metric flushes do not wait for a store that is down: the
metrics stay buffered and the next flush tries again, so the Tune loop is held up only where a call must
complete (a cell starting or ending). The layout it writes (run names, tags, descriptions, dataset
inputs, params, metrics, artifacts) is specified in ``docs/mlflow.md``; the names in ``_names``.
"""

from __future__ import annotations

import csv
import io
import json
import posixpath
import re
import subprocess
import tempfile
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from ablate.naming import safe_name
from ablate.status import DONE, ENDED, CellStatus

from ._buffer import FLUSH_SECONDS, MAX_METRICS_PER_BATCH, MetricBuffer
from ._claims import RESUME_HINT, Claims
from ._client import mlflow_client, quick_http_retries
from ._lease import lease_tags
from ._ledger import Ledger
from ._names import State, Tag
from ._notes import cell_info, cell_note, plan_note, results_note, results_rows
from ._retry import Retry
from ._store import RunStore, latest_per_cell
from ._ui import DATASET_CONTEXT, MODEL_TRAINING, cell_dataset
from ._uri import DEFAULT_STATE_DIR, default_tracking_uri, is_file_store, is_remote, normalize_tracking_uri

# MLflow's own limits (mlflow.utils.validation): a request that exceeds them is rejected whole.
MAX_PARAMS_TAGS_PER_BATCH = 100
MAX_PARAM_VALUE = 6000
MAX_TAG_VALUE = 8000
MAX_KEY = 250

_BAD_KEY_CHARS = re.compile(r"[^/\w.\- ]")
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
    which owns its artifact storage). Metrics logged with :meth:`log` that the run does not hold yet
    are buffered and written with ``log_batch`` when ``flush_every`` accumulate or the oldest has
    waited ``flush_s`` seconds, on :meth:`flush`, and when a cell ends; while the store is unreachable
    they stay buffered (``retry_s``: how long it may stay so, default ``$ABLATE_MLFLOW_RETRY_S`` or 300 s).
    """

    def __init__(self, tracking_uri: str | None = None, state_dir: str | Path = DEFAULT_STATE_DIR, *,
                 flush_every: int = MAX_METRICS_PER_BATCH, flush_s: float | None = None,
                 retry_s: float | None = None) -> None:
        self.state_dir = Path(state_dir).expanduser().resolve()
        self.tracking_uri = (normalize_tracking_uri(tracking_uri) if tracking_uri
                             else default_tracking_uri(self.state_dir))
        if self.tracking_uri.startswith("sqlite:///") or is_file_store(self.tracking_uri):
            self.state_dir.mkdir(parents=True, exist_ok=True)
        self.remote = is_remote(self.tracking_uri)
        self.retry = Retry(self.tracking_uri, self.remote, retry_s)
        self.buffer: MetricBuffer[Any] = MetricBuffer(flush_every, FLUSH_SECONDS if flush_s is None else flush_s)
        self.ledger = Ledger(self._stored_points)
        self._last_step: dict[str, int] = {}
        self._attempt: dict[str, int] = {}  # run id -> its ablate.attempt
        self._experiments: dict[str, str] = {}  # name -> id
        self._run_experiment: dict[str, str] = {}  # run id -> experiment id
        self._plans: dict[str, tuple[str, list[Mapping[str, Any]]]] = {}  # sweep run id -> (experiment, plan)
        self._cell_info: dict[str, dict[str, Any]] = {}  # cell run id -> what its description shows
        if self.remote:
            quick_http_retries()
        t0 = time.perf_counter()
        self.client = mlflow_client(self.tracking_uri)
        from mlflow.entities import Metric, Param, RunTag

        self.retry.log_time += time.perf_counter() - t0  # time in MLflow, not a request
        self._Metric, self._Param, self._RunTag = Metric, Param, RunTag
        self.claims = Claims(self.tracking_uri, self.client, self.retry,
                             lambda name, kind: self._read(lambda store: store.runs(name, kind=kind)), self.set_tags)

    def __repr__(self) -> str:
        return f"Tracker({self.tracking_uri!r})"

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Write whatever is still buffered; stop a heartbeat still running."""
        self.claims.release()
        self.flush()

    # counters ------------------------------------------------------------------------------------
    @property
    def log_time(self) -> float:
        """Seconds spent inside MLflow calls (reads included)."""
        return self.retry.log_time

    @property
    def calls(self) -> int:
        """MLflow requests made."""
        return self.retry.calls

    def _call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)``, an MLflow call: timed and retried (:meth:`Retry.call`)."""
        return self.retry.call(fn, *args, **kwargs)

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
            if create and Tag.EXPERIMENT_KIND not in exp.tags:  # made by an older ablate, or by hand
                self._call(self.client.set_experiment_tag, exp_id, Tag.EXPERIMENT_KIND, MODEL_TRAINING)
        if create:
            self._experiments[name] = exp_id
        return exp_id

    def _create_experiment(self, name: str) -> str:
        from mlflow.exceptions import MlflowException

        try:
            exp_id: str = self.client.create_experiment(name, artifact_location=self.artifact_location(name),
                                                        tags={Tag.EXPERIMENT_KIND: MODEL_TRAINING})
        except MlflowException as err:
            # created by an attempt whose answer was lost (a retry), or by another process meanwhile
            exp = self.client.get_experiment_by_name(name) if err.error_code == "RESOURCE_ALREADY_EXISTS" else None
            if exp is None:
                raise
            exp_id = exp.experiment_id
        return exp_id

    # drivers ----------------------------------------------------------------------------------------
    def claim(self, experiment: str, then: str = RESUME_HINT) -> list[str]:
        """Make way for a new driver of ``experiment`` before it touches anything (:meth:`Claims.claim`):
        :class:`~ablate.errors.AblateError` in one line, ending with ``then``, while another driver runs
        it on this store; the runs of a gone driver end as killed, one line returned for each."""
        return self.claims.claim(experiment, then)

    # sweeps -----------------------------------------------------------------------------------------
    def start_sweep(self, name: str, spec_hash: str, yaml_text: str, plan_rows: Sequence[Mapping[str, Any]],
                    tags: Mapping[str, Any] | None = None, run_name: str | None = None, *,
                    driver: bool = False) -> str:
        """Create the sweep's parent run in experiment ``name``, tag it (plus ``tags``) and log the spec
        and the plan as artifacts (see ``docs/mlflow.md``). Returns the run id.

        ``driver=True`` (``ablate run``, ``resume``, ``search``, ``train``; after :meth:`claim`) makes the run hold
        the experiment's lease: ``ablate.driver.*`` tags and a heartbeat thread until :meth:`end_sweep`.
        """
        from ablate import __version__

        exp_id = self.experiment_id(name)
        assert exp_id is not None
        all_tags = {Tag.SWEEP: "1", Tag.SPEC_HASH: spec_hash, Tag.VERSION: __version__,
                    Tag.STATUS: CellStatus.RUNNING, Tag.CELLS: str(len(plan_rows))}
        commit = git_commit()
        if commit:
            all_tags[Tag.GIT_COMMIT] = commit
            all_tags[Tag.SOURCE_GIT_COMMIT] = commit
        if driver:
            all_tags.update(lease_tags())
        all_tags.update({str(k): v for k, v in (tags or {}).items()})
        all_tags[Tag.NOTE] = plan_note(name, plan_rows)
        run = self._call(self.client.create_run, exp_id,
                         run_name=run_name or f"sweep-{time.strftime('%Y%m%d-%H%M%S')}",
                         tags={safe_key(k): _tag_value(v) for k, v in all_tags.items()})
        run_id: str = run.info.run_id
        self._run_experiment[run_id] = exp_id
        self._plans[run_id] = (name, list(plan_rows))
        if driver:
            self.claims.hold(name, run_id)
        self.log_text(run_id, yaml_text, "spec/experiment.yaml")
        self.log_text(run_id, json.dumps(list(plan_rows), indent=1, default=str), "plan/plan.json")
        self.log_text(run_id, _plan_csv(plan_rows), "plan/plan.csv")
        return run_id

    def end_sweep(self, parent_run_id: str, status: str = CellStatus.FINISHED) -> None:
        """Stop its heartbeat, flush everything, describe the results (one row per cell of the plan,
        read back from the store) and terminate the parent run (``finished``, ``failed`` or ``killed``;
        MLflow's upper-case states are accepted too)."""
        self.claims.release(parent_run_id)
        self.flush()
        state = status.upper()
        if state not in State.ENDED:
            raise ValueError(f"sweep status must be finished, failed or killed, got {status!r}")
        known = self._plans.pop(parent_run_id, None)
        experiment, plan = known if known is not None else self._read_plan(parent_run_id)
        runs = self.cell_runs(experiment, latest=True)
        note = results_note(experiment, results_rows(plan, runs, parent_run_id), state.lower())
        self.set_tags(parent_run_id, {Tag.STATUS: state.lower(), Tag.NOTE: note})
        self._call(self.client.set_terminated, parent_run_id, status=state)

    def _read_plan(self, run_id: str) -> tuple[str, list[Mapping[str, Any]]]:
        """Experiment name and plan of a sweep this Tracker did not start (its ``plan/plan.json``)."""
        from mlflow.exceptions import MlflowException

        with self.retry.timer():
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
        runs = self._call(self.client.search_runs, [exp_id], filter_string=f"tags.`{Tag.CELL}` = '{cell_id}'",
                          max_results=50, order_by=["attributes.start_time DESC"])
        for run in runs:
            if run.data.tags.get(Tag.STATUS) not in DONE:
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
        all_tags.update({Tag.PARENT_RUN: parent_run_id, Tag.CELL: cell_id,
                         Tag.STATUS: CellStatus.RUNNING, Tag.REASON: "",
                         Tag.NOTE: cell_note(info, CellStatus.RUNNING)})
        old = self._reusable_run(exp_id, cell_id)
        if old is None:
            run = self._call(self.client.create_run, exp_id, run_name=run_name,
                             tags={safe_key(k): _tag_value(v) for k, v in all_tags.items()})
            run_id: str = run.info.run_id
            have: dict[str, str] = {}
            has_input = False
            self.ledger.start(run_id)
        else:
            run_id = old.info.run_id
            have = dict(old.data.params)
            has_input = bool(old.inputs and old.inputs.dataset_inputs)
            previous = old.data.tags.get(Tag.PARENT_RUN)
            if previous and previous != parent_run_id:
                all_tags[Tag.PREVIOUS_PARENT] = previous
            self._attempt[run_id] = int(old.data.tags.get(Tag.ATTEMPT, "1")) + 1
            all_tags[Tag.ATTEMPT] = str(self._attempt[run_id])
            self._call(self.client.update_run, run_id, status=State.RUNNING)
            self.set_tags(run_id, all_tags)
            # what the run holds: this attempt logs none of it again (exactly once), and its summary
            # metrics land at the highest step an earlier attempt reached, MLflow's "latest" value of a
            # key being the one at the highest step
            held = self._read(lambda store: store.points(run_id))
            self.ledger.start(run_id, held)
            last = max((max(steps) for steps in held.values() if steps), default=None)
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

        entry = DatasetInput(Dataset(**dataset), tags=[InputTag(Tag.DATASET_CONTEXT, DATASET_CONTEXT)])
        self._call(self.client.log_inputs, run_id, datasets=[entry])

    def log(self, run_id: str, metrics: Mapping[str, float | int | None], step: int, *, again: bool = False) -> None:
        """Buffer the points of ``metrics`` at ``step`` that ``run_id`` does not hold yet (no MLflow call
        until ``flush_every`` metrics accumulate): each (run, key, step) is logged once, whoever logs it
        (:class:`~ablate.track._ledger.Ledger`). ``again=True`` logs them even so (``ablate eval --force``).

        None values are skipped; NaN and ±inf are kept (MLflow stores them; a diverged cell has them).
        While the store is unreachable the metrics stay buffered and the write is tried again later,
        without waiting here. What a run this Tracker did not start holds is read from the store the
        first time a key is logged to it (retried like any call).
        """
        step = int(step)
        values = {safe_key(k): float(v) for k, v in metrics.items() if v is not None}
        fresh = self.ledger.fresh(run_id, values, step, again=again) if values else {}
        ts = _now_ms()
        self.buffer.add(run_id, [self._Metric(key, value, ts, step) for key, value in fresh.items()])
        self._last_step[run_id] = max(step, self._last_step.get(run_id, step))
        if self.buffer.due() and self.retry.ready():
            self._write_metrics(None, wait=False)

    def flush(self, run_id: str | None = None) -> None:
        """Write buffered metrics (of one run, or of all) with ``log_batch``, ≤ 1,000 per request;
        while the store is unreachable, wait for it (up to ``retry_s``)."""
        self._write_metrics(run_id, wait=True)

    def _write_metrics(self, run_id: str | None, wait: bool) -> None:
        """Write buffered metrics. ``wait=False``: one try, and a transient failure leaves the metrics
        buffered (the next try after a backoff) unless the store has been failing for ``retry_s``."""
        if wait:
            self.buffer.write(lambda rid, chunk: self._call(self.client.log_batch, rid, metrics=chunk), run_id)
            return
        try:
            self.buffer.write(self._send_once, run_id)
        except Exception as err:
            if not self.retry.failed(err):
                raise
            self.retry.back_off()

    def _send_once(self, run_id: str, chunk: list[Any]) -> None:
        self.retry.once(self.client.log_batch, run_id, metrics=chunk)
        self.retry.recovered()

    def _stored_points(self, run_id: str, keys: Collection[str]) -> dict[str, set[int]]:
        """The ledger's reader: steps of ``keys`` that ``run_id`` holds in the store."""
        return self._read(lambda store: store.points(run_id, keys))

    def points(self, run_id: str) -> dict[str, set[int]]:
        """``{key: steps}`` of every metric point ``run_id`` holds in MLflow (see :meth:`RunStore.points`)."""
        return self._read(lambda store: store.points(run_id))

    def last_step(self, run_id: str) -> int:
        """The highest step logged to ``run_id`` by this Tracker or held by it when it was reused (0: none);
        where summary metrics go (MLflow's latest value of a key is the one at its highest step)."""
        return self._last_step.get(run_id, 0)

    def new_attempt(self, run_id: str, tags: Mapping[str, Any] | None = None) -> int:
        """Count one more attempt of a cell run (a retry after its worker died): ``ablate.attempt`` is
        raised and set with ``tags``; returns the new attempt number."""
        attempt = self._attempt.get(run_id, 1) + 1
        self._attempt[run_id] = attempt
        self.set_tags(run_id, {**(tags or {}), Tag.ATTEMPT: str(attempt)})
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
            self.log(run_id, summary, self.last_step(run_id))
        self.flush(run_id)
        info = self._cell_info.pop(run_id, None) or self._read_cell_info(run_id)
        tags = {Tag.STATUS: state.value, Tag.REASON: reason,
                Tag.NOTE: cell_note(info, state.value, reason, summary)}
        if failure is not None:
            tags[Tag.FAILURE] = failure
        self.set_tags(run_id, tags)
        self._call(self.client.set_terminated, run_id, status=state.mlflow_state)
        self._last_step.pop(run_id, None)
        self._attempt.pop(run_id, None)
        self.ledger.forget(run_id)

    def _read_cell_info(self, run_id: str) -> dict[str, Any]:
        """:func:`cell_info` of a cell run this Tracker did not start (from its stored params and tags)."""
        data = self._call(self.client.get_run, run_id).data
        return cell_info(data.tags.get(Tag.CELL, ""), data.params, data.tags)

    # reading back ------------------------------------------------------------------------------------
    def _read(self, read: Callable[[RunStore], T]) -> T:
        """``read(store)`` on a reader sharing this client, retried as :meth:`_call` retries, its time
        counted in ``log_time``."""
        store = RunStore(self.tracking_uri, client=self.client)
        try:
            return self.retry.retry(read, store)
        finally:
            self.retry.log_time += store.read_time

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
