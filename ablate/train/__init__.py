"""The trial engine: one cell of an experiment, in plain PyTorch (no Ray, no MLflow).

    from ablate.train import run_cell, PrintReporter
    result = run_cell(cell, PrintReporter())
    print(result.status, result.summary["final/psnr"])
"""

from __future__ import annotations

from ._engine import CellResult, run_cell
from ._reporter import NullReporter, PrintReporter, Reporter, flatten_traces

__all__ = ["CellResult", "NullReporter", "PrintReporter", "Reporter", "flatten_traces", "run_cell"]
