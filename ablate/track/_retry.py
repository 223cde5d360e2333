"""MLflow calls timed, and retried with backoff while the store is unreachable or busy.

    from ablate.track._retry import Retry
    retry = Retry("sqlite:////abs/.ablate/mlflow.db", remote=False)
    run = retry.call(client.get_run, run_id)     # waits out an outage of up to retry_s (300 s)
    retry.log_time, retry.calls                  # seconds spent inside MLflow, requests made

A call that must complete (a run starting or ending) waits: 1 s, 2 s, 4 s… at most 30 s apart, until the
store has been failing for ``retry_s`` (``$ABLATE_MLFLOW_RETRY_S``, default 300); then the error is raised.
A write that need not wait (a metric flush) tries once and, when it failed, asks :meth:`Retry.back_off`
for the next try's time, so the caller goes on meanwhile. Which failures are worth another try is
:func:`~ablate.track._client.transient`'s rule. Of this package it imports only ``_client``.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from ._client import transient

ENV_RETRY = "ABLATE_MLFLOW_RETRY_S"
DEFAULT_RETRY_S = 300.0  # how long the store may stay unreachable before the writer gives up
MAX_BACKOFF_S = 30.0

_log = logging.getLogger(__name__)
T = TypeVar("T")


def retry_seconds() -> float:
    """``$ABLATE_MLFLOW_RETRY_S``, or 300 s when unset or not a number."""
    try:
        return max(0.0, float(os.environ.get(ENV_RETRY) or DEFAULT_RETRY_S))
    except ValueError:
        return DEFAULT_RETRY_S


class Retry:
    """Times MLflow calls and retries the transient failures of one store (``where``: its URI, for
    the warnings; ``remote``: a tracking server, whose connection errors are transient too).

    ``clock`` and ``sleep`` are ``time.monotonic`` and ``time.sleep`` unless given (a test's clock).
    """

    def __init__(self, where: str, remote: bool, retry_s: float | None = None, *,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> None:
        self.where = where
        self.remote = remote
        self.retry_s = retry_seconds() if retry_s is None else float(retry_s)
        self.log_time = 0.0  # seconds spent inside MLflow calls
        self.calls = 0  # MLflow requests made
        self.down_since: float | None = None  # clock time of the first failure in a row
        self.retry_at = 0.0  # a write that need not wait is not tried before this clock time
        self._clock = clock
        self._sleep = sleep

    @contextmanager
    def timer(self) -> Iterator[None]:
        """Count the time inside the block as one MLflow request."""
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.log_time += time.perf_counter() - t0
            self.calls += 1

    def once(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)``, timed, one try."""
        with self.timer():
            return fn(*args, **kwargs)

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)``, timed, and retried while its failure is transient and the store
        has been failing for less than ``retry_s``; then its error is raised."""
        return self.retry(self.once, fn, *args, **kwargs)

    def retry(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)`` retried as :meth:`call` retries, not timed (a reader that times itself)."""
        delay = 1.0
        while True:
            try:
                out = fn(*args, **kwargs)
            except Exception as err:
                if not self.failed(err):
                    raise
                assert self.down_since is not None
                left = self.down_since + self.retry_s - self._clock()
                self._sleep(max(0.0, min(delay, left)))
                delay = min(2 * delay, MAX_BACKOFF_S)
                continue
            self.recovered()
            return out

    def failed(self, err: Exception) -> bool:
        """Record a failure; True when it is worth another try (transient, and the store has been
        failing for less than ``retry_s``)."""
        if not transient(err, self.remote):
            return False
        now = self._clock()
        if self.down_since is None:
            self.down_since = now
            _log.warning("MLflow store %s unreachable (%s); retrying for up to %.0f s, metrics stay buffered",
                         self.where, str(err).splitlines()[0][:200] if str(err) else type(err).__name__,
                         self.retry_s)
        return now - self.down_since < self.retry_s

    def recovered(self) -> None:
        """A call went through: the store is up."""
        if self.down_since is not None:
            _log.warning("MLflow store %s reachable again after %.0f s", self.where, self._clock() - self.down_since)
        self.down_since = None
        self.retry_at = 0.0

    def back_off(self) -> None:
        """After a failed write that did not wait: no such write before a delay that grows with the
        time the store has been down (1 s at first, at most 30 s), as :meth:`retry` waits."""
        assert self.down_since is not None
        now = self._clock()
        self.retry_at = now + min(max(1.0, now - self.down_since), MAX_BACKOFF_S)

    def ready(self) -> bool:
        """Whether a write that need not wait may be tried now."""
        return self._clock() >= self.retry_at
