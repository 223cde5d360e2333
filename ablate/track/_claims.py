"""A driver's claim on an experiment: refused while another driver lives, the lease held while it runs.

    from ablate.track._claims import Claims
    claims = Claims(uri, client, retry, read_runs, set_tags)
    notes = claims.claim("quick")        # AblateError while another driver runs "quick" on this store
    claims.hold("quick", sweep_run_id)   # the sweep run (created with lease_tags()) starts beating
    claims.release()                     # the sweep ended: stop beating

Drivers are ``ablate run``, ``resume``, ``search`` and ``ablate train --tracking-uri``: each claims its
experiment before it writes anything and holds the lease on its sweep run until the sweep ends (see
``_lease`` for what makes a driver live or gone). The runs a gone driver left running are ended as killed
by the next claim. The :class:`~ablate.track.Tracker` owns one; it passes in its client, its
:class:`~ablate.track._retry.Retry` and how it reads runs (``read_runs(experiment, kind)``, the
:meth:`~ablate.track.RunStore.runs` records) and sets tags.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ablate.errors import AblateError
from ablate.status import CellStatus

from ._lease import Heartbeat, Lease, drivers, local_time, runs_of
from ._names import State, Tag
from ._retry import Retry

RESUME_HINT = "then `ablate resume`"


def busy(experiment: str, lease: Lease, then: str = RESUME_HINT) -> AblateError:
    """The one-line refusal of a second driver: who holds ``experiment``, and what to do."""
    return AblateError(f"experiment {experiment!r} is being run by another driver ({lease.describe()}); "
                       f"wait for it to end or stop it, {then}")


class Claims:
    """Claims experiments on one store and holds the lease of the sweep run being driven."""

    def __init__(self, tracking_uri: str, client: Any, retry: Retry,
                 read_runs: Callable[[str, str], list[dict[str, Any]]],
                 set_tags: Callable[[str, Mapping[str, Any]], None]) -> None:
        self.tracking_uri = tracking_uri
        self.client = client
        self.retry = retry
        self._read_runs = read_runs
        self._set_tags = set_tags
        self.heartbeat: Heartbeat | None = None
        self._then = RESUME_HINT  # what the refusal of a rival of the last claim tells to do

    def claim(self, experiment: str, then: str = RESUME_HINT) -> list[str]:
        """Make way for a new driver of ``experiment`` before it touches anything.

        Raises :class:`AblateError` (one line naming the host, pid and start of the other driver, and
        ``then``: what to do once it is gone) while another driver's sweep of the experiment is alive
        on this store; nothing is written then. The sweep and cell runs a gone driver left ``running``
        end as killed, reason ``driver gone since <its last heartbeat>`` (a resumed sweep then continues
        those cells from their checkpoints). Returns one line per gone driver, saying what was ended.
        """
        self._then = then
        records = self._read_runs(experiment, "all")
        live, gone = drivers(records)
        if live:
            raise busy(experiment, live[0], then)
        notes = []
        for lease in gone:
            ended = runs_of(lease, records)
            reason = lease.gone_reason()
            for run_id in ended:
                self._set_tags(run_id, {Tag.STATUS: CellStatus.KILLED.value, Tag.REASON: reason})
                self.retry.call(self.client.set_terminated, run_id, status=State.KILLED,
                                end_time=int(lease.heartbeat * 1000))
            notes.append(f"the driver of sweep run {lease.run_id} ({lease.describe()}) is gone since "
                         f"{local_time(lease.heartbeat)}: its sweep run and {len(ended) - 1} running cell run(s) "
                         "recorded as killed")
        return notes

    def hold(self, experiment: str, run_id: str) -> None:
        """Start the heartbeat of ``run_id``, a sweep run just created with lease tags — unless another
        live driver slipped in between :meth:`claim` and its creation: then the run is deleted and the
        start refused. (Two drivers that start at the same instant may both back off: neither runs
        twice, and a rerun goes through.)"""
        # beating first: a lease of this process counts as live only while a thread keeps it
        beat = Heartbeat(self.tracking_uri, run_id).start()
        live, _ = drivers(self._read_runs(experiment, "sweeps"))
        rivals = [lease for lease in live if lease.run_id != run_id]
        if rivals:
            beat.stop()
            self.retry.call(self.client.delete_run, run_id)
            raise busy(experiment, rivals[0], self._then)
        self.heartbeat = beat

    def release(self, run_id: str | None = None) -> None:
        """Stop the heartbeat (of ``run_id``, or whichever run beats): its driver is done with it."""
        if self.heartbeat is not None and run_id in (None, self.heartbeat.run_id):
            self.heartbeat.stop()
            self.heartbeat = None
