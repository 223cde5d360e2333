"""The ``search:`` section: an Optuna search space over axes, instead of (or beside) a grid.

    search:
      metric: val/psnr
      scheduler: asha                 # rungs at grace_period · reduction_factor^k steps, per variant
      space:
        train.optimizer.lr: {type: loguniform, low: 1.0e-5, high: 1.0e-3}
        norm.groups: {type: int, low: 1, high: 8, when: {norm: group_norm}}   # conditional

Each dimension's values are checked like the axis' own values (a search cannot propose what a grid
could not hold); docs/schema.md lists every key.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any, Protocol

from ablate.errors import SpecError, closest

from ._axes import COMPONENT_AXES, DOTTED_AXES
from ._experiment import SCHEDULERS, SEARCH_METRICS, SEARCH_TYPES, SearchParam, SearchSpec
from ._fields import section, unknown_key
from ._types import Component

_DIMENSION_KEYS = ("type", "low", "high", "values", "when")
_SEARCH_KEYS = ("metric", "mode", "num_samples", "scheduler", "space", "grace_period", "reduction_factor",
                "confirm_seeds")


class AxisValues(Protocol):
    """What the search section needs from the experiment parser: axis names and values, checked."""

    def axis_name(self, key: Any, where: str) -> str: ...

    def value(self, axis: str, raw: Any, where: str) -> Any: ...


def parse_search(raw: Any, grid_axes: set[str], values: AxisValues, seeds: set[int] | None = None
                 ) -> SearchSpec | None:
    """The validated ``search:`` section (None when absent); SpecError naming the key path.
    ``seeds``: the seeds the trials run with, which ``confirm_seeds`` must avoid."""
    if raw is None:
        return None
    raw = section(raw, "search", SearchSpec)
    for k in raw:
        if k not in _SEARCH_KEYS:
            raise unknown_key("search", k, _SEARCH_KEYS, "a key of search")
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
    grace = raw.get("grace_period")
    if grace is not None and (isinstance(grace, bool) or not isinstance(grace, int) or grace < 1):
        raise SpecError("search.grace_period", "a positive integer (training steps) or null (train.eval_every)",
                        grace)
    factor = raw.get("reduction_factor", 2)
    if isinstance(factor, bool) or not isinstance(factor, int) or factor < 2:
        raise SpecError("search.reduction_factor", "an integer ≥ 2", factor)
    confirm = _confirm_seeds(raw["confirm_seeds"], seeds or set()) if "confirm_seeds" in raw else None
    return SearchSpec(metric, mode, num, scheduler, _space(raw.get("space"), grid_axes, values),
                      grace_period=grace, reduction_factor=factor, confirm_seeds=confirm)


def _confirm_seeds(raw: Any, search_seeds: set[int]) -> tuple[int, ...]:
    if not isinstance(raw, list) or not raw or any(isinstance(v, bool) or not isinstance(v, int) or v < 0
                                                   for v in raw):
        raise SpecError("search.confirm_seeds", "a non-empty list of non-negative integers", raw)
    reused = sorted(set(raw) & search_seeds)
    if reused:  # the winner's curse: a config picked on a seed looks better on that seed
        raise SpecError("search.confirm_seeds", f"seeds other than the search's own ({sorted(search_seeds)})", raw,
                        hint=f"drop {reused}")
    return tuple(dict.fromkeys(raw))


def _space(space: Any, grid_axes: set[str], values: AxisValues) -> dict[str, SearchParam]:
    if not isinstance(space, Mapping) or not space:
        raise SpecError("search.space", "a non-empty mapping of axis: {type, low, high | values}", space)
    params: dict[str, SearchParam] = {}
    for key, dim in space.items():
        when = _when(dim, params, grid_axes, values, f"search.space.{key}")
        axis = _param_key(key, when, values) if _is_param_key(key) else values.axis_name(key, "search.space")
        if axis in grid_axes:
            raise SpecError(f"search.space.{axis}", "an axis that is not also a grid axis", axis,
                            hint=f"remove grid.{axis} or this search dimension")
        params[axis] = replace(_dimension(values, axis, dim, f"search.space.{axis}", when), when=when)
    return params


def _is_param_key(key: Any) -> bool:
    """``norm.groups``: a parameter of a component axis (searched under a ``when`` naming the component)."""
    return isinstance(key, str) and key.split(".")[0] in COMPONENT_AXES and key.count(".") == 1


def _param_key(key: str, when: tuple[tuple[str, Any], ...], values: AxisValues) -> str:
    axis = key.split(".")[0]
    if axis not in dict(when):
        raise SpecError(f"search.space.{key}.when", f"a condition on {axis} naming the component whose "
                        f"parameter this is (when: {{{axis}: <name>}})", None)
    return key


def _when(raw: Any, earlier: Mapping[str, SearchParam], grid_axes: set[str], values: AxisValues, where: str
          ) -> tuple[tuple[str, Any], ...]:
    """A dimension's condition: axis -> value pairs over grid axes or earlier choice dimensions."""
    cond = raw.get("when") if isinstance(raw, Mapping) else None
    if cond is None:
        return ()
    if not isinstance(cond, Mapping) or not cond:
        raise SpecError(f"{where}.when", "a mapping axis: value (a grid axis or an earlier choice dimension)", cond)
    out = []
    for axis, value in cond.items():
        if axis in earlier and earlier[axis].type == "choice":
            if value not in earlier[axis].values:
                raise SpecError(f"{where}.when.{axis}", f"one of the dimension's values {list(earlier[axis].values)}",
                                value)
            out.append((str(axis), value))
            continue
        if axis not in grid_axes:
            raise SpecError(f"{where}.when", "a grid axis or an earlier choice dimension of search.space", axis)
        checked = values.value(str(axis), value, f"{where}.when.{axis}")
        out.append((str(axis), checked.name if isinstance(checked, Component) else checked))
    return tuple(out)


