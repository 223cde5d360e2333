"""Read an ablate experiment back out of MLflow as plain dicts and numpy arrays.

    from ablate.track import RunStore
    store = RunStore("sqlite:////abs/.ablate/mlflow.db")
    cells = store.runs("quickstart")                 # one dict per cell run
    hist = store.histories([c["run_id"] for c in cells], patterns=["feat/*/msq", "val/psnr"])
    steps, values = hist[cells[0]["run_id"]]["val/psnr"]

A dashboard needs every metric history of every cell. ``MlflowClient.get_metric_history`` costs one
query per (run, key) — for 200 cells × 40 keys that is 8,000 round trips — so for a SQLite store we
read MLflow's tables directly (read-only, a handful of queries) and fall back to the client for any
other store, or when the schema does not look like the one we know.
"""

from __future__ import annotations

import fnmatch
import math
import sqlite3
import time
from collections.abc import Collection, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import numpy as np

from ablate.status import DONE, CellStatus

from ._client import mlflow_client
from ._lease import mark_stale
from ._names import State, Tag
from ._uri import sqlite_path

# MLflow stores ±inf as ±max float64 (SQL has no infinities); we hand back real infinities.
_MAX_FLOAT = 1.7976931348623157e308
_CHUNK = 5000  # run ids per SQL query: below SQLite's bound-parameter limit (32,766)
# a run without an ablate.status tag (not written by ablate) gets the status its MLflow state implies
_FROM_MLFLOW_STATUS = {State.FINISHED: CellStatus.FINISHED.value, State.FAILED: CellStatus.FAILED.value,
                       State.KILLED: CellStatus.KILLED.value, State.RUNNING: CellStatus.RUNNING.value,
                       State.SCHEDULED: CellStatus.RUNNING.value}

History = tuple[np.ndarray, np.ndarray]  # (steps int64, values float64), sorted by step


def _fix(value: float, is_nan: Any = False) -> float:
    if is_nan:
        return math.nan
    value = float(value)
    if abs(value) >= _MAX_FLOAT:
        return math.copysign(math.inf, value)
    return value


def run_record(run_id: str, run_name: str, mlflow_status: str, start_time: int | None, end_time: int | None,
               experiment: str, tags: dict[str, str], params: dict[str, str],
               metrics: dict[str, float]) -> dict[str, Any]:
    """The plain dict both read paths produce for one run (see :meth:`RunStore.runs`)."""
    status = tags.get(Tag.STATUS) or _FROM_MLFLOW_STATUS.get(mlflow_status, mlflow_status.lower())
    return {
        "run_id": run_id,
        "run_name": run_name,
        "experiment": experiment,
        "cell": tags.get(Tag.CELL),
        "status": status,
        "reason": tags.get(Tag.REASON, ""),
        "stale": "",  # "driver gone since …" for a running run whose sweep's driver is gone (RunStore.runs)
        "norm": tags.get(Tag.NORM),
        "pairing": tags.get(Tag.PAIRING),
        "parent_run_id": tags.get(Tag.PARENT_RUN),
        "is_sweep": tags.get(Tag.SWEEP) == "1",
        "mlflow_status": mlflow_status,
        "start_time": start_time,
        "end_time": end_time,
        "params": params,
        "metrics": metrics,
        "tags": tags,
    }


