"""The Tracker's metric buffer, alone: when points are due, how they are sent, what a failed send keeps.

    .venv/bin/python -m pytest tests/track/test_buffer.py

The points here are plain tuples and the sender a list (the Tracker hands MLflow ``Metric`` entities to
``log_batch``; tests/track/test_tracker.py checks that against a real store).
"""

from __future__ import annotations

import pytest

from ablate.track._buffer import MetricBuffer

Point = tuple[str, int]


class Sender:
    """Records what it is sent; fails on the ``fail_at``-th chunk (1-based) with a ConnectionError."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.sent: list[tuple[str, list[Point]]] = []
        self.fail_at = fail_at
        self.chunks = 0

    def __call__(self, run_id: str, chunk: list[Point]) -> None:
        self.chunks += 1
        if self.chunks == self.fail_at:
            raise ConnectionError("store down")
        self.sent.append((run_id, list(chunk)))


def _points(key: str, steps: range) -> list[Point]:
    return [(key, s) for s in steps]


def test_due_when_full_or_when_the_oldest_point_is_flush_s_old() -> None:
    now = [0.0]
    buf: MetricBuffer[Point] = MetricBuffer(flush_every=5, flush_s=2.0, clock=lambda: now[0])
    assert not buf.due() and len(buf) == 0
    buf.add("r", [])  # nothing added starts no clock
    now[0] = 10.0
    buf.add("r", _points("a", range(2)))
    assert not buf.due()
    now[0] = 11.9
    buf.add("r", _points("a", range(2, 4)))
    assert not buf.due()  # 4 points, the oldest 1.9 s old
    now[0] = 12.0
    assert buf.due()
    buf.write(Sender())
    assert len(buf) == 0 and not buf.due()
    buf.add("r", _points("b", range(5)))
    assert buf.due()  # full; the age clock started again with the first point since


def test_points_go_in_order_per_run_in_chunks_of_at_most_batch() -> None:
    buf: MetricBuffer[Point] = MetricBuffer(batch=4)
    buf.add("r1", _points("a", range(6)))
    buf.add("r2", _points("b", range(3)))
    buf.add("r1", _points("c", range(3)))
    assert buf.runs() == ["r1", "r2"] and len(buf) == 12
    send = Sender()
    buf.write(send, "r2")  # one run only
    assert send.sent == [("r2", _points("b", range(3)))] and len(buf) == 9
    buf.write(send)
    assert [(rid, len(chunk)) for rid, chunk in send.sent[1:]] == [("r1", 4), ("r1", 4), ("r1", 1)]
    assert [p for _, chunk in send.sent[1:] for p in chunk] == _points("a", range(6)) + _points("c", range(3))


def test_a_failed_send_keeps_what_was_not_sent_ahead_of_newer_points() -> None:
    buf: MetricBuffer[Point] = MetricBuffer(batch=3)
    buf.add("r", _points("a", range(7)))
    send = Sender(fail_at=2)
    with pytest.raises(ConnectionError):
        buf.write(send)
    assert send.sent == [("r", _points("a", range(3)))]  # the first chunk went through
    assert len(buf) == 4
    buf.add("r", [("b", 0)])
    retry = Sender()
    buf.write(retry)
    assert [p for _, chunk in retry.sent for p in chunk] == _points("a", range(3, 7)) + [("b", 0)]
    assert len(buf) == 0 and buf.runs() == []


def test_a_failed_run_leaves_the_runs_after_it_buffered() -> None:
    buf: MetricBuffer[Point] = MetricBuffer()
    buf.add("r1", [("a", 1)])
    buf.add("r2", [("b", 1)])
    with pytest.raises(ConnectionError):
        buf.write(Sender(fail_at=1))
    assert len(buf) == 2 and sorted(buf.runs()) == ["r1", "r2"]
