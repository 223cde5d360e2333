"""Declared, validated parameters: the one way norms, backbones, tasks and datasets declare theirs.

    from ablate.params import Param, check_params
    PARAMS = {"scale": Param(2, int, "SR factor", choices=(2, 3, 4))}
    check_params("task 'sr'", PARAMS, {"scale": 3}, where="task")   # -> {"scale": 3}

A component declares its parameters once; the same declaration validates YAML, fills defaults and
lists the accepted names in error messages, so a typo fails at load time with a did-you-mean.
Tasks and datasets declare ``PARAMS`` (name → :class:`Param`), normalizers ``PARAMS`` too, and
dataclass configs (backbones) declare each field with :func:`param_field`.

Imports nothing from ablate but :mod:`ablate.errors`, so every subpackage can use it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, is_dataclass, replace
from typing import Any

from ablate.errors import SpecError, did_you_mean

_KIND_TEXT = {int: "an integer", float: "a number", str: "a string", bool: "true or false",
              list: "a list of strings", object: "a value"}


@dataclass(frozen=True)
class Param:
    """One accepted parameter: its default, type, a one-line doc and its allowed values.

    ``kind`` is int, float, str, bool, list (of strings) or object (any value: ``rule`` then says
    which fit). ``rule`` is one more test of the converted value, for what bounds and choices cannot
    say (``v > 0``, a list of positive integers); ``expect`` then words the error's expected value.
    """

    default: Any
    kind: type
    doc: str = ""
    choices: tuple[Any, ...] | None = None
    lo: float | None = None  # inclusive bounds for numbers
    hi: float | None = None
    required: bool = False
    nullable: bool = False  # None is accepted (and means "automatic" for the owner)
    rule: Callable[[Any], bool] | None = None
    expect: str | None = None  # what an error says is expected; default: built from the fields above

    def expected(self) -> str:
        if self.expect is not None:
            return self.expect
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
        ok, converted = _convert(self.kind, value)
        if ok and self.choices is not None:
            ok = converted in self.choices
        if ok and ((self.lo is not None and converted < self.lo) or (self.hi is not None and converted > self.hi)):
            ok = False
        if ok and self.rule is not None:
            ok = bool(self.rule(converted))
        if not ok:
            raise SpecError(path, self.expected(), value)  # the value as written, not as converted
        return converted


def _convert(kind: type, value: Any) -> tuple[bool, Any]:
    """(whether ``value`` is a ``kind``, the value converted to it) — YAML's spellings included."""
    if kind is bool:
        return isinstance(value, bool), value
    if kind is int:
        # YAML writes 2.0 for some users; accept integral floats, refuse bools (True == 1)
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        return isinstance(value, int) and not isinstance(value, bool), value
    if kind is float:
        if isinstance(value, str):
            try:
                value = float(value)  # YAML reads "1e-3" (no dot) as a string
            except ValueError:
                return False, value
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return ok, float(value) if ok else value
    if kind is list:
        if isinstance(value, str):
            value = [value]
        ok = isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value)
        return ok, list(value) if ok else value
    return isinstance(value, kind), value


def check_params(owner: str, declared: Mapping[str, Param], given: Mapping[str, Any], where: str, *,
                 defaults: bool = True) -> dict[str, Any]:
    """Validate ``given`` against ``declared``; return every declared parameter (defaults filled in).

    ``owner`` names the component in messages (``"task 'sr'"``); ``where`` is the key path prefix.
    ``defaults=False`` returns only the given parameters (checked and converted), for owners whose
    constructor supplies the rest.
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
        if defaults:
            out[key] = list(param.default) if isinstance(param.default, (list, tuple)) else param.default
    return out


def param_field(default: Any, kind: type, doc: str = "", **rules: Any) -> Any:
    """A dataclass field declared as a :class:`Param`; :func:`field_params` reads the declarations.

        embed_dim: int = param_field(60, int, "token channels C", lo=1)
    """
    return field(default=default, metadata={"param": Param(default, kind, doc, **rules)})


def field_params(config: Any) -> dict[str, Param]:
    """The :class:`Param` of each :func:`param_field` of a dataclass (class or instance).

    For an instance the defaults are its own values: a preset's configuration declares its
    parameters with the preset's values as their defaults.
    """
    if not is_dataclass(config):
        raise TypeError(f"field_params expects a dataclass, got {config!r}")
    out: dict[str, Param] = {}
    for f in fields(config):
        param = f.metadata.get("param")
        if param is not None:
            out[f.name] = param if isinstance(config, type) else replace(param, default=getattr(config, f.name))
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