def _select(records: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    if kind == "cells":
        records = [r for r in records if r["cell"]]
    elif kind == "sweeps":
        records = [r for r in records if r["is_sweep"]]
    elif kind != "all":
        raise ValueError(f"kind must be cells, sweeps or all, got {kind!r}")
    return sorted(records, key=lambda r: (r["start_time"] or 0, r["run_id"]))


def latest_per_cell(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One run per cell id: a finished/diverged run wins over others, then the most recent one."""
    best: dict[str, dict[str, Any]] = {}
    for rec in records:
        cell = rec["cell"]
        if not cell:
            continue
        old = best.get(cell)
        rank = (rec["status"] in DONE, rec["start_time"] or 0)
        if old is None or rank > (old["status"] in DONE, old["start_time"] or 0):
            best[cell] = rec
    return sorted(best.values(), key=lambda r: (r["start_time"] or 0, r["run_id"]))


def _ro_uri(path: Path) -> str:
    """A read-only SQLite URI (percent-encoded, so spaces or '#' in the path are safe)."""
    return f"{path.resolve().as_uri()}?mode=ro"


def _chunks(items: Sequence[str], n: int = _CHUNK) -> Iterator[Sequence[str]]:
    for i in range(0, len(items), n):
        yield items[i:i + n]


def _local_dir(uri: str) -> Path | None:
    """The folder of a local artifact URI (``file:///abs/...`` or a plain absolute path); None otherwise."""
    parsed = urlparse(uri)
    if parsed.scheme == "file" and parsed.netloc in ("", "localhost"):
        return Path(unquote(parsed.path))
    if not parsed.scheme and uri.startswith("/"):
        return Path(uri)
    return None


def spaced(n: int, k: int) -> np.ndarray:
    """Indices of at most ``k`` of ``n`` sorted items, evenly spaced, the first and last included."""
    if n <= k:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, k).round().astype(np.int64))


def _match(keys: Iterable[str], wanted: Sequence[str] | None, patterns: Sequence[str] | None) -> list[str]:
    if wanted is None and patterns is None:
        return sorted(set(keys))
    exact = set(wanted or ())
    return sorted(k for k in set(keys) if k in exact or any(fnmatch.fnmatchcase(k, p) for p in patterns or ()))


def _dedupe(steps: np.ndarray, stamps: np.ndarray, values: np.ndarray) -> History:
    """Sort by step; where a step was logged twice (a resumed cell), keep the later write."""
    order = np.lexsort((stamps, steps))
    steps, values = steps[order], values[order]
    if len(steps) > 1:
        last = np.ones(len(steps), dtype=bool)
        last[:-1] = steps[1:] != steps[:-1]
        steps, values = steps[last], values[last]
    return steps, values


class RunStore:
    """Read-only access to ablate runs in an MLflow store (SQLite fast path, client otherwise).

    ``read_time`` accumulates the seconds spent reading; ``backend`` is ``"sqlite"`` or ``"client"``.
    ``use_sql=False`` forces the MLflow client (tests compare the two paths).
    """

    def __init__(self, tracking_uri: str, *, use_sql: bool = True, client: Any = None) -> None:
        self.tracking_uri = tracking_uri
        db = sqlite_path(tracking_uri) if use_sql else None
        # A missing file is an empty store (the SQL path answers "no such experiment"); a file whose
        # tables we do not recognise (another MLflow schema) is left to the client.
        if db is not None and db.exists() and not self._schema_ok(db):
            db = None
        self._db = db
        self._client = client
        self.read_time = 0.0

    @property
    def backend(self) -> str:
        return "sqlite" if self._db is not None else "client"

    # plumbing ---------------------------------------------------------------------------------
    @staticmethod
    def _schema_ok(path: Path) -> bool:
        try:
            with sqlite3.connect(_ro_uri(path), uri=True) as con:
                cols = {t: {row[1] for row in con.execute(f"PRAGMA table_info({t})")}
                        for t in ("experiments", "runs", "tags", "params", "metrics", "latest_metrics")}
        except sqlite3.Error:
            return False
        need = {"experiments": {"experiment_id", "name", "lifecycle_stage"},
                "runs": {"run_uuid", "name", "status", "start_time", "end_time", "experiment_id",
                         "lifecycle_stage"},
                "tags": {"key", "value", "run_uuid"}, "params": {"key", "value", "run_uuid"},
                "metrics": {"key", "value", "timestamp", "step", "is_nan", "run_uuid"},
                "latest_metrics": {"key", "value", "is_nan", "run_uuid"}}
        return all(need[t] <= cols[t] for t in need)

    @contextmanager
    def _sql(self) -> Iterator[sqlite3.Connection]:
        assert self._db is not None
        t0 = time.perf_counter()
        con = sqlite3.connect(_ro_uri(self._db), uri=True, timeout=30)
        try:
            yield con
        finally:
            con.close()
            self.read_time += time.perf_counter() - t0

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = mlflow_client(self.tracking_uri)
        return self._client

    @contextmanager
    def _timed(self) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.read_time += time.perf_counter() - t0

    # experiments -------------------------------------------------------------------------------
    def experiment(self, name: str) -> dict[str, Any] | None:
        """``{"id", "name", "artifact_location"}`` of an active experiment, or None."""
        if self._db is not None:
            if not self._db.exists():
                return None
            with self._sql() as con:
                row = con.execute("SELECT experiment_id, name, artifact_location FROM experiments "
                                  "WHERE name = ? AND lifecycle_stage = 'active'", (name,)).fetchone()
            return None if row is None else {"id": str(row[0]), "name": row[1], "artifact_location": row[2]}
        with self._timed():
            exp = self.client.get_experiment_by_name(name)
        if exp is None or exp.lifecycle_stage != "active":
            return None
        return {"id": exp.experiment_id, "name": exp.name, "artifact_location": exp.artifact_location}

    def experiment_names(self) -> list[str]:
        """Names of every active experiment (for "did you mean" messages)."""
        if self._db is not None:
            if not self._db.exists():
                return []
            with self._sql() as con:
                rows = con.execute("SELECT name FROM experiments WHERE lifecycle_stage = 'active'").fetchall()
            return sorted(r[0] for r in rows)
        with self._timed():
            return sorted(e.name for e in self.client.search_experiments())

    def experiments_with_runs(self) -> list[dict[str, str]]:
        """``{"id", "name"}`` of every active experiment holding at least one active run, by name."""
        if self._db is not None:
            if not self._db.exists():
                return []
            with self._sql() as con:
                rows = con.execute("SELECT e.experiment_id, e.name FROM experiments e WHERE e.lifecycle_stage = "
                                   "'active' AND EXISTS (SELECT 1 FROM runs r WHERE r.experiment_id = "
                                   "e.experiment_id AND r.lifecycle_stage = 'active')").fetchall()
            return sorted(({"id": str(i), "name": n} for i, n in rows), key=lambda e: e["name"])
        out = []
        with self._timed():
            for exp in self.client.search_experiments():
                if self.client.search_runs([exp.experiment_id], max_results=1):
                    out.append({"id": str(exp.experiment_id), "name": exp.name})
        return sorted(out, key=lambda e: e["name"])

    # runs ----------------------------------------------------------------------------------------
    def runs(self, experiment: str, *, kind: str = "cells") -> list[dict[str, Any]]:
        """Every active run of ``experiment`` as a dict, oldest first; ``[]`` when it does not exist.

        ``kind``: ``cells`` (runs tagged ``ablate.cell``), ``sweeps`` (parent runs) or ``all``.
        Keys: run_id, run_name, experiment, cell, status (ablate status), reason, stale, norm, pairing,
        parent_run_id, is_sweep, mlflow_status, start_time, end_time (ms), params (str → str),
        metrics (latest value per key), tags. ``stale`` is ``driver gone since <time>`` for a run still
        ``running`` whose sweep's driver is gone (its next run or resume records it as killed), else "".
        """
        exp = self.experiment(experiment)
        if exp is None:
            return []
        if self._db is not None:
            records = self._runs_sql(exp["id"], experiment)
        else:
            records = self._runs_client(exp["id"], experiment)
        mark_stale(records)
        return _select(records, kind)

    def _runs_sql(self, exp_id: str, name: str) -> list[dict[str, Any]]:
        where = "r.experiment_id = ? AND r.lifecycle_stage = 'active'"
        with self._sql() as con:
            runs = con.execute(f"SELECT r.run_uuid, r.name, r.status, r.start_time, r.end_time FROM runs r "
                               f"WHERE {where}", (exp_id,)).fetchall()
            tags: dict[str, dict[str, str]] = {r[0]: {} for r in runs}
            params: dict[str, dict[str, str]] = {r[0]: {} for r in runs}
            metrics: dict[str, dict[str, float]] = {r[0]: {} for r in runs}
            for rid, key, value in con.execute(f"SELECT t.run_uuid, t.key, t.value FROM tags t JOIN runs r "
                                               f"ON r.run_uuid = t.run_uuid WHERE {where}", (exp_id,)):
                tags[rid][key] = value
            for rid, key, value in con.execute(f"SELECT p.run_uuid, p.key, p.value FROM params p JOIN runs r "
                                               f"ON r.run_uuid = p.run_uuid WHERE {where}", (exp_id,)):
                params[rid][key] = value
            for rid, key, value, is_nan in con.execute(
                    f"SELECT m.run_uuid, m.key, m.value, m.is_nan FROM latest_metrics m JOIN runs r "
                    f"ON r.run_uuid = m.run_uuid WHERE {where}", (exp_id,)):
                metrics[rid][key] = _fix(value, is_nan)
        return [run_record(rid, rname or "", status, start, end, name, tags[rid], params[rid], metrics[rid])
                for rid, rname, status, start, end in runs]

    def _runs_client(self, exp_id: str, name: str) -> list[dict[str, Any]]:
        out = []
        token = None
        with self._timed():
            while True:
                page = self.client.search_runs([exp_id], max_results=1000, page_token=token)
                for run in page:
                    info, data = run.info, run.data
                    out.append(run_record(info.run_id, info.run_name or "", info.status, info.start_time,
                                          info.end_time, name, dict(data.tags), dict(data.params),
                                          {k: _fix(v) for k, v in data.metrics.items()}))
                token = page.token
                if not token:
                    break
        return out

    def artifact_text(self, run_id: str, path: str) -> str | None:
        """The text of artifact ``path`` (``plan/plan.json``) of ``run_id``, or None when it has none.
        On SQLite with a local artifact folder the file is read directly (no MLflow import: ``ablate
        report`` stays fast); otherwise through the client (:func:`ablate.track.artifact_text`)."""
        if self._db is not None:
            with self._sql() as con:
                row = con.execute("SELECT artifact_uri FROM runs WHERE run_uuid = ?", (run_id,)).fetchone()
            root = _local_dir(row[0]) if row and row[0] else None
            if root is not None:
                try:
                    return (root / path).read_text(encoding="utf-8")
                except (OSError, UnicodeDecodeError):
                    return None
        from ._artifacts import artifact_text

        return artifact_text(self.tracking_uri, run_id, path)

    def max_step(self, run_id: str) -> int | None:
        """The highest step any metric of ``run_id`` was logged at (None when it has none)."""
        if self._db is not None:
            with self._sql() as con:
                row = con.execute("SELECT MAX(step) FROM latest_metrics WHERE run_uuid = ?", (run_id,)).fetchone()
            return None if row is None or row[0] is None else int(row[0])
        steps = [int(h[0][-1]) for h in self.histories([run_id]).get(run_id, {}).values() if len(h[0])]
        return max(steps) if steps else None

    def points(self, run_id: str, keys: Collection[str] | None = None) -> dict[str, set[int]]:
        """``{key: steps}``: every (metric, step) ``run_id`` holds (of ``keys``, when given), so a writer
        resuming the run can skip what is already there. On SQLite one query over MLflow's (run, key,
        step) index; otherwise one ``get_metric_history`` per key."""
        out: dict[str, set[int]] = {}
        wanted = None if keys is None else list(dict.fromkeys(keys))
        if self._db is not None:
            with self._sql() as con:
                if wanted is None:
                    rows = list(con.execute("SELECT key, step FROM metrics WHERE run_uuid = ?", (run_id,)))
                else:
                    rows = []
                    for chunk in _chunks(wanted):
                        marks = ",".join("?" * len(chunk))
                        rows += con.execute(f"SELECT key, step FROM metrics WHERE run_uuid = ? AND key IN ({marks})",
                                            (run_id, *chunk)).fetchall()
            for key, step in rows:
                out.setdefault(key, set()).add(int(step))
            return out
        with self._timed():
            for key in self.client.get_run(run_id).data.metrics if wanted is None else wanted:
                steps = {int(m.step) for m in self.client.get_metric_history(run_id, key)}
                if steps:
                    out[key] = steps
        return out

    # metric histories ------------------------------------------------------------------------------
    def histories(self, run_ids: Sequence[str], keys: Sequence[str] | None = None,
                  patterns: Sequence[str] | None = None, *,
                  max_points: int | None = None) -> dict[str, dict[str, History]]:
        """``{run_id: {key: (steps, values)}}`` for the keys named in ``keys`` or matching a glob in
        ``patterns`` (e.g. ``"feat/*/msq"``); every key when both are None. Steps ascend; a step
        logged twice keeps its later value; NaN stays NaN and ±inf comes back as ±inf.

        ``max_points``: per key, only about that many steps, evenly spaced over the steps the runs
        logged it at (:func:`spaced`: the first and last included) — what a plot draws anyway, read
        in a fraction of the time (SQLite filters the rows before Python sees them).
        """
        run_ids = list(dict.fromkeys(run_ids))
        if not run_ids:
            return {}
        if self._db is not None:
            return self._histories_sql(run_ids, keys, patterns, max_points)
        out = self._histories_client(run_ids, keys, patterns)
        for key in {k for per in out.values() for k in per} if max_points else ():
            every = np.unique(np.concatenate([per[key][0] for per in out.values() if key in per]))
            kept = every[spaced(len(every), max_points or 0)]
            for per in out.values():
                if key in per:
                    keep = np.isin(per[key][0], kept)
                    per[key] = (per[key][0][keep], per[key][1][keep])
        return out

    def _histories_sql(self, run_ids: list[str], keys: Sequence[str] | None, patterns: Sequence[str] | None,
                       max_points: int | None = None) -> dict[str, dict[str, History]]:
        out: dict[str, dict[str, History]] = {rid: {} for rid in run_ids}
        code = {rid: i for i, rid in enumerate(run_ids)}
        with self._sql() as con:
            available: set[str] = set()
            for chunk in _chunks(run_ids):
                marks = ",".join("?" * len(chunk))
                available.update(r[0] for r in con.execute(
                    f"SELECT DISTINCT key FROM latest_metrics WHERE run_uuid IN ({marks})", list(chunk)))
            for key in _match(available, keys, patterns):
                for chunk in _chunks(run_ids):
                    # One key at a time: the primary key (key, timestamp, step, run_uuid, …) is a
                    # covering index for this query, so SQLite reads only this key's rows.
                    marks = ",".join("?" * len(chunk))
                    only = ""
                    if max_points:
                        steps = np.array([r[0] for r in con.execute(
                            f"SELECT DISTINCT step FROM metrics WHERE key = ? AND run_uuid IN ({marks}) "
                            f"ORDER BY step", [key, *chunk])], dtype=np.int64)
                        if len(steps) > max_points:  # integers from the store: safe to inline
                            only = f" AND step IN ({','.join(map(str, steps[spaced(len(steps), max_points)]))})"
                    rows = con.execute(f"SELECT run_uuid, step, timestamp, value, is_nan FROM metrics "
                                       f"WHERE key = ? AND run_uuid IN ({marks}){only}", [key, *chunk]).fetchall()
                    if rows:
                        self._split(rows, key, code, run_ids, out)
        return out

    @staticmethod
    def _split(rows: list[tuple[Any, ...]], key: str, code: dict[str, int], run_ids: list[str],
               out: dict[str, dict[str, History]]) -> None:
        """Turn one key's rows into per-run (steps, values), sorted, last write per step kept."""
        rid_col, step_col, ts_col, val_col, nan_col = zip(*rows)
        n = len(rows)
        group = np.fromiter((code[r] for r in rid_col), dtype=np.int64, count=n)
        steps = np.fromiter(step_col, dtype=np.int64, count=n)
        stamps = np.fromiter(ts_col, dtype=np.int64, count=n)
        values = np.fromiter(val_col, dtype=np.float64, count=n)
        values[np.fromiter(nan_col, dtype=bool, count=n)] = np.nan
        big = np.abs(values) >= _MAX_FLOAT
        values[big] = np.copysign(np.inf, values[big])
        order = np.lexsort((stamps, steps, group))
        group, steps, values = group[order], steps[order], values[order]
        # keep the last row of each (run, step): the later write of a step logged twice
        last = np.ones(n, dtype=bool)
        last[:-1] = (group[1:] != group[:-1]) | (steps[1:] != steps[:-1])
        group, steps, values = group[last], steps[last], values[last]
        bounds = np.flatnonzero(np.diff(group)) + 1
        for g, st, va in zip(group[np.r_[0, bounds]], np.split(steps, bounds), np.split(values, bounds)):
            out[run_ids[int(g)]][key] = (st, va)

    def _histories_client(self, run_ids: list[str], keys: Sequence[str] | None,
                          patterns: Sequence[str] | None) -> dict[str, dict[str, History]]:
        out: dict[str, dict[str, History]] = {rid: {} for rid in run_ids}
        jobs: list[tuple[str, str]] = []
        with self._timed():
            for rid in run_ids:
                available = self.client.get_run(rid).data.metrics.keys()
                jobs.extend((rid, key) for key in _match(available, keys, patterns))

            def fetch(job: tuple[str, str]) -> tuple[str, str, History]:
                rid, key = job
                hist = self.client.get_metric_history(rid, key)
                steps = np.array([m.step for m in hist], dtype=np.int64)
                stamps = np.array([m.timestamp for m in hist], dtype=np.int64)
                values = np.array([_fix(m.value) for m in hist], dtype=np.float64)
                return rid, key, _dedupe(steps, stamps, values)

            # a tracking server answers requests concurrently; a local store is not slowed by it
            with ThreadPoolExecutor(max_workers=8) as pool:
                for rid, key, hist in pool.map(fetch, jobs):
                    out[rid][key] = hist
        return out
