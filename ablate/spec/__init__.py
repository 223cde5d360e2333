"""YAML → frozen, typed, validated specs, in one place, before Ray or MLflow is touched.

    from ablate.spec import load_experiment
    spec = load_experiment("experiments/quickstart.yaml")
"""

from __future__ import annotations

from ._load import (
    AXES,
    CORE_AXES,
    SEARCH_METRICS,
    ExperimentSpec,
    ResourceSpec,
    SearchParam,
    SearchSpec,
    TrackingSpec,
    apply_overrides,
    load_experiment,
    parse_experiment,
)
from ._types import (
    CellSpec,
    Component,
    OptimizerSpec,
    ProbeSpec,
    ScheduleSpec,
    TrainSpec,
    build_dataclass,
    flatten,
)

__all__ = [
    "AXES",
    "CORE_AXES",
    "SEARCH_METRICS",
    "CellSpec",
    "Component",
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
    "flatten",
    "load_experiment",
    "parse_experiment",
]
