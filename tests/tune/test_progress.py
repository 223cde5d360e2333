"""The live progress display at any size, driven by a fake callback state (no Ray running).

A small sweep keeps the full table; beyond a screenful the display shows counts, an ETA, the running
cells and the last ones that ended; a log file gets blocks that list each ended cell once, so a
200-cell sweep's log stays small.
"""

from __future__ import annotations

import io
import math
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from ablate.spec import expand, parse_experiment
from ablate.status import CellStatus
from ablate.tune._progress import COMPACT_ABOVE, CellLine, ProgressDisplay, duration, eta
from ablate.tune._storage import CheckpointStore


class Clock:
    """Stands in for the ``time`` module of the display and the callback: perf_counter is ours."""

    def __init__(self) -> None:
        self.now = 1000.0

    def perf_counter(self) -> float:
        return self.now

    @staticmethod
    def strftime(fmt: str) -> str:
        return time.strftime(fmt)


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


class FakeTracker:
    """The callback's view of the MLflow writer, keeping nothing."""

    def start_cell(self, parent: str, cell_id: str, name: str, params: Any, tags: Any) -> str:
        return f"run-{cell_id}"

    def log(self, run_id: str, metrics: Any, step: int) -> None: ...

    def last_step(self, run_id: str) -> int:
        return 0

    def end_cell(self, run_id: str, status: str, reason: str = "", **kwargs: Any) -> None: ...

    def log_text(self, *args: Any) -> None: ...

    def flush(self) -> None: ...

    def log_artifact(self, *args: Any) -> None: ...


def line(i: int, status: CellStatus = CellStatus.RUNNING, *, step: int = 100, started: float = 0.0,
         seconds: float | None = None, reason: str = "") -> CellLine:
    return CellLine(f"cell{i:06d}", "token_ln", "swinir-tiny", "sr-x2", step, 300, status, 33.0, 4.5, reason,
                    started, seconds)


def _cells(n: int) -> dict[str, dict[str, Any]]:
    spec = parse_experiment({"name": "p", "norm": "token_ln", "backbone": "swinir-tiny", "task": "sr-x2",
                             "grid": {"seed": list(range(n))}, "train": {"steps": 300}, "probes": {"every": 25}})
    return {c.id: c.to_config() for c in expand(spec)}


def _callback(n: int, stream: io.StringIO, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, Clock]:
    from ablate.tune import _callback, _progress

    clock = Clock()
    monkeypatch.setattr(_progress, "time", clock)
    monkeypatch.setattr(_callback, "time", clock)
    store = CheckpointStore.open(None, tmp_path, "p")
    return _callback.SweepCallback(FakeTracker(), "parent", _cells(n), store, stream=stream), clock


def _simulate(cb: Any, clock: Clock, slots: int, results: int, dt: float, fail: set[int]) -> None:
    """Run every cell of ``cb``, ``slots`` at a time, each with ``results`` reports ``dt`` s apart."""
    from ablate.tune._trial import CELL, FAILURE, FINAL, REASON, STATUS, STEP

    ids = list(cb.base_cells)
    for start in range(0, len(ids), slots):
        batch = [(i, SimpleNamespace(trial_id=f"t{i}", config={"cell_id": ids[i]}))
                 for i in range(start, min(start + slots, len(ids)))]
        for _, trial in batch:
            cb.on_trial_start(0, [], trial)
        for k in range(1, results + 1):
            clock.now += dt
            for _, trial in batch:
                cb.on_trial_result(0, [], trial, {STEP: k * 25, "train/loss": 0.1, "val/psnr": 30.0 + k / 10})
        for i, trial in batch:
            if i in fail:  # an error inside the cell: the trial reports it as its last result
                cb.on_trial_result(0, [], trial, {STEP: results * 25, CELL: trial.config["cell_id"], FINAL: 1,
                                                  STATUS: "failed", FAILURE: "crash",
                                                  REASON: "RuntimeError: out of memory"})
            else:
                cb.on_trial_result(0, [], trial, {STEP: 300, CELL: trial.config["cell_id"], FINAL: 1,
                                                  STATUS: "finished", REASON: "", "final/psnr": 33.0})
    cb.close()


def test_durations_read_like_a_person_would_say_them() -> None:
    assert [duration(s) for s in (4.4, 99, 160, 3000, 3599, 7500)] == \
        ["4 s", "99 s", "3 min", "50 min", "1 h 00 min", "2 h 05 min"]


def test_eta_shares_the_work_left_over_the_cells_running_now() -> None:
    now = 100.0
    lines = [line(0, CellStatus.FINISHED, started=0, seconds=40), line(1, CellStatus.FINISHED, started=40, seconds=60),
             line(2, CellStatus.FAILED, started=0, seconds=1),  # failures say nothing about a cell's time
             line(3, started=80), line(4, started=90)]
    left, mean = eta(lines, total=9, now=now) or (math.nan, math.nan)
    assert mean == 50  # finished cells only
    # 4 waiting × 50 s + (50 − 20) + (50 − 10) s of the running two, shared by 2 slots
    assert left == pytest.approx((4 * 50 + 30 + 40) / 2)
    assert eta([line(0, started=0)], total=5, now=now) is None  # nothing finished yet: no estimate


