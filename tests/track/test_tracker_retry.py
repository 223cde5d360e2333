"""The writer survives a store that is unreachable for a while: metrics stay buffered, calls retry.

    .venv/bin/python -m pytest tests/track/test_tracker_retry.py

The fast tests make ``log_batch`` fail on a real SQLite store; the slow one stops a real
``mlflow server`` for ~10 s and starts it again on the same port while a Tracker logs.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import ErrorCode
from servers import MlflowServer, free_port

from ablate.track import Tracker
from ablate.track._client import transient


class Outage:
    """Makes ``tracker.client.log_batch`` fail as a store that is down does, until ``up()``."""

    def __init__(self, tracker: Tracker, monkeypatch: pytest.MonkeyPatch,
                 code: str = "TEMPORARILY_UNAVAILABLE") -> None:
        self.real = tracker.client.log_batch
        self.down = True
        self.code = code
        self.attempts = 0
        monkeypatch.setattr(tracker.client, "log_batch", self)

    def __call__(self, run_id: str, **kwargs: Any) -> Any:
        self.attempts += 1
        if self.down:
            raise MlflowException(f"the store answers {self.code}", error_code=ErrorCode.Value(self.code))
        return self.real(run_id, **kwargs)

    def up(self) -> None:
        self.down = False


def _steps(tracker: Tracker, run_id: str, key: str) -> list[int]:
    return sorted(m.step for m in tracker.client.get_metric_history(run_id, key))


def test_which_failures_are_retried() -> None:
    busy = MlflowException("database is locked", error_code=ErrorCode.Value("TEMPORARILY_UNAVAILABLE"))
    internal = MlflowException("API request to http://h/api failed with exception Connection refused")
    bad = MlflowException("bad key", error_code=ErrorCode.Value("INVALID_PARAMETER_VALUE"))
    wrapped = MlflowException("(sqlite3.OperationalError) database is locked")  # an internal error
    assert transient(busy, remote=False) and transient(busy, remote=True) and transient(wrapped, remote=False)
    assert transient(internal, remote=True) and not transient(internal, remote=False)
    assert not transient(bad, remote=True) and not transient(ValueError("x"), remote=True)
    assert transient(ConnectionRefusedError(), remote=False)


def test_metrics_stay_buffered_while_the_store_is_down(tracker: Tracker, monkeypatch: pytest.MonkeyPatch) -> None:
    tracker.buffer.flush_every = 5
    parent = tracker.start_sweep("down", "h", "", [])
    run = tracker.start_cell(parent, "c", "c", {})
    outage = Outage(tracker, monkeypatch)
    slowest = 0.0
    for step in range(40):
        t0 = time.perf_counter()
        tracker.log(run, {"train/loss": 1.0 / (step + 1)}, step)
        slowest = max(slowest, time.perf_counter() - t0)
    assert slowest < 0.5  # log() never waits for the store
    assert outage.attempts < 5  # a failed flush backs off instead of trying at every log()
    assert len(tracker.buffer) == 40
    outage.up()
    tracker.end_cell(run, "finished", summary={"final/psnr": 30.0})
    assert _steps(tracker, run, "train/loss") == list(range(40))
    assert tracker.client.get_run(run).data.metrics["final/psnr"] == 30.0


def test_a_call_that_must_complete_waits_with_backoff(tracker: Tracker, monkeypatch: pytest.MonkeyPatch) -> None:
    parent = tracker.start_sweep("wait", "h", "", [])
    run = tracker.start_cell(parent, "c", "c", {})
    outage = Outage(tracker, monkeypatch)
    threading.Timer(2.0, outage.up).start()
    tracker.log(run, {"val/psnr": 25.0}, 10)
    t0 = time.perf_counter()
    tracker.end_cell(run, "finished")  # the flush and the tags wait for the store
    assert time.perf_counter() - t0 >= 1.5
    assert 2 <= outage.attempts <= 6  # 1 s, 2 s, … apart, not a busy loop
    assert _steps(tracker, run, "val/psnr") == [10]
    assert tracker.client.get_run(run).info.status == "FINISHED"


def test_other_errors_and_long_outages_are_raised(tracker: Tracker, monkeypatch: pytest.MonkeyPatch) -> None:
    parent = tracker.start_sweep("fail", "h", "", [])
    run = tracker.start_cell(parent, "c", "c", {})
    outage = Outage(tracker, monkeypatch, code="INVALID_PARAMETER_VALUE")
    tracker.log(run, {"train/loss": 1.0}, 1)
    with pytest.raises(MlflowException, match="INVALID_PARAMETER_VALUE"):
        tracker.flush()
    assert outage.attempts == 1 and len(tracker.buffer) == 1  # not retried, nothing dropped
    outage.code = "TEMPORARILY_UNAVAILABLE"
    tracker.retry.retry_s = 1.5
    t0 = time.perf_counter()
    with pytest.raises(MlflowException):
        tracker.flush()
    assert 1.0 < time.perf_counter() - t0 < 10 and len(tracker.buffer) == 1
    outage.up()  # the fixture closes the tracker: it flushes


# a real tracking server that goes away ------------------------------------------------------------
@pytest.fixture
def server(tmp_path: Path, state_dir: Path) -> Iterator[MlflowServer]:
    """``mlflow server`` on SQLite at 127.0.0.1, on a copy of the fixture's empty store (the schema is built
    already); no job runner processes: they only slow the start, and the test starts the server twice."""
    folder = tmp_path / "server"
    folder.mkdir()
    (state_dir / "mlflow.db").rename(folder / "mlflow.db")
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    srv = MlflowServer(f"sqlite:///{folder / 'mlflow.db'}", str(folder / "artifacts"), free_port(), env, folder)
    srv.start()
    yield srv
    srv.stop(grace=30)


@pytest.mark.slow
def test_a_tracking_server_restart_loses_nothing(server: MlflowServer, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    # the values the Tracker would set, set here so that they do not outlive the test
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
    tracker = Tracker(server.uri, tmp_path / "state", flush_every=20)
    parent = tracker.start_sweep("blip", "h", "", [], driver=True)
    run = tracker.start_cell(parent, "c", "c", {"lr": 1e-3})
    outage: dict[str, float] = {}

    def blip() -> None:
        time.sleep(1.0)
        server.stop(grace=30)  # SIGTERM, as a restart does
        outage["down"] = time.monotonic()
        time.sleep(10)
        server.start()
        outage["up"] = time.monotonic()

    thread = threading.Thread(target=blip)
    thread.start()
    slowest, step = 0.0, 0
    while thread.is_alive() or step < 300:  # log through the outage and the restart, then a little more
        t0 = time.perf_counter()
        tracker.log(run, {"train/loss": 1.0 / (step + 1), "train/lr": 1e-3}, step)
        slowest = max(slowest, time.perf_counter() - t0)
        step += 1
        time.sleep(0.02)
    thread.join()
    tracker.end_cell(run, "finished", summary={"final/psnr": 31.5})
    tracker.end_sweep(parent, "finished")

    assert outage["up"] - outage["down"] >= 10
    # the loop went on while the server was away: one log() waited for MLflow's two quick retries at most
    assert slowest < 10, slowest
    got = _steps(tracker, run, "train/loss")
    assert got == list(range(step)), (len(got), step)  # every step once: nothing lost, nothing doubled
    assert len(tracker.client.get_metric_history(run, "train/lr")) == step
    done = tracker.client.get_run(run)
    assert done.info.status == "FINISHED" and done.data.metrics["final/psnr"] == 31.5
    assert tracker.client.get_run(parent).data.tags["ablate.status"] == "finished"
