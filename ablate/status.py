"""The one vocabulary of cell outcomes, shared by the trainer, the driver, tracking and reports.

    from ablate.status import CellStatus
    CellStatus("diverged").done            # True: a result, never rerun
    CellStatus.FAILED.mlflow_state         # "FAILED"

This module imports nothing from ablate, so every layer may use it.
"""

from __future__ import annotations

from enum import Enum


class CellStatus(str, Enum):
    """What became of a cell. Values are the strings stored in the MLflow tag ``ablate.status``."""

    RUNNING = "running"
    FINISHED = "finished"  # trained to the last step and evaluated
    DIVERGED = "diverged"  # stopped by the divergence guard: a result, not an error
    FAILED = "failed"  # an exception, a dead worker or a bad configuration
    PRUNED = "pruned"  # stopped early by a search scheduler (ASHA)
    KILLED = "killed"  # the sweep stopped before the cell ended; `ablate resume` continues it

    def __str__(self) -> str:
        return self.value

    @property
    def done(self) -> bool:
        """Finished or diverged: the cell has its result and a rerun skips it."""
        return self in (CellStatus.FINISHED, CellStatus.DIVERGED)

    @property
    def ended(self) -> bool:
        """Any status but running."""
        return self is not CellStatus.RUNNING

    @property
    def mlflow_state(self) -> str:
        """The MLflow run state: a diverged cell completed its job (divergence is a result)."""
        return _MLFLOW_STATE[self]


_MLFLOW_STATE = {CellStatus.RUNNING: "RUNNING", CellStatus.FINISHED: "FINISHED", CellStatus.DIVERGED: "FINISHED",
                 CellStatus.FAILED: "FAILED", CellStatus.PRUNED: "KILLED", CellStatus.KILLED: "KILLED"}

#: the statuses a cell can end with, in the order tables list them
ENDED = tuple(s for s in CellStatus if s.ended)
#: statuses whose cells need not run again
DONE = frozenset(s.value for s in CellStatus if s.done)