def test_a_small_sweep_keeps_the_full_table() -> None:
    out = io.StringIO()
    lines = [line(i, CellStatus.FINISHED if i < 2 else CellStatus.RUNNING, seconds=10 if i < 2 else None)
             for i in range(COMPACT_ABOVE)]
    ProgressDisplay(tty=False).draw(out, lines, expected=COMPACT_ABOVE)
    text = out.getvalue()
    assert f"] 2/{COMPACT_ABOVE} cells done\n" in text
    assert text.splitlines()[2].split() == ["cell", "norm", "backbone", "task", "step", "psnr", "max", "msq", "status"]
    assert all(f"cell{i:06d}" in text for i in range(COMPACT_ABOVE))


def test_beyond_a_screenful_a_terminal_sees_counts_eta_running_and_the_last_ended() -> None:
    out = Tty()
    lines = [line(i, CellStatus.FINISHED, started=i * 10.0, seconds=20.0) for i in range(30)]
    lines[7] = line(7, CellStatus.FAILED, started=70.0, seconds=5.0, reason="RuntimeError: out of memory " + "x" * 99)
    lines[29] = line(29, CellStatus.DIVERGED, started=290.0, seconds=25.0, reason="feature msq 2e+12 at g1.b3")
    lines += [line(30 + i, started=time.perf_counter() - 5) for i in range(2)]
    display = ProgressDisplay(tty=True)
    display.draw(out, lines, expected=200)
    text = out.getvalue()
    head = text.splitlines()[0]
    assert "30/200 cells done: 28 finished, 1 diverged, 1 failed, 2 running, 168 waiting; ETA " in head
    assert "(20 s per cell, 2 at a time)" in head
    assert "running (2):" in text and "cell000030" in text and "cell000031" in text
    assert "last ended (5 of 30):" in text and "cell000029" in text and "feature msq 2e+12 at g1.b3" in text
    assert "cell000010" not in text  # older ended cells are not listed
    assert len(text.splitlines()) < 20
    # redrawn in place: the cursor goes back over the whole previous block
    display.draw(out, lines, expected=200)
    assert f"\x1b[{text.count(chr(10))}F\x1b[J" in out.getvalue()


def test_the_final_compact_block_lists_the_cells_that_did_not_finish_with_reasons() -> None:
    out = Tty()
    lines = [line(i, CellStatus.FINISHED, seconds=20.0) for i in range(40)]
    lines[3] = line(3, CellStatus.FAILED, seconds=5.0, reason="RuntimeError: out of memory")
    ProgressDisplay(tty=True).draw(out, lines, expected=40, final=True)
    text = out.getvalue()
    assert "40/40 cells done: 39 finished, 1 failed\n" in text and "ETA" not in text and "running" not in text
    assert "not finished (1):" in text and "RuntimeError: out of memory" in text and "cell000004" not in text
    # a log also gets the cells that ended since its last block, before that list
    log = io.StringIO()
    display = ProgressDisplay(tty=False)
    display.draw(log, lines[:30], expected=40)
    display.draw(log, lines, expected=40, final=True)
    last = log.getvalue().split("\n\n")[-1]
    assert "ended since the last report (10):" in last and "cell000035" in last and "cell000004" not in last
    assert last.index("ended since") < last.index("not finished (1):")


def test_a_small_sweep_through_the_callback_prints_todays_table(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    out = io.StringIO()
    cb, clock = _callback(3, out, tmp_path, monkeypatch)
    _simulate(cb, clock, slots=2, results=4, dt=10.0, fail={2})
    text = out.getvalue()
    assert "cell " + list(cb.base_cells)[2] + " failed: RuntimeError: out of memory" in text
    last = text[text.rindex("cells done"):]
    assert "3/3 cells done" in text and last.count("\n") == 6  # the title line, header, rule, 3 rows
    assert "failed (crash)" in last  # the failure's class beside its status
    assert cb.statuses() == dict(zip(cb.base_cells, ["finished", "finished", "failed"]))


def test_a_200_cell_sweeps_log_lists_each_ended_cell_once_and_stays_small(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    out = io.StringIO()
    cb, clock = _callback(200, out, tmp_path, monkeypatch)
    # 2 cells at a time, 12 reports 10 s apart each: a 20-minute-per-round sweep of 100 rounds
    _simulate(cb, clock, slots=2, results=12, dt=10.0, fail={17, 140})
    text = out.getvalue()
    ids = list(cb.base_cells)
    assert len(text.encode()) < 120_000, len(text.encode())  # the full table every 30 s: ~6 MB
    ended_rows = [ln for ln in text.splitlines() if ln.startswith(tuple(ids)) and ("finished" in ln or "failed" in ln)]
    # every ended cell once in the blocks, the two failures once more in the final list
    assert len(ended_rows) == 200 + 2
    assert "200/200 cells done: 198 finished, 2 failed" in text and "not finished (2):" in text
    assert text.count("RuntimeError: out of memory") == 2 + 2 + 2  # the failure line, its block, the final list
    assert "ETA " in text


def test_the_table_lists_cells_in_the_experiments_order_whatever_order_ray_starts_them(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out = io.StringIO()
    cb, _ = _callback(3, out, tmp_path, monkeypatch)
    ids = list(cb.base_cells)
    for i in (2, 0, 1):
        cb.on_trial_start(0, [], SimpleNamespace(trial_id=f"t{i}", config={"cell_id": ids[i]}))
    cb.print_table()
    rows = [ln.split()[0] for ln in out.getvalue().splitlines() if ln.startswith(tuple(ids))]
    assert rows == ids
