"""Who drives a sweep: a lease on the sweep's parent run, kept fresh by a heartbeat thread.

    from ablate.track import Heartbeat, Lease, lease_tags
    tags = lease_tags()                            # ablate.driver.host, .pid, .started, .heartbeat, .interval
    beat = Heartbeat(uri, parent_run_id).start()   # rewrites ablate.driver.heartbeat every ABLATE_HEARTBEAT_S
    lease = Lease.of(run_id, run_tags)             # what a reader makes of them
    lease.gone_since()                             # None while the driver lives, else its last heartbeat

The lease lives in the MLflow store itself (tags of the parent run), so every driver and every reader of
the same experiment on the same store sees it, whichever host it runs on — no lock file next to a store
that may be a server. A driver on this host is *gone* as soon as its pid no longer exists (a SIGKILLed
driver) and alive while it does (a loaded machine may delay its heartbeats); a driver on another host is
gone when its heartbeat is older than ``MISSED_BEATS`` intervals (the interval it wrote, so a reader need
not share its settings). Hosts compare their own clocks with the heartbeat, so
clocks may disagree by up to the grace of three intervals (60 s by default).

Of this package it imports only ``_client`` and ``_names``; :class:`~ablate.track._claims.Claims` takes and
releases leases, :class:`~ablate.track.RunStore` marks the runs of a gone driver as stale.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from ._client import mlflow_client
from ._names import Tag

HOST, PID, STARTED, HEARTBEAT, INTERVAL = (Tag.DRIVER_HOST, Tag.DRIVER_PID, Tag.DRIVER_STARTED, Tag.DRIVER_HEARTBEAT,
                                           Tag.DRIVER_INTERVAL)
ENV_HEARTBEAT = "ABLATE_HEARTBEAT_S"
DEFAULT_HEARTBEAT_S = 20.0
MISSED_BEATS = 3  # a driver is gone after this many intervals without a heartbeat

_log = logging.getLogger(__name__)
# parent runs whose heartbeat a thread of this process keeps: a lease of this pid that is not among them
# was left behind by a sweep of this process that ended without releasing it
_held: set[str] = set()
_held_lock = threading.Lock()


def heartbeat_interval(env: Mapping[str, str] | None = None) -> float:
    """Seconds between heartbeats: ``$ABLATE_HEARTBEAT_S`` (tests make it short), default 20."""
    env = os.environ if env is None else env
    raw = env.get(ENV_HEARTBEAT, "")
    try:
        value = float(raw) if raw.strip() else DEFAULT_HEARTBEAT_S
    except ValueError:
        _log.warning("ignoring %s=%r: expected seconds", ENV_HEARTBEAT, raw)
        return DEFAULT_HEARTBEAT_S
    return value if value > 0 else DEFAULT_HEARTBEAT_S


def stamp(t: float) -> str:
    """An instant as a tag value: ISO 8601 in UTC, to the millisecond (readable in the MLflow UI)."""
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="milliseconds")


def _instant(text: str | None) -> float | None:
    try:
        return datetime.fromisoformat(str(text)).timestamp()
    except (TypeError, ValueError):
        return None


def local_time(t: float) -> str:
    """An instant as people on this machine read it: ``2025-06-01 14:03:07`` in local time."""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t))


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists on this host (one of another user counts as alive)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it exists, it is not ours
        return True
    return True


def lease_tags(now: float | None = None, interval: float | None = None) -> dict[str, str]:
    """The tags a driver starts its sweep run with: this host and pid, the start and a first heartbeat."""
    now = time.time() if now is None else now
    return {HOST: socket.gethostname(), PID: str(os.getpid()), STARTED: stamp(now), HEARTBEAT: stamp(now),
            INTERVAL: f"{heartbeat_interval() if interval is None else interval:g}"}


@dataclass(frozen=True)
class Lease:
    """A driver's lease as read back from its sweep run's tags (times in seconds since the epoch)."""

    run_id: str
    host: str
    pid: int
    started: float
    heartbeat: float
    interval: float

    @classmethod
    def of(cls, run_id: str, tags: Mapping[str, str]) -> Lease | None:
        """The lease in ``tags``; None when the run has none (written by an ablate before leases, or
        unreadable)."""
        started, beat = _instant(tags.get(STARTED)), _instant(tags.get(HEARTBEAT))
        try:
            pid, interval = int(tags.get(PID, "")), float(tags.get(INTERVAL) or DEFAULT_HEARTBEAT_S)
        except ValueError:
            return None
        if started is None or beat is None or not tags.get(HOST):
            return None
        return cls(run_id, tags[HOST], pid, started, beat, interval if interval > 0 else DEFAULT_HEARTBEAT_S)

    def gone_since(self, now: float | None = None, host: str | None = None) -> float | None:
        """None while the driver holds the lease; once it is gone, the time of its last heartbeat."""
        now = time.time() if now is None else now
        if self.host == (socket.gethostname() if host is None else host):
            # on the driver's own host its process decides: a loaded machine can delay heartbeats,
            # never make a live process look dead
            if not pid_alive(self.pid):
                return self.heartbeat
            if self.pid == os.getpid():
                with _held_lock:
                    if self.run_id not in _held:
                        return self.heartbeat
            return None
        if now - self.heartbeat > MISSED_BEATS * self.interval:
            return self.heartbeat
        return None

    def describe(self) -> str:
        """``host h, pid 123, since 2025-06-01 14:03:07``: who holds it, for one-line messages."""
        return f"host {self.host}, pid {self.pid}, since {local_time(self.started)}"

    def gone_reason(self) -> str:
        """``driver gone since <its last heartbeat>``: the reason a gone driver's runs are given."""
        return f"driver gone since {local_time(self.heartbeat)}"


