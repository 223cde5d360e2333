"""Pure grid expansion: an :class:`~ablate.spec.ExperimentSpec` → the list of cells it names.

    from ablate.spec import load_experiment
    from ablate.sweep import expand, plan_rows, table
    cells = expand(load_experiment("experiments/quickstart.yaml"))
    print(table(plan_rows(cells)))

No Ray, no MLflow, no model is built: expansion only resolves names, so it is cheap enough to run
on every ``ablate validate`` and testable without a cluster. A cell's identity is ``CellSpec.id``.
"""

from __future__ import annotations

from ._expand import PLAN_COLUMNS, expand, plan_rows
from ._table import table

__all__ = ["PLAN_COLUMNS", "expand", "plan_rows", "table"]
