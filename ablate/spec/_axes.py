"""The axes a cell varies along: the core ones and every dotted ``train.``/``probes.`` field.

    from ablate.spec import AXES, TrainSpec, ProbeSpec, apply_overrides
    train, probes = apply_overrides(TrainSpec(), ProbeSpec(), [("train.optimizer.lr", 1e-3)])
    assert "train.optimizer.lr" in AXES and train.optimizer.lr == 1e-3
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import fields, is_dataclass
from typing import Any

from ._fields import build_dataclass
from ._types import Component, ProbeSpec, TrainSpec

# Axes every cell has; any dotted train./probes. field is an axis too.
CORE_AXES = ("norm", "rescale", "backbone", "task", "seed", "data")
# Axes whose values are registry components: a name, or a mapping of name and parameters.
COMPONENT_AXES = ("norm", "backbone", "task", "data")


def _field_kinds(cls: Any, prefix: str) -> dict[str, type]:
    """``{"train.steps": int, "train.optimizer": OptimizerSpec, "train.optimizer.lr": float, ...}``.

    A field's type is its default's, or ``metadata["kind"]`` where the default is None (grad_clip). A
    component field's axes are itself and the parameters its ``metadata["axes"]`` names
    (``train.regularizer``, ``train.regularizer.weight``).
    """
    out: dict[str, type] = {}
    inst = cls()
    for f in fields(cls):
        value = getattr(inst, f.name)
        path = f"{prefix}.{f.name}"
        out[path] = f.metadata.get("kind", type(value))
        if isinstance(value, Component):
            out.update({f"{path}.{param}": kind for param, kind in f.metadata.get("axes", {}).items()})
        elif is_dataclass(value):
            out.update(_field_kinds(type(value), path))
    return out


# every dotted axis -> the type of its values
DOTTED_AXES: dict[str, type] = {**_field_kinds(TrainSpec, "train"), **_field_kinds(ProbeSpec, "probes")}
AXES = (*CORE_AXES, *DOTTED_AXES)


def _plain(value: Any) -> Any:
    if isinstance(value, Component):  # kept whole: an override replaces it or sets one of its parameters
        return value
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value)}
    return value


def _child(obj: Any, key: str) -> Any:
    """A field of a spec dataclass, or a parameter of a component (None when it does not set it)."""
    if isinstance(obj, Component):
        return obj.name if key == "name" else obj.kwargs.get(key)
    return getattr(obj, key)


def apply_overrides(train: TrainSpec, probes: ProbeSpec,
                    overrides: Iterable[tuple[str, Any]]) -> tuple[TrainSpec, ProbeSpec]:
    """Apply dotted overrides (``train.optimizer.lr`` → 1e-3) onto base specs, validating the result.

    A mapping value for a sub-spec (``train.optimizer: {name: adamw}``) merges onto the base; shorter
    paths apply first, so ``train.optimizer`` and ``train.optimizer.lr`` compose. A component value
    (``train.regularizer``) replaces the base's whole; a dotted path into it
    (``train.regularizer.weight``) sets that one parameter.
    """
    items = sorted(overrides, key=lambda kv: kv[0].count("."))
    if not items:
        return train, probes
    raw = {"train": _plain(train), "probes": _plain(probes)}
    for path, value in items:
        *parents, leaf = path.split(".")
        node = raw
        for key in parents:
            if isinstance(node[key], Component):
                node[key] = {"name": node[key].name, **node[key].kwargs}
            node = node[key]
        if isinstance(node.get(leaf), dict) and isinstance(value, Mapping):
            node[leaf] = {**node[leaf], **value}
        else:
            node[leaf] = _plain(value)
    return (build_dataclass(TrainSpec, raw["train"], "train"),
            build_dataclass(ProbeSpec, raw["probes"], "probes"))


def dotted_value(train: TrainSpec, probes: ProbeSpec, axis: str) -> Any:
    """The value of the dotted axis ``axis`` (``train.optimizer.lr``) in these specs."""
    obj: Any = train if axis.startswith("train.") else probes
    for key in axis.split(".")[1:]:
        obj = _child(obj, key)
    return obj
