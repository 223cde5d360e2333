"""A driver's lease on its experiment: tags on the sweep run, the heartbeat, claims, stale runs.

    .venv/bin/python -m pytest tests/track/test_driver_lease.py

Against a real SQLite store, in one process (the drivers are Trackers); tests/tune/test_lease.py runs
real `ablate run` drivers in subprocesses and kills one.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ablate.errors import AblateError
from ablate.track import Lease, RunStore, Tag, Tracker, lease_tags

HOST, PID, HEARTBEAT = Tag.DRIVER_HOST, Tag.DRIVER_PID, Tag.DRIVER_HEARTBEAT


@pytest.fixture
def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped) on this host."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.fixture
def fast_beat(monkeypatch: pytest.MonkeyPatch) -> float:
    monkeypatch.setenv("ABLATE_HEARTBEAT_S", "0.2")
    return 0.2


@pytest.fixture
def other(state_dir: Path) -> Iterator[Tracker]:
    """A second driver's Tracker on the same store."""
    with Tracker(None, state_dir) as tr:
        yield tr


def test_lease_tags_read_back() -> None:
    tags = lease_tags(now=1_700_000_000.25, interval=15)
    assert tags[HOST] == socket.gethostname() and tags[PID] == str(os.getpid())
    assert tags["ablate.driver.started"] == tags[HEARTBEAT] == "2023-11-14T22:13:20.250+00:00"
    lease = Lease.of("r1", tags)
    assert lease == Lease("r1", socket.gethostname(), os.getpid(), 1_700_000_000.25, 1_700_000_000.25, 15.0)
    assert Lease.of("r1", {}) is None and Lease.of("r1", {**tags, PID: "x"}) is None  # no lease, a broken one


def test_when_a_driver_counts_as_gone(dead_pid: int) -> None:
    now = 1_700_000_000.0
    fresh = {**lease_tags(now=now - 10, interval=5), HOST: "elsewhere"}
    lease = Lease.of("r", fresh)
    assert lease is not None
    assert lease.gone_since(now) is None  # another host: its heartbeat alone decides, 10 s < 3 × 5 s
    assert lease.gone_since(now + 6) == now - 10  # 16 s without a heartbeat: gone since the last one
    here = Lease.of("r", {**fresh, HOST: socket.gethostname(), PID: str(dead_pid)})
    assert here is not None and here.gone_since(now) == now - 10  # this host, no such process: gone at once
    # this very process, but no heartbeat thread holds the run: a sweep that ended without releasing it
    mine = Lease.of("r", {**fresh, HOST: socket.gethostname()})
    assert mine is not None and mine.gone_since(now) == now - 10
    assert "since" in mine.describe() and mine.gone_reason().startswith("driver gone since ")


def test_a_second_driver_is_refused_in_one_line_and_writes_nothing(tracker: Tracker, other: Tracker,
                                                                    fast_beat: float) -> None:
    assert tracker.claim("busy") == []
    parent = tracker.start_sweep("busy", "h", "", [], driver=True)
    before = RunStore(tracker.tracking_uri).runs("busy", kind="all")
    with pytest.raises(AblateError) as info:
        other.claim("busy")
    msg = str(info.value)
    assert "\n" not in msg and "'busy' is being run by another driver" in msg
    assert f"host {socket.gethostname()}, pid {os.getpid()}, since " in msg
    assert RunStore(tracker.tracking_uri).runs("busy", kind="all") == before
    tracker.end_sweep(parent, "finished")
    assert other.claim("busy") == []  # an ended sweep holds nothing


def test_heartbeat_beats_until_end_sweep(tracker: Tracker, fast_beat: float) -> None:
    parent = tracker.start_sweep("beat", "h", "", [], driver=True)
    tags = tracker.client.get_run(parent).data.tags
    assert tags["ablate.driver.interval"] == "0.2" and tags[PID] == str(os.getpid())
    first = tags[HEARTBEAT]
    deadline = time.monotonic() + 10
    while tracker.client.get_run(parent).data.tags[HEARTBEAT] == first:
        assert time.monotonic() < deadline, "the heartbeat tag was never rewritten"
        time.sleep(0.1)
    thread = tracker.claims.heartbeat._thread if tracker.claims.heartbeat else None
    tracker.end_sweep(parent, "finished")
    assert thread is not None and not thread.is_alive()
    last = tracker.client.get_run(parent).data.tags[HEARTBEAT]
    time.sleep(4 * fast_beat)
    assert tracker.client.get_run(parent).data.tags[HEARTBEAT] == last


