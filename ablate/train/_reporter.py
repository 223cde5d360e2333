from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Protocol, TextIO

Trace = dict[str, dict[str, float]]


def flatten_traces(traces: Trace | None) -> dict[str, float]:
    """``{site: {stat: v}}`` → ``{"feat/<site>/<stat>": v}`` (the MLflow metric names)."""
    return {f"feat/{site}/{stat}": v for site, stats in (traces or {}).items() for stat, v in stats.items()}


class Reporter(Protocol):
    """Where a running cell sends its results. The Ray adapter turns these into ``tune.report``."""

    def report(self, step: int, metrics: dict[str, float], traces: Trace | None = None,
               checkpoint: Path | None = None) -> None: ...


class NullReporter:
    """Discards reports (tests, benchmarks)."""

    def report(self, step: int, metrics: dict[str, float], traces: Trace | None = None,
               checkpoint: Path | None = None) -> None:
        return None


class PrintReporter:
    """A one-line progress bar: step, loss, PSNR, max feature msq, steps/s."""

    def __init__(self, total: int, stream: TextIO | None = None, label: str = "") -> None:
        self.total = total
        self.stream = stream or sys.stderr
        self.label = label
        self.start = time.perf_counter()
        self.loss = float("nan")
        self.psnr = float("nan")
        self.max_msq = float("nan")
        self._tty = hasattr(self.stream, "isatty") and self.stream.isatty()

    def report(self, step: int, metrics: dict[str, float], traces: Trace | None = None,
               checkpoint: Path | None = None) -> None:
        self.loss = metrics.get("train/loss", self.loss)
        self.psnr = metrics.get("val/psnr", self.psnr)
        if traces:
            self.max_msq = max(v.get("msq", float("nan")) for v in traces.values())
        width = 24
        done = int(width * step / max(self.total, 1))
        rate = step / max(time.perf_counter() - self.start, 1e-9)
        line = (f"{self.label}[{'#' * done}{'.' * (width - done)}] {step}/{self.total} "
                f"loss {self.loss:.4f}  psnr {self.psnr:.2f}  max msq {self.max_msq:.3g}  {rate:.1f} it/s")
        if self._tty:
            self.stream.write("\r" + line)
            if step >= self.total:
                self.stream.write("\n")
        elif step >= self.total or "val/psnr" in metrics:
            self.stream.write(line + "\n")
        self.stream.flush()
