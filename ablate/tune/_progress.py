"""The live progress display of a sweep, at any size.

    display = ProgressDisplay(tty=sys.stdout.isatty())
    display.draw(sys.stdout, progress_lines(rows, cells, labels, seconds), expected=7)

Up to ``COMPACT_ABOVE`` cells (a screenful) it is the full table, one row per cell. Beyond that a
table of every cell is unreadable on a terminal and, reprinted every 30 s into a log file, grows the
log by the whole grid each time, so the display turns compact: the counts per status, an ETA from
the finished cells' times, the running cells and the last few that ended (with their reasons). A
terminal gets the display redrawn in place; a log file gets a new block when cells ended (at most
every ``refresh_s``, else every ``HEARTBEAT`` refreshes) that lists only the cells that ended since
the previous block, so each ended cell appears in the log once and the log grows with the number of
cells, not with the sweep's duration times the grid.
Nothing here needs Ray: the callback hands over plain :class:`CellLine` records.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

from ablate.spec import CellSpec
from ablate.status import CellStatus

COMPACT_ABOVE = 20  # cells; more than a screenful of rows
RECENT = 5  # ended cells a terminal shows
MAX_RUNNING = 10  # running cells listed (a cluster may run hundreds at once)
MAX_PROBLEMS = 20  # cells that did not finish, listed in the final block
REASON_CHARS = 70
HEARTBEAT = 10  # a compact log without news gets a block every this many refresh intervals


@dataclass(frozen=True)
class CellLine:
    """One cell as the display sees it."""

    cell: str
    norm: str
    backbone: str
    task: str
    step: int
    steps: int
    status: CellStatus
    psnr: float = math.nan
    max_msq: float = math.nan
    reason: str = ""
    started: float = 0.0  # time.perf_counter() when the cell started
    seconds: float | None = None  # how long it ran, once it ended
    note: str = ""  # beside the status: the retry count while retried, the failure class once failed

    @property
    def ended_at(self) -> float:
        return self.started + (self.seconds or 0.0)


def progress_lines(rows: Mapping[str, Mapping[str, Any]], cells: Mapping[str, CellSpec],
                   labels: Mapping[str, str], seconds: Mapping[str, float],
                   order: Sequence[str] = ()) -> list[CellLine]:
    """The callback's per-cell rows (step, psnr, max_msq, status, reason, note, t0) as display lines,
    in the experiment's ``order`` (its plan's cell ids; Ray starts cells in its own order), cells not
    in it (a search's trials) after them in the order they started."""
    rank = {cell_id: i for i, cell_id in enumerate(order)}
    out = []
    for cell_id, r in sorted(rows.items(), key=lambda item: rank.get(item[0], len(rank))):
        c = cells[cell_id]
        out.append(CellLine(cell_id, labels[cell_id], c.backbone.label(), c.task.label(), int(r["step"]),
                            c.train.steps, CellStatus(r["status"]), float(r["psnr"]), float(r["max_msq"]),
                            str(r.get("reason", "")), float(r["t0"]), seconds.get(cell_id),
                            str(r.get("note", ""))))
    return out


def _num(value: float, spec: str) -> str:
    return "" if math.isnan(value) else format(value, spec)


def duration(seconds: float) -> str:
    """``45 s``, ``12 min``, ``2 h 05 min``: a human-sized duration."""
    s = max(0, round(seconds))
    if s < 100:
        return f"{s} s"
    m = round(s / 60)
    return f"{m} min" if m < 60 else f"{m // 60} h {m % 60:02d} min"


def eta(lines: Sequence[CellLine], total: int, now: float) -> tuple[float, float] | None:
    """(seconds left, mean seconds per finished cell), or None before the first cell finished.

    The work left is a mean cell for every cell not started plus what a mean cell still needs for
    every running one, shared by as many cells as run at once now.
    """
    done = [ln.seconds for ln in lines if ln.status is CellStatus.FINISHED and ln.seconds is not None]
    if not done:
        return None
    mean = sum(done) / len(done)
    running = [ln for ln in lines if ln.status is CellStatus.RUNNING]
    waiting = max(0, total - len(lines))
    work = waiting * mean + sum(max(0.0, mean - (now - ln.started)) for ln in running)
    return work / max(1, len(running)), mean


def counts(lines: Sequence[CellLine], total: int) -> str:
    """``3 finished, 1 failed, 2 running, 14 waiting``: every status present, in CellStatus order."""
    n = {s: sum(ln.status is s for ln in lines) for s in CellStatus}
    parts = [f"{n[s]} {s}" for s in (*[s for s in CellStatus if s.ended], CellStatus.RUNNING) if n[s]]
    if total > len(lines):
        parts.append(f"{total - len(lines)} waiting")
    return ", ".join(parts)


def _row(ln: CellLine, now: float, with_reason: bool) -> dict[str, Any]:
    took = ln.seconds if ln.seconds is not None else now - ln.started
    row = {"cell": ln.cell, "norm": ln.norm, "backbone": ln.backbone, "task": ln.task,
           "step": f"{ln.step}/{ln.steps}", "psnr": _num(ln.psnr, ".2f"), "max msq": _num(ln.max_msq, ".3g"),
           "status": f"{ln.status.value} ({ln.note})" if ln.note else ln.status.value, "time": duration(took)}
    if with_reason:
        row["reason"] = ln.reason if len(ln.reason) <= REASON_CHARS else ln.reason[:REASON_CHARS - 1] + "…"
    return row


def full_table(lines: Sequence[CellLine], total: int, now: float) -> str:
    """Every cell, one row each (the display of a small sweep)."""
    from ablate.report import table

    rows = [_row(ln, now, False) for ln in lines]
    done = sum(ln.status.ended for ln in lines)
    return (f"[{time.strftime('%H:%M:%S')}] {done}/{total} cells done\n"
            + table(rows, [c for c in rows[0] if c != "time"]) + "\n")


def compact(lines: Sequence[CellLine], total: int, now: float,
            sections: Sequence[tuple[str, Sequence[CellLine]]], final: bool = False) -> str:
    """Counts per status and the ETA, the running cells (not in the ``final`` block), then each
    ``(title, ended cells)`` section that has cells, with the cells' reasons when any has one."""
    from ablate.report import table

    done = sum(ln.status.ended for ln in lines)
    head = f"[{time.strftime('%H:%M:%S')}] {done}/{total} cells done: {counts(lines, total)}"
    est = None if final else eta(lines, total, now)
    if est is not None:
        running = sum(ln.status is CellStatus.RUNNING for ln in lines)
        head += f"; ETA {duration(est[0])} ({duration(est[1])} per cell, {max(1, running)} at a time)"
    out = [head]
    running_lines = [ln for ln in lines if ln.status is CellStatus.RUNNING]
    if running_lines and not final:
        shown = running_lines[:MAX_RUNNING]
        more = f", {len(running_lines) - len(shown)} more not listed" if len(running_lines) > len(shown) else ""
        rows = [_row(ln, now, False) for ln in shown]
        retried = any(ln.note for ln in shown)  # the status column then says which attempt runs
        out += [f"running ({len(running_lines)}{more}):",
                table(rows, [c for c in rows[0] if c != "status" or retried])]
    for title, ended in sections:
        if ended:
            rows = [_row(ln, now, any(e.reason for e in ended)) for ln in ended]
            out += [title, table(rows, list(rows[0]))]
    return "\n".join(out) + "\n"


class ProgressDisplay:
    """Draws the progress of a sweep to a stream: redrawn in place every 2 s on a terminal; in a log
    file a new block every 30 s, or in the compact form when cells ended (at most every 30 s) and
    else every ``HEARTBEAT`` × 30 s (``refresh_s`` overrides the 2 and 30 s)."""

    def __init__(self, tty: bool, refresh_s: float | None = None, compact_above: int = COMPACT_ABOVE) -> None:
        self.tty = tty
        self.refresh_s = refresh_s if refresh_s is not None else (2.0 if tty else 30.0)
        self.compact_above = compact_above
        self._last = 0.0  # when the display was last drawn
        self._drawn_lines = 0  # lines of the last block on a terminal (to redraw over)
        self._listed: set[str] = set()  # ended cells a log file has already listed
        self._quiet = False  # the last block went to a log in the compact form
        self._news = False  # a cell ended since that block

    def due(self) -> bool:
        """Time to draw again: the refresh interval has passed (a compact log also waits for a cell
        to end, or for the heartbeat)."""
        waited = time.perf_counter() - self._last
        if waited < self.refresh_s:
            return False
        return not self._quiet or self._news or waited >= HEARTBEAT * self.refresh_s

    def note(self, stream: TextIO, text: str) -> None:
        """A line that stays (e.g. a cell's failure); the next display starts below it."""
        stream.write(text if text.endswith("\n") else text + "\n")
        self._drawn_lines = 0

    def draw(self, stream: TextIO, lines: Sequence[CellLine], expected: int, *, final: bool = False,
             cell_ended: bool = False) -> None:
        """Draw the display for ``lines`` (``expected``: cells the sweep will run in all). A compact
        log waits for its next block when a cell ended (``cell_ended``); ``final`` is the last one."""
        if not lines:
            return
        total = max(len(lines), expected)
        small = total <= self.compact_above
        self._quiet = not small and not self.tty
        if cell_ended and self._quiet:
            self._news = True  # listed in the next block
            return
        self._last = now = time.perf_counter()
        self._news = False
        text = full_table(lines, total, now) if small else self._compact(lines, total, now, final)
        if self.tty and self._drawn_lines:  # redraw in place: cursor up over the last block, clear below
            stream.write(f"\x1b[{self._drawn_lines}F\x1b[J")
        elif not self.tty:
            text = "\n" + text
        stream.write(text)
        stream.flush()
        # lines printed between two blocks (a cell's failure reason) stay: start a fresh block below them
        self._drawn_lines = text.count("\n") if self.tty and not final else 0

    def _compact(self, lines: Sequence[CellLine], total: int, now: float, final: bool) -> str:
        ended = sorted((ln for ln in lines if ln.status.ended), key=lambda ln: ln.ended_at)
        sections: list[tuple[str, Sequence[CellLine]]] = []
        if self.tty:  # the last few, redrawn in place
            if not final:
                recent = ended[-RECENT:]
                sections.append((f"last ended ({len(recent)} of {len(ended)}):", recent))
        else:  # a log lists each ended cell once
            new = [ln for ln in ended if ln.cell not in self._listed]
            self._listed.update(ln.cell for ln in new)
            sections.append((f"ended since the last report ({len(new)}):", new))
        if final:
            problems = [ln for ln in ended if ln.status is not CellStatus.FINISHED]
            shown = problems[:MAX_PROBLEMS]
            more = f", the first {len(shown)}; `ablate status` lists every cell" if len(shown) < len(problems) else ""
            sections.append((f"not finished ({len(problems)}{more}):", shown))
        return compact(lines, total, now, sections, final)
