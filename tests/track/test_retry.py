"""The Tracker's retry with backoff, alone: a clock and a sleep of the test's, real MLflow errors.

    .venv/bin/python -m pytest tests/track/test_retry.py

tests/track/test_tracker_retry.py checks it inside a Tracker against a real store (and a real server
that restarts); here each rule is checked on its own, without waiting.
"""

from __future__ import annotations

from typing import Any

import pytest
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import ErrorCode

from ablate.track._retry import MAX_BACKOFF_S, Retry, retry_seconds


class Clock:
    """Time that passes only when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def _error(code: str) -> MlflowException:
    return MlflowException(f"the store answers {code}", error_code=ErrorCode.Value(code))


class Flaky:
    """Fails with ``code`` the first ``failures`` times, then returns its arguments."""

    def __init__(self, failures: int, code: str = "TEMPORARILY_UNAVAILABLE") -> None:
        self.failures, self.code, self.tries = failures, code, 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.tries += 1
        if self.tries <= self.failures:
            raise _error(self.code)
        return args, kwargs


@pytest.fixture
def clock() -> Clock:
    return Clock()


def _retry(clock: Clock, retry_s: float = 300.0) -> Retry:
    return Retry("sqlite:///x.db", remote=False, retry_s=retry_s, clock=clock, sleep=clock.sleep)


def test_a_transient_failure_is_retried_with_doubling_waits(clock: Clock) -> None:
    retry = _retry(clock)
    fn = Flaky(4)
    assert retry.call(fn, 1, k=2) == ((1,), {"k": 2})
    assert fn.tries == 5 and clock.sleeps == [1.0, 2.0, 4.0, 8.0]
    assert retry.calls == 5  # every try is a request, timed
    assert retry.down_since is None  # recovered


def test_waits_stop_doubling_at_30_s_and_the_call_fails_after_retry_s(clock: Clock) -> None:
    retry = _retry(clock, retry_s=100.0)
    fn = Flaky(1000)
    with pytest.raises(MlflowException, match="TEMPORARILY_UNAVAILABLE"):
        retry.call(fn)
    assert clock.sleeps[:6] == [1.0, 2.0, 4.0, 8.0, 16.0, MAX_BACKOFF_S]
    assert max(clock.sleeps) == MAX_BACKOFF_S
    assert sum(clock.sleeps) == pytest.approx(100.0)  # the last wait is cut to what is left of retry_s


def test_other_errors_are_raised_at_once(clock: Clock) -> None:
    retry = _retry(clock)
    fn = Flaky(1, code="INVALID_PARAMETER_VALUE")
    with pytest.raises(MlflowException, match="INVALID_PARAMETER_VALUE"):
        retry.call(fn)
    assert fn.tries == 1 and clock.sleeps == [] and retry.down_since is None
    with pytest.raises(ValueError):
        retry.call(int, "not a number")


def test_a_write_that_need_not_wait_backs_off_longer_the_longer_the_store_is_down(clock: Clock) -> None:
    retry = _retry(clock)
    assert retry.ready()
    with pytest.raises(MlflowException):
        retry.once(Flaky(1))
    assert retry.failed(_error("TEMPORARILY_UNAVAILABLE"))
    retry.back_off()
    assert not retry.ready()
    clock.now += 1.0
    assert retry.ready()  # 1 s after the first failure
    clock.now += 9.0
    retry.back_off()  # down for 10 s: the next try in 10 s
    clock.now += 9.9
    assert not retry.ready()
    clock.now += 0.1
    assert retry.ready()
    clock.now += 1000
    retry.back_off()
    assert retry.retry_at == clock.now + MAX_BACKOFF_S
    retry.recovered()
    assert retry.ready() and retry.down_since is None


def test_an_outage_longer_than_retry_s_is_not_worth_another_try(clock: Clock) -> None:
    retry = _retry(clock, retry_s=60.0)
    busy = _error("TEMPORARILY_UNAVAILABLE")
    assert retry.failed(busy)
    clock.now += 59.0
    assert retry.failed(busy)
    clock.now += 1.0
    assert not retry.failed(busy)


def test_a_tracking_servers_connection_errors_are_transient_a_local_stores_are_not(clock: Clock) -> None:
    refused = MlflowException("API request to http://h/api failed with exception Connection refused")
    remote = Retry("http://h", remote=True, retry_s=10.0, clock=clock, sleep=clock.sleep)
    assert remote.failed(refused)
    assert not _retry(clock).failed(refused)


def test_retry_seconds_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ABLATE_MLFLOW_RETRY_S", "12.5")
    assert retry_seconds() == 12.5
    monkeypatch.setenv("ABLATE_MLFLOW_RETRY_S", "soon")
    assert retry_seconds() == 300.0
    monkeypatch.delenv("ABLATE_MLFLOW_RETRY_S")
    assert retry_seconds() == 300.0
