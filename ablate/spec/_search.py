"""The ``search:`` section: an Optuna search space over axes, instead of (or beside) a grid.

    search:
      metric: val/psnr
      space: {train.optimizer.lr: {type: loguniform, low: 1.0e-5, high: 1.0e-3}}

Each dimension's values are checked like the axis' own values (a search cannot propose what a grid
could not hold); docs/schema.md lists every key.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from ablate.errors import SpecError, closest

from ._axes import DOTTED_AXES
from ._experiment import SCHEDULERS, SEARCH_METRICS, SEARCH_TYPES, SearchParam, SearchSpec
from ._fields import section, unknown_key
from ._types import Component

_DIMENSION_KEYS = ("type", "low", "high", "values")


class AxisValues(Protocol):
    """What the search section needs from the experiment parser: axis names and values, checked."""

    def axis_name(self, key: Any, where: str) -> str: ...

    def value(self, axis: str, raw: Any, where: str) -> Any: ...


def parse_search(raw: Any, grid_axes: set[str], values: AxisValues) -> SearchSpec | None:
    """The validated ``search:`` section (None when absent); SpecError naming the key path."""
    if raw is None:
        return None
    raw = section(raw, "search", SearchSpec)
    metric = raw.get("metric", "val/psnr")
    if metric not in SEARCH_METRICS:
        near = closest(str(metric), SEARCH_METRICS)
        raise SpecError("search.metric", f"a metric reported at every evaluation ({', '.join(SEARCH_METRICS)})",
                        metric, hint=f"did you mean {near!r}?" if near else None)
    mode = raw.get("mode", "min" if metric.endswith("loss") else "max")
    if mode not in ("max", "min"):
        raise SpecError("search.mode", "max or min", mode)
    num = raw.get("num_samples", 10)
    if isinstance(num, bool) or not isinstance(num, int) or num < 1:
        raise SpecError("search.num_samples", "a positive integer", num)
    scheduler = raw.get("scheduler", "none")
    if scheduler not in SCHEDULERS:
        raise SpecError("search.scheduler", f"one of {', '.join(SCHEDULERS)}", scheduler)
    return SearchSpec(metric, mode, num, scheduler, _space(raw.get("space"), grid_axes, values))


def _space(space: Any, grid_axes: set[str], values: AxisValues) -> dict[str, SearchParam]:
    if not isinstance(space, Mapping) or not space:
        raise SpecError("search.space", "a non-empty mapping of axis: {type, low, high | values}", space)
    params: dict[str, SearchParam] = {}
    for key, dim in space.items():
        axis = values.axis_name(key, "search.space")
        if axis in grid_axes:
            raise SpecError(f"search.space.{axis}", "an axis that is not also a grid axis", axis,
                            hint=f"remove grid.{axis} or this search dimension")
        params[axis] = _dimension(values, axis, dim, f"search.space.{axis}")
    return params


def _dimension(values: AxisValues, axis: str, raw: Any, where: str) -> SearchParam:
    if not isinstance(raw, Mapping):
        raise SpecError(where, "a mapping {type: loguniform|uniform|int|choice, low, high | values}", raw)
    for k in raw:
        if k not in _DIMENSION_KEYS:
            raise unknown_key(where, k, _DIMENSION_KEYS, "a key of a search dimension")
    kind = raw.get("type")
    if kind not in SEARCH_TYPES:
        near = closest(str(kind), SEARCH_TYPES)
        raise SpecError(f"{where}.type", f"one of {', '.join(SEARCH_TYPES)}", kind,
                        hint=f"did you mean {near!r}?" if near else None)
    if kind == "choice":
        return _choice(values, axis, raw, where)
    return _range(values, axis, kind, raw, where)


def _choice(values: AxisValues, axis: str, raw: Mapping[str, Any], where: str) -> SearchParam:
    given = raw.get("values")
    if not isinstance(given, list) or not given:
        raise SpecError(f"{where}.values", "a non-empty list of values", given)
    if "low" in raw or "high" in raw:
        raise SpecError(where, "values only (low/high are for numeric types)", dict(raw))
    choices = [_choice_value(values, axis, v, f"{where}.values[{i}]") for i, v in enumerate(given)]
    return SearchParam(axis, "choice", values=tuple(choices))


def _choice_value(values: AxisValues, axis: str, raw: Any, at: str) -> Any:
    value = values.value(axis, raw, at)
    if isinstance(value, Component):
        if value.params:
            raise SpecError(at, "a bare name (Optuna choices are plain values; grid a "
                            "parameterized component instead)", raw)
        value = value.name
    if value is not None and not isinstance(value, (bool, int, float, str)):
        raise SpecError(at, "a plain value: a number, string, true/false or null (Optuna choices)", raw)
    return value


def _range(values: AxisValues, axis: str, kind: str, raw: Mapping[str, Any], where: str) -> SearchParam:
    field_kind = DOTTED_AXES.get(axis)
    if field_kind not in (int, float):
        raise SpecError(f"{where}.type", f"choice for the non-numeric axis {axis!r}", kind)
    if kind != "int" and field_kind is int:
        raise SpecError(f"{where}.type", f"int or choice for the integer field {axis!r}", kind)
    if "values" in raw:
        raise SpecError(f"{where}.values", f"low and high for type {kind} (values are for choice)",
                        raw["values"])
    low, high = (_bound(values, axis, kind, raw, f"{where}.{end}", end) for end in ("low", "high"))
    if kind == "loguniform" and low <= 0:
        raise SpecError(f"{where}.low", "a positive number (loguniform)", low)
    if (kind == "int" and low > high) or (kind != "int" and low >= high):
        raise SpecError(where, "low < high" if kind != "int" else "low ≤ high", f"low={low}, high={high}")
    return SearchParam(axis, kind, low, high)


def _bound(values: AxisValues, axis: str, kind: str, raw: Mapping[str, Any], at: str, end: str) -> Any:
    if end not in raw:
        raise SpecError(at, f"a {end} bound for type {kind}", None)
    value = raw[end]
    if isinstance(value, str):  # YAML 1.1 reads 1e-5 (no dot) as a string
        try:
            value = float(value)
        except ValueError:
            raise SpecError(at, "a number", raw[end]) from None
    if kind == "int" and (isinstance(value, bool) or not isinstance(value, int)):
        raise SpecError(at, "an integer", raw[end])
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SpecError(at, "a number", raw[end])
    return values.value(axis, value, at)  # the field's own range checks
