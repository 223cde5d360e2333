"""Spec dataclasses from YAML mappings: keys, types and the rules each field declares in its metadata.

    from dataclasses import dataclass, field
    from ablate.spec import build_dataclass

    @dataclass(frozen=True)
    class Probe:
        every: int = field(default=50, metadata={"non_negative": True})

    build_dataclass(Probe, {"every": -1}, "probes")   # SpecError: probes.every: expected a number ≥ 0, got -1

A field's type is its default's type (``metadata["kind"]`` when the default is None). Rules, read from
``field(metadata=...)``, checked in this order over all fields, then the ``check`` rules:

- ``choices``: the allowed values;
- ``positive``: the value must be > 0; ``non_negative``: ≥ 0;
- ``nullable``: None is accepted;
- ``parse``: ``fn(value, path)`` reads the value instead (a registry component: ``train.regularizer``);
- ``check``: ``(predicate, expected)`` for anything else (``device``: auto, cpu, cuda or cuda:N).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import Field, fields
from typing import Any

from ablate.errors import SpecError, closest, did_you_mean


def build_dataclass(cls: Any, raw: Any, where: str) -> Any:
    """Build a (nested) spec dataclass from a mapping, checking keys and types; SpecError on error."""
    if isinstance(raw, cls):
        return raw
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise SpecError(where, f"a mapping of {cls.__name__} fields", raw)
    known = {f.name: f for f in fields(cls)}
    kwargs: dict[str, Any] = {}
    defaults = cls()
    for key, value in raw.items():
        if key not in known:
            raise SpecError(f"{where}.{key}", f"one of {', '.join(known)}", key,
                            hint=did_you_mean(str(key), known).strip(" ()") or None)
        default = getattr(defaults, key)
        path = f"{where}.{key}"
        if "parse" in known[key].metadata:  # a value with its own reader (a registry component)
            kwargs[key] = known[key].metadata["parse"](value, path)
        elif hasattr(default, "__dataclass_fields__"):
            kwargs[key] = build_dataclass(type(default), value, path)
        else:
            kwargs[key] = _coerce(value, known[key], default, path)
    obj = cls(**kwargs)
    _validate(obj, where)
    return obj


def _coerce(value: Any, f: Field[Any], default: Any, path: str) -> Any:
    if value is None and f.metadata.get("nullable"):
        return None
    kind = f.metadata.get("kind", type(default))
    if kind is bool:
        if not isinstance(value, bool):
            raise SpecError(path, "true or false", value)
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise SpecError(path, "an integer", value)
        return value
    if kind is float:
        if isinstance(value, str):
            try:
                value = float(value)  # YAML reads "2e-4" (no dot) as a string
            except ValueError:
                raise SpecError(path, "a number", value) from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SpecError(path, "a number", value)
        return float(value)
    if kind is str:
        if not isinstance(value, str):
            raise SpecError(path, "a string", value)
        return value
    if kind is tuple:
        if not isinstance(value, (list, tuple)) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            raise SpecError(path, "a list of numbers", value)
        return tuple(float(v) for v in value)
    return value


def _validate(obj: Any, where: str) -> None:
    """The metadata rules of every field, then the ``check`` rules (cross-value ones come last)."""
    values = [(f, getattr(obj, f.name), f"{where}.{f.name}") for f in fields(obj)]
    for f, value, path in values:
        rules = f.metadata
        if "choices" in rules and value not in rules["choices"]:
            raise SpecError(path, f"one of {', '.join(rules['choices'])}", value)
        if rules.get("positive") and not value > 0:
            raise SpecError(path, "a positive number", value)
        if rules.get("non_negative") and value < 0:
            raise SpecError(path, "a number ≥ 0", value)
    for f, value, path in values:
        if "check" in f.metadata:
            ok, expected = f.metadata["check"]
            if not ok(value):
                raise SpecError(path, expected, list(value) if isinstance(value, tuple) else value)


def unknown_key(where: str, key: Any, valid: Iterable[str], what: str) -> SpecError:
    """The error for a key that is not one of ``valid``, with the closest one as a hint."""
    valid = list(valid)
    near = closest(str(key), valid)
    path = f"{where}.{key}" if where else str(key)
    return SpecError(path, f"{what} ({', '.join(valid)})", key,
                     hint=f"did you mean {near!r}?" if near else None)


def section(raw: Any, key: str, cls: Any) -> Mapping[str, Any]:
    """The mapping of a top-level section whose keys are the fields of ``cls`` ({} when absent)."""
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise SpecError(key, "a mapping", raw)
    names = [f.name for f in fields(cls)]
    for k in raw:
        if k not in names:
            raise unknown_key(key, k, names, f"a key of {key}")
    return raw
