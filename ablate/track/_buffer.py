"""Metric points waiting to be written, per run, and when they are due.

    from ablate.track._buffer import MetricBuffer
    buffer = MetricBuffer(flush_every=1000, flush_s=5.0)
    buffer.add(run_id, [metric, metric])
    if buffer.due():
        buffer.write(lambda run_id, chunk: client.log_batch(run_id, metrics=chunk))

Points are due once ``flush_every`` are buffered or the oldest has waited ``flush_s`` seconds, so a
driver killed between two full batches loses seconds of points rather than up to a batch (a resumed
cell restores them either way). :meth:`MetricBuffer.write` sends each run's points in chunks of at most
``batch`` (MLflow rejects a ``log_batch`` of more than 1,000 metrics whole); when a send fails, what
was not sent goes back ahead of anything buffered since, in order, and the error is raised — the
caller decides whether to wait, back off or give up. The points are whatever the sender takes
(MLflow ``Metric`` entities for the Tracker). Imports nothing of this package.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

MAX_METRICS_PER_BATCH = 1000  # mlflow.utils.validation.MAX_METRICS_PER_BATCH
FLUSH_SECONDS = 5.0

P = TypeVar("P")


class MetricBuffer(Generic[P]):
    """Buffered points per run id; ``clock`` is ``time.monotonic`` unless given (a test's clock)."""

    def __init__(self, flush_every: int = MAX_METRICS_PER_BATCH, flush_s: float = FLUSH_SECONDS, *,
                 batch: int = MAX_METRICS_PER_BATCH, clock: Callable[[], float] = time.monotonic) -> None:
        self.flush_every = max(1, int(flush_every))
        self.flush_s = float(flush_s)
        self.batch = max(1, int(batch))
        self._clock = clock
        self._points: dict[str, list[P]] = {}
        self._count = 0
        self._oldest: float | None = None  # clock time the oldest buffered point was added

    def __len__(self) -> int:
        return self._count

    def runs(self) -> list[str]:
        """Run ids with buffered points, in the order their first point came."""
        return [run_id for run_id, points in self._points.items() if points]

    def add(self, run_id: str, points: Sequence[P]) -> None:
        if not points:
            return
        if self._oldest is None:
            self._oldest = self._clock()
        self._points.setdefault(run_id, []).extend(points)
        self._count += len(points)

    def due(self) -> bool:
        """Whether the buffer should be written: full, or its oldest point ``flush_s`` old."""
        if not self._count:
            return False
        assert self._oldest is not None
        return self._count >= self.flush_every or self._clock() - self._oldest >= self.flush_s

    def write(self, send: Callable[[str, list[P]], object], run_id: str | None = None) -> None:
        """``send(run_id, chunk)`` for the points of ``run_id`` (all runs: None), ≤ ``batch`` per chunk,
        each run's in the order they were added. A chunk whose send raises, and everything after it of
        that run, stays buffered ahead of points added since; the error is raised."""
        for rid in [run_id] if run_id is not None else list(self._points):
            points = self._points.pop(rid, [])
            self._count -= len(points)
            for i in range(0, len(points), self.batch):
                try:
                    send(rid, points[i:i + self.batch])
                except BaseException:
                    rest = points[i:]
                    self._points[rid] = rest + self._points.get(rid, [])
                    self._count += len(rest)
                    raise
        if not self._count:
            self._oldest = None