def _dimension(values: AxisValues, axis: str, raw: Any, where: str, when: tuple[tuple[str, Any], ...] = ()
               ) -> SearchParam:
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
    if _is_param_key(axis):
        return _component_param(values, axis, kind, raw, where, dict(when))
    if kind == "choice":
        return _choice(values, axis, raw, where)
    return _range(values, axis, kind, raw, where)


def _component_param(values: AxisValues, key: str, kind: str, raw: Mapping[str, Any], where: str,
                     when: dict[str, Any]) -> SearchParam:
    """A component's parameter (``norm.groups`` when norm is group_norm): each value is checked by the
    component's own declaration of the parameter."""
    axis, param = key.split(".")
    name = when[axis]

    def check(value: Any, at: str) -> Any:
        comp = values.value(axis, {"name": name, param: value}, at)
        return dict(comp.params)[param] if isinstance(comp, Component) else value

    if kind == "choice":
        given = raw.get("values")
        if not isinstance(given, list) or not given:
            raise SpecError(f"{where}.values", "a non-empty list of values", given)
        return SearchParam(key, kind, values=tuple(check(v, f"{where}.values[{i}]") for i, v in enumerate(given)))
    low, high = (check(_number(kind, raw, f"{where}.{end}", end), f"{where}.{end}") for end in ("low", "high"))
    if kind == "loguniform" and low <= 0:
        raise SpecError(f"{where}.low", "a positive number (loguniform)", low)
    if (kind == "int" and low > high) or (kind != "int" and low >= high):
        raise SpecError(where, "low < high" if kind != "int" else "low ≤ high", f"low={low}, high={high}")
    return SearchParam(key, kind, low, high)


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
    return values.value(axis, _number(kind, raw, at, end), at)  # the field's own range checks


def _number(kind: str, raw: Mapping[str, Any], at: str, end: str) -> Any:
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
    return value
