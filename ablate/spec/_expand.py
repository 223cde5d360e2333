"""Pure grid expansion: an :class:`ExperimentSpec` → the list of cells it names, and plan rows.

    from ablate.report import table
    from ablate.spec import expand, load_experiment, plan_rows
    cells = expand(load_experiment("experiments/quickstart.yaml"))   # grid order, then includes
    print(table(plan_rows(cells)))

No Ray, no MLflow, no model is built: expansion only resolves names, so it is cheap enough to run
on every ``ablate validate`` and testable without a cluster. A cell's identity is ``CellSpec.id``.
The include/exclude semantics are documented in docs/schema.md.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

from ablate.errors import SpecError

from ._axes import CORE_AXES, apply_overrides, dotted_value
from ._components import relocate, resolver
from ._experiment import ExperimentSpec, jsonable
from ._types import CellSpec, Component

PLAN_COLUMNS = ("id", "norm", "rescale", "backbone", "task", "seed")


def expand(spec: ExperimentSpec) -> list[CellSpec]:
    """The cells of ``spec``: grid product minus excludes, then includes; duplicates kept once.

    Deterministic: grid axes in file order (the first axis varies slowest), values in file order,
    then each include entry in order. Pure: resolves names, builds no model, starts nothing.
    Raises :class:`SpecError` (located in ``spec.file``) for invalid combinations, e.g. a norm
    that fixes or refuses ``rescale`` crossed with the other value.
    """
    try:
        return _expand(spec)
    except SpecError as err:
        raise (err.with_context(file=spec.file) if spec.file and not err.file else err) from None


# (key path the cell comes from, axis -> value, grid axes an include entry left free)
_Combo = tuple[str, dict[str, Any], tuple[str, ...]]


def _expand(spec: ExperimentSpec) -> list[CellSpec]:
    combos = _grid_combos(spec)
    for i, entry in enumerate(spec.include):
        given = dict(entry)
        open_axes = [(axis, vals) for axis, vals in spec.grid if axis not in given]
        open_names = tuple(axis for axis, _ in open_axes)
        for values in itertools.product(*(vals for _, vals in open_axes)):
            combos.append((f"include[{i}]", {**dict(zip(open_names, values)), **given}, open_names))
    builder = _Builder(spec)
    cells: list[CellSpec] = []
    seen: set[str] = set()
    for where, combo, free in combos:
        cell = builder.build({**dict(spec.fixed), **combo}, where, free)
        cid = cell.id
        if cid not in seen:
            seen.add(cid)
            cells.append(cell)
    return cells


def _grid_combos(spec: ExperimentSpec) -> list[_Combo]:
    """The grid's cells minus the excluded ones (each exclude entry must drop at least one)."""
    if not spec.grid:
        if spec.exclude:
            raise SpecError("exclude", "a grid to exclude from (exclude filters grid cells only)", None,
                            hint="add a grid or remove exclude")
        return [] if spec.include else [("", {}, ())]  # no grid: the top-level values are the one cell
    combos: list[_Combo] = []
    names = [axis for axis, _ in spec.grid]
    hits = [0] * len(spec.exclude)
    for values in itertools.product(*(vals for _, vals in spec.grid)):
        combo = dict(zip(names, values))
        dropped = False
        for i, entry in enumerate(spec.exclude):
            if all(_matches(axis, want, _effective(spec, combo, axis)) for axis, want in entry):
                hits[i] += 1
                dropped = True
        if not dropped:
            combos.append(("grid", combo, ()))
    for i, n in enumerate(hits):
        if n == 0:
            raise SpecError(f"exclude[{i}]", "an entry that matches at least one grid cell",
                            _show(spec.exclude[i]), hint="check its values against the grid's")
    if not combos and not spec.include:
        raise SpecError("exclude", "to leave at least one grid cell", None, hint="every grid cell is excluded")
    return combos


def _effective(spec: ExperimentSpec, cell: Mapping[str, Any], axis: str) -> Any:
    """A cell's value of ``axis`` as written (grid, else top-level, else base spec), for exclude."""
    if axis in cell:
        return cell[axis]
    fixed = dict(spec.fixed)
    if axis in fixed:
        return fixed[axis]
    if axis == "data":
        return spec.data
    if axis == "seed":
        return 0
    if axis in ("norm", "backbone", "task", "rescale"):
        return None
    return dotted_value(spec.train, spec.probes, axis)


def _matches(axis: str, want: Any, got: Any) -> bool:
    # a bare component name in exclude matches any parameters of that component
    if isinstance(want, Component) and not want.params:
        return isinstance(got, Component) and got.name == want.name
    if isinstance(want, bool) or isinstance(got, bool) or want is None or got is None:
        return want is got
    return bool(want == got)


def _yaml(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, Component):
        return value.label() if not value.params else str(value.to_config()).replace("'", "")
    return str(value)


def _show(entry: Sequence[tuple[str, Any]]) -> str:
    return "{" + ", ".join(f"{axis}: {_yaml(v)}" for axis, v in entry) + "}"


