"""Checking one norm/backbone/task/data value with the subpackage that owns it, located at its key path.

    from ablate.spec import Component
    from ablate.spec._components import check_component
    check_component("task", Component("sr", (("scale", 5),)), "grid.task[0]")
    # SpecError: grid.task[0].scale: expected one of 2, 3, 4, got 5

The spec does not know any component's parameters: ``ablate.norms``, ``ablate.backbones``,
``ablate.tasks`` and ``ablate.data`` declare and check their own, so a typo in a YAML file fails at
load time with the message of the component it belongs to.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ablate.errors import AblateError, RegistryError, SpecError

from ._types import Component

# Axes whose names are exactly registry keys; task names may be aliases (sr-x2) that only
# resolve_task understands, so tasks are not pre-checked against the registry.
_KEYED_AXES = ("norm", "backbone", "data")


def resolver(axis: str) -> Callable[..., Any]:
    """The function that resolves (or validates) a value of ``axis``, called ``fn(config, where=...)``.

    Imported on first use (the CLI imports this package at startup); none of them imports torch, so
    ``ablate validate`` and ``ablate plan`` stay quick.
    """
    if axis == "norm":
        from ablate.norms import check_norm

        return check_norm
    if axis == "backbone":
        from ablate.backbones import validate_backbone

        return validate_backbone
    if axis == "task":
        from ablate.tasks import resolve_task

        return resolve_task
    from ablate.data import resolve_dataset

    return resolve_dataset


def check_registered(axis: str, comp: Component, where: str) -> None:
    """SpecError (with did-you-mean and the valid names) unless ``comp.name`` is a registry key of ``axis``."""
    from ablate.registry import BACKBONES, DATASETS, NORMS

    registry = {"norm": NORMS, "backbone": BACKBONES, "data": DATASETS}[axis]
    if comp.name not in registry:  # a plugin's key is known without importing it (--no-data-check)
        registry.lookup(comp.name, f"{where}.name" if comp.params else where)  # raises, saying why


def check_component(axis: str, comp: Component, where: str) -> None:
    """Resolve one norm/backbone/task/data value with its subpackage; SpecError located at ``where``."""
    if axis in _KEYED_AXES:
        check_registered(axis, comp, where)
    cfg = comp.to_config()
    try:
        resolver(axis)(cfg, where=where)
    except SpecError as err:
        if err.path == "rescale":  # check_norm names the rescale flag without a prefix
            raise SpecError(f"{where}.rescale", err.expected, err.got, hint=err.hint) from None
        raise
    except RegistryError as err:
        raise SpecError(where, f"a registered {axis}", comp.name, hint=str(err)) from None
    except AblateError:
        raise
    except (TypeError, ValueError, KeyError) as err:  # a plugin that does not raise SpecError
        raise SpecError(where, f"valid {axis} parameters", cfg, hint=f"{type(err).__name__}: {err}") from None


def relocate(err: SpecError, where: str, axis: str) -> SpecError:
    """Re-anchor an error a resolver raised under its own key path (``task.scale``) at ``where``."""
    path = err.path or ""
    for head in (axis, "dataset" if axis == "data" else axis):
        if path == head or path.startswith((f"{head}.", f"{head}[")):
            path = path[len(head):]
            break
    else:
        path = f".{path}" if path else ""
    return SpecError(f"{where}{path}", err.expected, err.got, file=err.file, hint=err.hint)
