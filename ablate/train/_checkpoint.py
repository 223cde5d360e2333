"""Checkpoint files: one ``CHECKPOINT_FILE`` per cell directory, written atomically, read weights-only.

    from ablate.train import CHECKPOINT_FILE, load_checkpoint
    state = load_checkpoint(ckpt_dir)       # ckpt_dir / CHECKPOINT_FILE
    state["step"], state["cell"]            # how far it got, and the cell config it belongs to
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import torch

from ablate.errors import AblateError

from ._names import CHECKPOINT_FILE

# torch wraps the reason a load failed in paragraphs of advice; these lines are the advice
_ADVICE = ("Weights only load failed", "Please file an issue", "Check the documentation")


def save_checkpoint(directory: Path, state: dict[str, Any]) -> Path:
    """Write ``state`` to ``directory / CHECKPOINT_FILE`` and return ``directory``.

    Atomically: a half-written checkpoint must never replace a good one.
    """
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / (CHECKPOINT_FILE + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, directory / CHECKPOINT_FILE)
    return directory


def load_checkpoint(path: Path | str) -> dict[str, Any]:
    """The state saved in ``path``: a checkpoint directory or the file itself, loaded onto the CPU.

    Loaded weights-only: a checkpoint holds tensors and plain Python values, so a tampered file can
    name no code for unpickling to run. A missing, corrupt, truncated or tampered file raises AblateError.
    """
    file = Path(path) / CHECKPOINT_FILE if Path(path).is_dir() else Path(path)
    if not file.exists():
        raise AblateError(f"checkpoint: no {CHECKPOINT_FILE} in {path}")
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises RuntimeError, UnpicklingError, EOFError… by the kind of damage
        raise AblateError(f"checkpoint {file} is unreadable: {_reason(err)}") from err
    if not isinstance(state, dict):
        raise AblateError(f"checkpoint {file} is unreadable: expected a dict, got {type(state).__name__}")
    return state


def _reason(err: Exception) -> str:
    """One line saying what was wrong with the file, from torch's multi-paragraph messages."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip() and not line.startswith(_ADVICE)]
    reason = f"{type(err).__name__}: {' '.join(lines)}" if lines else f"{type(err).__name__} (empty or cut short)"
    if isinstance(err, pickle.UnpicklingError):
        reason += " (a checkpoint may hold only tensors and plain Python values)"
    return reason
