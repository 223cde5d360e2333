"""The trial engine: one cell of an experiment, in plain PyTorch (no Ray, no MLflow).

    from ablate.train import run_cell, PrintReporter
    result = run_cell(cell, PrintReporter())
    print(result.status, result.summary["final/psnr"])
"""

from __future__ import annotations

from ._cell import VAL_SEED, pick_device
from ._checkpoint import CHECKPOINT_FILE, load_checkpoint, save_checkpoint
from ._reporter import NullReporter, PrintReporter, Reporter, flatten_traces
from ._state import TrainState
from ._trainer import CellResult, Trainer, run_cell

__all__ = ["CHECKPOINT_FILE", "CellResult", "NullReporter", "PrintReporter", "Reporter", "TrainState", "Trainer",
           "VAL_SEED", "flatten_traces", "load_checkpoint", "pick_device", "run_cell", "save_checkpoint"]
