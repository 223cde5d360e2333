"""The trial engine: one cell of an experiment, in plain PyTorch (no Ray, no MLflow).

    from ablate.train import run_cell, PrintReporter
    result = run_cell(cell, PrintReporter())
    print(result.status, result.summary["final/psnr"])
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ablate.lazy import lazy_exports

from ._names import CHECKPOINT_FILE, VAL_SEED
from ._reporter import NullReporter, PrintReporter, Reporter, flatten_traces

if TYPE_CHECKING:
    from ._cell import pick_device
    from ._checkpoint import load_checkpoint, save_checkpoint
    from ._state import TrainState
    from ._trainer import CellResult, Trainer, run_cell

__all__ = ["CHECKPOINT_FILE", "CellResult", "NullReporter", "PrintReporter", "Reporter", "TrainState", "Trainer",
           "VAL_SEED", "flatten_traces", "load_checkpoint", "pick_device", "run_cell", "save_checkpoint"]

# torch: imported on first use (a sweep's driver reads CHECKPOINT_FILE and flatten_traces, and trains nothing)
__getattr__, __dir__ = lazy_exports(__name__, {
    "pick_device": "._cell", "load_checkpoint": "._checkpoint", "save_checkpoint": "._checkpoint",
    "TrainState": "._state", "CellResult": "._trainer", "Trainer": "._trainer", "run_cell": "._trainer"})
