"""YAML → frozen, typed, validated specs, in one place, before Ray or MLflow is touched; and the
pure grid expansion of a spec into its cells.

    from ablate.spec import expand, load_experiment
    spec = load_experiment("experiments/quickstart.yaml")
    cells = expand(spec)                  # [CellSpec, ...]; each cell's identity is cell.id

The YAML schema is documented in docs/schema.md.
"""

from __future__ import annotations

from ._axes import AXES, CORE_AXES, apply_overrides
from ._expand import PLAN_COLUMNS, expand, plan_rows
from ._experiment import (
    EVAL_PRECISIONS,
    SEARCH_METRICS,
    EvalSpec,
    ExperimentSpec,
    ResourceSpec,
    SearchParam,
    SearchSpec,
    TrackingSpec,
)
from ._fields import build_dataclass
from ._load import load_experiment, parse_experiment
from ._types import CellSpec, Component, OptimizerSpec, ProbeSpec, ScheduleSpec, TrainSpec, flatten

__all__ = [
    "AXES",
    "CORE_AXES",
    "EVAL_PRECISIONS",
    "PLAN_COLUMNS",
    "SEARCH_METRICS",
    "CellSpec",
    "Component",
    "EvalSpec",
    "ExperimentSpec",
    "OptimizerSpec",
    "ProbeSpec",
    "ResourceSpec",
    "ScheduleSpec",
    "SearchParam",
    "SearchSpec",
    "TrackingSpec",
    "TrainSpec",
    "apply_overrides",
    "build_dataclass",
    "expand",
    "flatten",
    "load_experiment",
    "parse_experiment",
    "plan_rows",
]