def drivers(records: Iterable[Mapping[str, Any]], now: float | None = None) -> tuple[list[Lease], list[Lease]]:
    """(live, gone) leases of the sweep runs among ``records`` (:meth:`RunStore.runs` dicts) that are
    still ``running``, each list oldest first. Sweep runs without a lease are in neither."""
    now = time.time() if now is None else now
    host = socket.gethostname()
    live: list[Lease] = []
    gone: list[Lease] = []
    for rec in records:
        if not rec["is_sweep"] or rec["status"] != "running":
            continue
        lease = Lease.of(rec["run_id"], rec["tags"])
        if lease is not None:
            (live if lease.gone_since(now, host) is None else gone).append(lease)
    order = lambda lease: (lease.started, lease.run_id)  # noqa: E731 - the one order both lists share
    return sorted(live, key=order), sorted(gone, key=order)


def runs_of(lease: Lease, records: Iterable[Mapping[str, Any]]) -> list[str]:
    """Ids of the runs a gone driver left ``running``: its sweep run and the cell runs under it."""
    return [r["run_id"] for r in records if r["status"] == "running"
            and (r["run_id"] == lease.run_id or r["parent_run_id"] == lease.run_id)]


def mark_stale(records: list[dict[str, Any]]) -> None:
    """Set ``stale`` (``driver gone since …``) on each running record of a gone driver, in place."""
    _, gone = drivers(records)
    for lease in gone:
        stale = set(runs_of(lease, records))
        for rec in records:
            if rec["run_id"] in stale:
                rec["stale"] = lease.gone_reason()


class Heartbeat:
    """A daemon thread that rewrites the heartbeat tag of ``run_id`` every ``interval`` seconds.

    It has its own ``MlflowClient`` (the driver's is used by the Tune loop); a failed write is logged
    and tried again at the next beat — a store that is down for a while only ages the heartbeat.
    """

    def __init__(self, tracking_uri: str, run_id: str, interval: float | None = None) -> None:
        self.run_id = run_id
        self.interval = heartbeat_interval() if interval is None else interval
        self.client = mlflow_client(tracking_uri)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"ablate-heartbeat-{run_id[:8]}", daemon=True)

    def start(self) -> Heartbeat:
        with _held_lock:
            _held.add(self.run_id)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop beating (waits for a write in flight, at most one interval)."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=max(self.interval, 5.0))
        with _held_lock:
            _held.discard(self.run_id)

    def _beat(self) -> None:
        failing = False
        while not self._stop.wait(self.interval):
            try:
                self.client.set_tag(self.run_id, HEARTBEAT, stamp(time.time()))
            except Exception as err:  # the store is down: the next beat tries again
                if not failing:
                    _log.warning("heartbeat of sweep run %s not written: %s", self.run_id, err)
                failing = True
            else:
                failing = False
