"""Declared, validated parameters of tasks and datasets.

    from ablate.tasks._params import Param, check_params
    PARAMS = {"scale": Param(2, int, "SR factor", choices=(2, 3, 4))}
    check_params("task 'sr'", PARAMS, {"scale": 3}, where="task")   # -> {"scale": 3}

A component declares its parameters once; the same declaration validates YAML, fills defaults and
lists the accepted names in error messages, so a typo fails at load time with a did-you-mean.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ablate.errors import SpecError, did_you_mean

_KIND_TEXT = {int: "an integer", float: "a number", str: "a string", bool: "true or false",
              list: "a list of strings"}


@dataclass(frozen=True)
class Param:
    """One accepted parameter: its default, type, a one-line doc and its allowed values."""

    default: Any
    kind: type
    doc: str = ""
    choices: tuple[Any, ...] | None = None
    lo: float | None = None  # inclusive bounds for numbers
    hi: float | None = None
    required: bool = False
    nullable: bool = False  # None is accepted (and means "automatic" for the owner)

    def expected(self) -> str:
        if self.choices is not None:
            return "one of " + ", ".join(map(str, self.choices))
        text = _KIND_TEXT.get(self.kind, self.kind.__name__)
        if self.lo is not None and self.hi is not None:
            text += f" in [{self.lo:g}, {self.hi:g}]"
        elif self.lo is not None:
            text += f" ≥ {self.lo:g}"
        elif self.hi is not None:
            text += f" ≤ {self.hi:g}"
        if self.nullable:
            text += " or null"
        return text

    def check(self, value: Any, path: str) -> Any:
        """The value converted to the declared type; SpecError naming ``path`` when it does not fit."""
        if value is None:
            if self.nullable:
                return None
            raise SpecError(path, self.expected(), value)
        kind = self.kind
        if kind is bool:
            ok = isinstance(value, bool)
        elif kind is int:
            # YAML writes 2.0 for some users; accept integral floats, refuse bools (True == 1)
            if isinstance(value, float) and value.is_integer():
                value = int(value)
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif kind is float:
            if isinstance(value, str):
                try:
                    value = float(value)  # YAML reads "1e-3" (no dot) as a string
                except ValueError:
                    pass
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            if ok:
                value = float(value)
        elif kind is list:
            if isinstance(value, str):
                value = [value]
            ok = isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)
            if ok:
                value = list(value)
        else:
            ok = isinstance(value, kind)
        if not ok:
            raise SpecError(path, self.expected(), value)
        if self.choices is not None and value not in self.choices:
            raise SpecError(path, self.expected(), value)
        if (self.lo is not None and value < self.lo) or (self.hi is not None and value > self.hi):
            raise SpecError(path, self.expected(), value)
        return value


def check_params(owner: str, declared: Mapping[str, Param], given: Mapping[str, Any],
                 where: str) -> dict[str, Any]:
    """Validate ``given`` against ``declared``; return every declared parameter (defaults filled in).

    ``owner`` names the component in messages (``"task 'sr'"``); ``where`` is the key path prefix.
    """
    out: dict[str, Any] = {}
    for key, value in given.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in declared:
            accepted = ", ".join(declared) or "none"
            hint = did_you_mean(str(key), declared).strip(" ()") or None
            raise SpecError(path, f"a parameter of {owner} (accepted: {accepted})", key, hint=hint)
        out[key] = declared[key].check(value, path)
    for key, param in declared.items():
        if key in out:
            continue
        if param.required:
            path = f"{where}.{key}" if where else key
            raise SpecError(path, f"{param.expected()} ({param.doc})" if param.doc else param.expected(),
                            hint=f"{owner} requires it")
        out[key] = list(param.default) if isinstance(param.default, (list, tuple)) else param.default
    return out


def split_spec(spec: Any, where: str, what: str) -> tuple[str, dict[str, Any]]:
    """``"name"``, ``{name: ..., **params}`` or a Component-like object → (name, params)."""
    if isinstance(spec, str):
        if not spec:
            raise SpecError(where, f"a {what} name", spec)
        return spec, {}
    if isinstance(spec, Mapping):
        name = spec.get("name")
        if not isinstance(name, str) or not name:
            raise SpecError(f"{where}.name", f"a {what} name", name)
        return name, {str(k): v for k, v in spec.items() if k != "name"}
    name = getattr(spec, "name", None)
    kwargs = getattr(spec, "kwargs", None)
    if isinstance(name, str) and name and isinstance(kwargs, Mapping):
        return name, dict(kwargs)
    raise SpecError(where, f"a {what} name or a mapping with 'name'", spec)