class _Builder:
    """Builds CellSpecs, memoizing the norm × rescale resolution and the dotted overrides."""

    def __init__(self, spec: ExperimentSpec) -> None:
        self.spec = spec
        self._norms: dict[tuple[Component, bool | None], tuple[Component, bool | None]] = {}
        self._overrides: dict[tuple[tuple[str, Any], ...], tuple[Any, Any]] = {}

    def build(self, values: Mapping[str, Any], where: str, free: tuple[str, ...] = ()) -> CellSpec:
        for axis in ("norm", "backbone", "task"):
            if values.get(axis) is None:
                at = f"{where}.{axis}" if where and where != "grid" else axis
                raise SpecError(at, f"a {axis} for every cell: a top-level `{axis}:`, a grid.{axis} axis "
                                f"or one in each include entry", None)
        norm, rescale = self.norm(values["norm"], values.get("rescale"), where, free)
        dotted = tuple(sorted((k, v) for k, v in values.items() if k not in CORE_AXES))
        train, probes = self.overrides(dotted, where)
        return CellSpec(
            norm=norm,
            rescale=rescale,
            backbone=values["backbone"],
            task=values["task"],
            seed=values.get("seed", 0),
            train=train,
            probes=probes,
            data=values.get("data", self.spec.data),
        )

    def norm(self, norm: Component, rescale: bool | None, where: str,
             free: tuple[str, ...] = ()) -> tuple[Component, bool | None]:
        """The canonical (norm, rescale): the norm's own ``rescale`` param moves to the axis, and
        None becomes the flag the norm resolves to, so equivalent spellings give one cell id."""
        key = (norm, rescale)
        if key in self._norms:
            return self._norms[key]
        params = dict(norm.params)
        own = params.pop("rescale", None)
        comp = Component(norm.name, tuple((k, v) for k, v in norm.params if k != "rescale"))
        want = rescale if rescale is not None else own
        try:
            out = (comp, resolver("norm")(comp.to_config(), want, where="norm").rescale)
        except SpecError as err:
            if err.path != "rescale":
                raise relocate(err, where or "norm", "norm") from None
            raise self._combination_error(comp, want, err, where, free) from None
        self._norms[key] = out
        return out

    def _combination_error(self, comp: Component, rescale: bool | None, err: SpecError,
                           where: str, free: tuple[str, ...]) -> SpecError:
        reason = f"rescale must be {err.expected}" + (f"; {err.hint}" if err.hint else "")
        got = f"norm {_yaml(comp)} with rescale {_yaml(rescale)}"
        if where == "grid":
            fix = f"; drop it with exclude: [{{norm: {_yaml(comp)}, rescale: {_yaml(rescale)}}}]"
            return SpecError("grid", "a valid norm × rescale combination", got, hint=reason + fix)
        if "rescale" in free:  # the include entry crosses grid.rescale: the likely fix is to pin it
            reason += "; this include entry does not name rescale, so it ranges over grid.rescale: add " \
                      "`rescale: null` (the norm's own) to it"
            return SpecError(where, "a valid norm × rescale combination", got, hint=reason)
        return SpecError(f"{where}.rescale" if where else "rescale", "a valid norm × rescale combination",
                         got, hint=reason)

    def overrides(self, dotted: tuple[tuple[str, Any], ...], where: str) -> tuple[Any, Any]:
        if dotted not in self._overrides:
            try:
                self._overrides[dotted] = apply_overrides(self.spec.train, self.spec.probes, dotted)
            except SpecError as err:  # each value was checked alone; this is a combination
                raise relocate(err, where or "train", "") from None
        return self._overrides[dotted]


def _label(value: Any) -> Any:
    return value.label() if isinstance(value, Component) else jsonable(value)


def _varying(cells: Sequence[CellSpec]) -> list[str]:
    """Keys beyond PLAN_COLUMNS whose values differ between cells: data, then train./probes. fields."""
    keys: list[str] = []
    if len({c.data for c in cells}) > 1:
        keys.append("data")
    flats = [c.flat_params() for c in cells]
    for key in dict.fromkeys(k for flat in flats for k in flat):  # a cell may lack train.regularizer.*
        if key.startswith(("train.", "probes.")) and len({repr(f.get(key)) for f in flats}) > 1:
            keys.append(key)
    return keys


def _value(cell: CellSpec, key: str) -> Any:
    if key.startswith(("train.", "probes.")):  # dotted_value reads a component's parameters too
        return dotted_value(cell.train, cell.probes, key)
    obj: Any = cell
    for part in key.split("."):
        obj = getattr(obj, part)
    return obj


def plan_rows(cells: Sequence[CellSpec], extra: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """One JSON-able row per cell for tables: id, norm label, rescale, backbone, task, seed, extras.

    ``extra`` names further columns (``data``, ``train.optimizer.lr`` …); None picks the ones whose
    values differ between the cells.
    """
    extra = _varying(cells) if extra is None else list(extra)
    rows = []
    for cell in cells:
        row: dict[str, Any] = {
            "id": cell.id,
            "norm": cell.norm.label(),
            "rescale": cell.rescale,
            "backbone": cell.backbone.label(),
            "task": cell.task.label(),
            "seed": cell.seed,
        }
        for key in extra:
            if key not in row:
                row[key] = _label(_value(cell, key))
        rows.append(row)
    return rows