def test_a_driver_that_slipped_in_first_wins(tracker: Tracker, other: Tracker, fast_beat: float) -> None:
    """Both passed claim() before either created its sweep run: the later one backs off, deleting its run."""
    first = tracker.start_sweep("race", "h", "", [], driver=True)
    with pytest.raises(AblateError, match="being run by another driver"):
        other.start_sweep("race", "h", "", [], driver=True)
    sweeps = RunStore(tracker.tracking_uri).runs("race", kind="sweeps")
    assert [s["run_id"] for s in sweeps] == [first]  # the loser's run is deleted
    assert other.claims.heartbeat is None and tracker.claims.heartbeat is not None
    tracker.end_sweep(first, "finished")


def test_runs_of_a_gone_driver_read_as_stale_then_end_as_killed(tracker: Tracker, other: Tracker,
                                                                  dead_pid: int) -> None:
    beat = time.time() - 5
    dead = {**lease_tags(now=beat), PID: str(dead_pid)}  # a driver of this host that was SIGKILLed
    parent = tracker.start_sweep("stale", "h", "", [], tags=dead)
    running = tracker.start_cell(parent, "c1", "c1", {"a": 1})
    done = tracker.start_cell(parent, "c2", "c2", {"a": 2})
    tracker.end_cell(done, "finished")
    tracker.log(running, {"train/loss": 0.5}, 10)
    tracker.flush()

    store = RunStore(tracker.tracking_uri)
    by_id = {r["run_id"]: r for r in store.runs("stale", kind="all")}
    reason = f"driver gone since {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(beat))}"
    assert by_id[parent]["stale"] == by_id[running]["stale"] == reason
    assert by_id[running]["status"] == "running" and by_id[done]["stale"] == ""
    client_path = {r["run_id"]: r["stale"] for r in RunStore(tracker.tracking_uri, use_sql=False).runs("stale", kind="all")}
    assert client_path == {rid: r["stale"] for rid, r in by_id.items()}

    notes = other.claim("stale")  # the next driver
    assert len(notes) == 1 and f"pid {dead_pid}" in notes[0] and "1 running cell run(s)" in notes[0]
    for rid in (parent, running):
        run = other.client.get_run(rid)
        assert run.info.status == "KILLED" and run.data.tags["ablate.status"] == "killed"
        assert run.data.tags["ablate.reason"] == reason
        assert run.info.end_time == int(beat * 1000)
    assert other.client.get_run(done).data.tags["ablate.status"] == "finished"
    assert all(r["stale"] == "" for r in store.runs("stale", kind="all"))
    assert other.claim("stale") == []  # nothing left to end


def test_a_lease_that_stopped_beating_on_another_host_is_stale(tracker: Tracker) -> None:
    old = {**lease_tags(now=time.time() - 100, interval=1), HOST: "node-17"}
    parent = tracker.start_sweep("far", "h", "", [], tags=old)
    assert RunStore(tracker.tracking_uri).runs("far", kind="sweeps")[0]["stale"].startswith("driver gone since")
    tracker.start_sweep("far", "h", "", [], tags={**lease_tags(interval=60), HOST: "node-17"})
    with pytest.raises(AblateError, match="host node-17"):  # the one still beating is alive
        tracker.claim("far")
    assert tracker.client.get_run(parent).info.status == "RUNNING"  # a refused claim ends nothing


def test_sweeps_without_a_lease_are_left_alone(tracker: Tracker) -> None:
    """Sweep runs without a lease (an ablate before leases, a run made by hand): neither stale nor blocking."""
    parent = tracker.start_sweep("plain", "h", "", [], tags={"ablate.mode": "train"})
    assert tracker.claim("plain") == []
    assert tracker.client.get_run(parent).info.status == "RUNNING"
    assert RunStore(tracker.tracking_uri).runs("plain", kind="sweeps")[0]["stale"] == ""
