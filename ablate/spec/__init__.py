"""YAML → frozen, typed, validated specs, in one place, before Ray or MLflow is touched.

    from ablate.spec import load_experiment
    spec = load_experiment("experiments/quickstart.yaml")
"""

from __future__ import annotations

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
    "CellSpec",
    "Component",
    "OptimizerSpec",
    "ProbeSpec",
    "ScheduleSpec",
    "TrainSpec",
    "build_dataclass",
    "flatten",
]
