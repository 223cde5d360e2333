"""Exactly once: the (key, step) points each run holds, so that no writer logs one twice.

    from ablate.track._ledger import Ledger
    ledger = Ledger(lambda run_id, keys: store.points(run_id, keys))
    ledger.start(run_id)                                    # a run just created holds nothing: no read
    ledger.fresh(run_id, {"train/loss": 0.3, "val/psnr": 21.0}, step=20)   # the points to log now

Every writer goes through it (the :class:`~ablate.track.Tracker` asks it in ``log``): a sweep's or a
search's cells through the Tune callback, ``ablate train``, ``ablate eval``. A run this process did not
create — a cell run reused by a resumed sweep or a rerun ``ablate train``, a finished run ``ablate eval``
adds to — may hold points already: what it holds of a key is read from the store the first time the
key is logged to it, then kept up to date with what is logged. A cell that runs again reports again the
steps between its checkpoint and where it stopped (or every step, without a checkpoint); those points
are dropped, the ones the store lacks (a killed driver's buffer) are logged. ``again=True`` logs a point
even when the run holds it: ``ablate eval --force``, or a set scored anew with another setting.

A point counts as held once it is handed to the buffer: a write that fails for good fails the writer.
Imports nothing of this package.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import TypeVar

V = TypeVar("V")
Reader = Callable[[str, Collection[str]], Mapping[str, Collection[int]]]


class Ledger:
    """``{run: {key: steps}}`` of what each run holds; ``read(run_id, keys)`` reads the steps of
    ``keys`` the store holds for ``run_id`` (keys it lacks may be left out)."""

    def __init__(self, read: Reader) -> None:
        self._read = read
        self._held: dict[str, dict[str, set[int]]] = {}
        self._complete: set[str] = set()  # runs whose every key is known (created here)
        self.reads = 0  # reads of the store made

    def start(self, run_id: str, held: Mapping[str, Collection[int]] | None = None) -> None:
        """``run_id`` holds exactly ``held`` (nothing: a run just created), so nothing need be read:
        a writer that reuses a run reads all it holds at once."""
        self._held[run_id] = {key: set(steps) for key, steps in (held or {}).items()}
        self._complete.add(run_id)

    def forget(self, run_id: str) -> None:
        """Drop what is known of ``run_id`` (its cell ended): a later write reads it again."""
        self._held.pop(run_id, None)
        self._complete.discard(run_id)

    def held(self, run_id: str, keys: Collection[str]) -> dict[str, set[int]]:
        """``{key: steps}`` ``run_id`` holds of ``keys`` (read once per run and key)."""
        known = self._held.setdefault(run_id, {})
        if run_id not in self._complete:
            missing = [k for k in keys if k not in known]
            if missing:
                self.reads += 1
                stored = self._read(run_id, missing)
                for key in missing:
                    known[key] = set(stored.get(key, ()))
        return {key: known.setdefault(key, set()) for key in keys}

    def fresh(self, run_id: str, points: Mapping[str, V], step: int, *, again: bool = False) -> dict[str, V]:
        """The points of ``points`` (key -> value at ``step``) that ``run_id`` does not hold yet — all of
        them with ``again`` — now counted as held."""
        held = self.held(run_id, list(points))
        out = {key: value for key, value in points.items() if again or step not in held[key]}
        for key in out:
            held[key].add(step)
        return out
