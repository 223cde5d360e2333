"""YAML experiment files → a frozen, validated :class:`ExperimentSpec`, checked up front.

    from ablate.spec import load_experiment
    spec = load_experiment("experiments/quickstart.yaml")
    print(spec.name, spec.hash, [axis for axis, _ in spec.grid])

The schema (every key but ``name`` is optional)::

    name: quickstart            # the MLflow experiment
    description: token LN vs global LN, with and without rescale
    grid:                                # axes crossed in file order, values in file order
      norm: [token_ln, global_ln, {name: group_norm, groups: 4}]
      rescale: [false, true]
      backbone: [swinir-tiny]
      task: [sr-x2]
      seed: [0, 1]
      train.optimizer.lr: [2.0e-4, 1.0e-3]   # any dotted train./probes. field is an axis too
    exclude:                             # drop grid cells that match every key given
      - {norm: group_norm, rescale: true}
    include:                             # add cells; axes not named range over the grid's values
      - {norm: i_ln, rescale: null}
    norm: token_ln                       # top-level norm/rescale/backbone/task/seed/data: fixed values
    train: {steps: 300, optimizer: {name: adam, lr: 2.0e-4}}
    probes: {every: 50}
    data: {name: skimage}
    resources: {cpus_per_trial: 1, gpus_per_trial: 0, max_concurrent: 4}
    tracking: {uri: sqlite:///mlruns.db}
    search:                              # optional: Optuna over a space instead of a grid
      metric: val/psnr
      mode: max
      num_samples: 20
      scheduler: asha
      space: {train.optimizer.lr: {type: loguniform, low: 1.0e-5, high: 1.0e-3}}

Semantics (close to GitHub Actions' matrix include/exclude):

- The grid's cells are the cross product of its axes. A file without a ``grid`` is one cell made of
  the top-level values; a file with ``include`` but no ``grid`` is exactly its included cells.
- ``exclude`` entries match grid cells (never included ones): a cell is dropped when every key of
  an entry matches. A bare component name (``norm: group_norm``) matches any parameters of that
  component; a mapping must match exactly. An entry that matches no cell is an error (a typo).
- ``include`` entries are partial cells added after the grid: the axes an entry names take its
  values, every grid axis it does not name ranges over that axis' values — so
  ``{norm: i_ln, rescale: null}`` adds i_ln on every backbone × task × seed of the grid, and an
  entry that names every grid axis adds exactly one cell.
- Axes a cell still lacks take the top-level value, else the default (``seed: 0``, ``rescale``:
  the norm's own, ``data: skimage``); ``norm``, ``backbone`` and ``task`` have no default.
- ``rescale: null`` means the norm's own default; cells store the resolved flag, so
  ``token_ln`` and ``{norm: token_ln, rescale: false}`` are the same cell (same id).
- Cells that come out equal (same id) are kept once, at their first position.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

import yaml

from ablate.errors import AblateError, DataError, RegistryError, SpecError, closest

from ._types import Component, ProbeSpec, TrainSpec, build_dataclass

TOP_LEVEL_KEYS = ("name", "description", "grid", "include", "exclude", "norm", "rescale", "backbone",
                  "task", "seed", "data", "train", "probes", "resources", "tracking", "search")
# Axes every cell has; any dotted train./probes. field is an axis too.
CORE_AXES = ("norm", "rescale", "backbone", "task", "seed", "data")
COMPONENT_AXES = ("norm", "backbone", "task", "data")
REQUIRED_AXES = ("norm", "backbone", "task")
# Metrics a trial reports at every evaluation, hence the ones a search (and ASHA) can steer by.
SEARCH_METRICS = ("val/psnr", "val/ssim", "train/loss")
SEARCH_TYPES = ("loguniform", "uniform", "int", "choice")
SCHEDULERS = ("asha", "none")
# data parameters that name folders; made absolute against the YAML file's directory
DATA_PATH_KEYS = ("path", "val_path", "lq", "gt", "val_lq", "val_gt", "prepared")

Cell = dict[str, Any]  # axis -> normalized value


# --------------------------------------------------------------------------------------------
# the typed spec
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ResourceSpec:
    """What each trial asks the Ray scheduler for; not part of any cell's identity."""

    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    max_concurrent: int | None = None  # None: as many trials as the resources allow
    max_retries: int = 3  # times a cell whose worker died is retried from its last checkpoint


@dataclass(frozen=True)
class TrackingSpec:
    uri: str | None = None  # None: the embedded SQLite store (or MLFLOW_TRACKING_URI)


@dataclass(frozen=True)
class SearchParam:
    """One dimension of an Optuna search space: ``train.optimizer.lr: {type: loguniform, ...}``."""

    key: str  # an axis name: a dotted train./probes. field or a core axis (choice only)
    type: str  # loguniform | uniform | int | choice
    low: float | int | None = None
    high: float | int | None = None
    values: tuple[Any, ...] = ()  # choice: plain values (Optuna's categorical choices must be scalars)


@dataclass(frozen=True)
class SearchSpec:
    metric: str = "val/psnr"
    mode: str = "max"  # max | min
    num_samples: int = 10
    scheduler: str = "none"  # asha | none
    # axis -> dimension, in file order; a plain dict (ablate.tune iterates it), so not in the hash
    space: dict[str, SearchParam] = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class ExperimentSpec:
    """A validated experiment: the axes and base configs; :func:`ablate.sweep.expand` makes the cells.

    Axis values are normalized: components are :class:`Component`, dotted axes hold the coerced
    field value (``float`` for ``train.optimizer.lr``, a sub-spec for ``train.optimizer``).
    """

    name: str
    description: str = ""
    grid: tuple[tuple[str, tuple[Any, ...]], ...] = ()  # (axis, values) in file order
    fixed: tuple[tuple[str, Any], ...] = ()  # top-level norm/rescale/backbone/task/seed
    include: tuple[tuple[tuple[str, Any], ...], ...] = ()
    exclude: tuple[tuple[tuple[str, Any], ...], ...] = ()
    train: TrainSpec = field(default_factory=TrainSpec)
    probes: ProbeSpec = field(default_factory=ProbeSpec)
    data: Component = field(default_factory=lambda: Component("skimage"))
    resources: ResourceSpec = field(default_factory=ResourceSpec)
    tracking: TrackingSpec = field(default_factory=TrackingSpec)
    search: SearchSpec | None = None
    file: str | None = field(default=None, compare=False)
    source_text: str = field(default="", compare=False, repr=False)

    @property
    def axes(self) -> tuple[str, ...]:
        """Every axis the file varies or pins per cell: grid axes, then include/exclude-only ones."""
        names = [axis for axis, _ in self.grid]
        for entry in (*self.include, *self.exclude):
            names += [axis for axis, _ in entry if axis not in names]
        return tuple(names)

    def to_config(self) -> dict[str, Any]:
        """The canonical, JSON-able spec (what :attr:`hash` hashes; file and text excluded)."""
        return {
            "name": self.name,
            "description": self.description,
            "grid": {axis: [_jsonable(v) for v in values] for axis, values in self.grid},
            "fixed": {axis: _jsonable(v) for axis, v in self.fixed},
            "include": [{axis: _jsonable(v) for axis, v in entry} for entry in self.include],
            "exclude": [{axis: _jsonable(v) for axis, v in entry} for entry in self.exclude],
            "train": _jsonable(self.train),
            "probes": _jsonable(self.probes),
            "data": _jsonable(self.data),
            "resources": _jsonable(self.resources),
            "tracking": _jsonable(self.tracking),
            "search": _jsonable(self.search),
        }

    @property
    def hash(self) -> str:
        """Short hash of the canonical resolved spec (insensitive to key order and formatting)."""
        blob = json.dumps(self.to_config(), sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha1(blob.encode()).hexdigest()[:10]


def _jsonable(value: Any) -> Any:
    if isinstance(value, Component):
        return value.to_config()
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


# --------------------------------------------------------------------------------------------
# loading
# --------------------------------------------------------------------------------------------
class _Loader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys: two ``train:`` blocks would silently keep the last."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base` may repeat keys on purpose
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
            except TypeError:  # unhashable key: the base class reports it
                continue
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _yaml_error(err: yaml.YAMLError, file: str) -> SpecError:
    mark = getattr(err, "problem_mark", None)
    problem = " ".join(str(getattr(err, "problem", None) or err).split())
    context = getattr(err, "context", None)
    context_mark = getattr(err, "context_mark", None)
    if context:
        extra = f" that starts at line {context_mark.line + 1}" if context_mark is not None else ""
        problem += f" ({' '.join(str(context).split())}{extra})"
    where = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return SpecError(where, "valid YAML", None, file=file, hint=problem)


def load_experiment(path: str | os.PathLike[str], *, check_data: bool = True) -> ExperimentSpec:
    """Read, parse and validate an experiment YAML file; :class:`SpecError` on any problem.

    ``check_data=False`` checks only the dataset's name, not its folders: a spec written for a
    cluster's storage can be validated on a laptop.
    """
    file = os.fspath(path)
    p = Path(file)
    if not p.is_file():
        if p.is_dir():
            raise SpecError("", "a YAML experiment file, not a directory", None, file=file)
        near = None
        if p.parent.is_dir():
            near = closest(p.name, [c.name for c in p.parent.iterdir() if c.suffix in (".yaml", ".yml")])
        hint = f"did you mean {str(p.parent / near)!r}?" if near else None
        raise SpecError("", "an existing YAML experiment file", None, file=file, hint=hint or "no such file")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise SpecError("", "a readable UTF-8 text file", None, file=file, hint=str(err)) from None
    try:
        raw = yaml.load(text, Loader=_Loader)  # noqa: S506  (_Loader is a SafeLoader)
    except yaml.YAMLError as err:
        raise _yaml_error(err, file) from None
    return parse_experiment(raw, file=file, source_text=text, check_data=check_data)


def parse_experiment(mapping: Any, *, file: str | None = None, source_text: str | None = None,
                     check_data: bool = True) -> ExperimentSpec:
    """Validate a parsed YAML mapping into an :class:`ExperimentSpec` (and expand it once, as a check).

    Every registry name and parameter is resolved here, so a typo fails now, not in a trial.
    """
    try:
        spec = _Parser(file, check_data).parse(mapping, source_text)
        from ablate.sweep import expand  # sweep imports spec: import here, not at module level

        expand(spec)  # norm × rescale combinations, exclude matches, dotted overrides per cell
    except SpecError as err:
        raise (err.with_context(file=file) if file and not err.file else err) from None
    except DataError as err:  # e.g. a data folder that does not exist: say which file asked for it
        raise (DataError(f"{file}: {err}") if file and not str(err).startswith(f"{file}:") else err) from None
    return spec


# --------------------------------------------------------------------------------------------
# component checks (the norms/backbones/tasks/data subpackages own their parameters)
# --------------------------------------------------------------------------------------------
_CHECKERS: dict[str, tuple[str, str, str]] = {
    # axis: (module, function, registry attribute in ablate.registry)
    "norm": ("ablate.norms", "resolve_norm", "NORMS"),
    "backbone": ("ablate.backbones", "validate_backbone", "BACKBONES"),
    "task": ("ablate.tasks", "resolve_task", "TASKS"),
    "data": ("ablate.data", "resolve_dataset", "DATASETS"),
}
# Axes whose names are exactly registry keys; task names may be aliases (sr-x2) that only
# resolve_task understands, so tasks are not pre-checked against the registry.
_KEYED_AXES = ("norm", "backbone", "data")


def _checker(axis: str) -> Callable[..., Any] | None:
    """The resolver for ``axis``, imported lazily (the CLI imports this module at startup).

    None when that core subpackage is absent from this tree (a partial checkout): its names are
    then checked when a trial builds the component instead of here.
    """
    module, func, _ = _CHECKERS[axis]
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as err:
        if err.name == module:
            return None
        raise
    fn = getattr(mod, func, None)
    return fn if callable(fn) else None


def _registry_keys(axis: str) -> list[str] | None:
    from ablate import registry

    try:
        return list(getattr(registry, _CHECKERS[axis][2]).keys())
    except ModuleNotFoundError:  # the built-ins' subpackage is absent (see _checker)
        return None


def _relocate(err: SpecError, where: str, axis: str) -> SpecError:
    """Re-anchor an error a resolver raised under its own key path (``task.scale``) at ``where``."""
    path = err.path or ""
    for head in (axis, "dataset" if axis == "data" else axis):
        if path == head or path.startswith((f"{head}.", f"{head}[")):
            path = path[len(head):]
            break
    else:
        path = f".{path}" if path else ""
    return SpecError(f"{where}{path}", err.expected, err.got, file=err.file, hint=err.hint)


def check_component(axis: str, comp: Component, where: str) -> None:
    """Resolve one norm/backbone/task/data value with its subpackage; SpecError located at ``where``."""
    fn = _checker(axis)
    if fn is None:
        return
    if axis in _KEYED_AXES:
        keys = _registry_keys(axis)
        if keys is not None and comp.name not in keys:
            at = f"{where}.name" if comp.params else where
            near = closest(comp.name, keys)
            hint = (f"did you mean {near!r}? " if near else "") + f"valid: {', '.join(keys)}"
            raise SpecError(at, f"a registered {axis}", comp.name, hint=hint)
    cfg = comp.to_config()
    kwargs: dict[str, Any] = {}
    try:
        if "where" in inspect.signature(fn).parameters:
            kwargs["where"] = where
    except (TypeError, ValueError):
        pass
    try:
        fn(cfg, **kwargs)
    except SpecError as err:
        if err.path == "rescale":  # resolve_norm names the rescale flag without a prefix
            raise SpecError(f"{where}.rescale", err.expected, err.got, hint=err.hint) from None
        raise (err if "where" in kwargs else _relocate(err, where, axis)) from None
    except RegistryError as err:
        raise SpecError(where, f"a registered {axis}", comp.name, hint=str(err)) from None
    except AblateError:
        raise
    except (TypeError, ValueError, KeyError) as err:  # a plugin that does not raise SpecError
        raise SpecError(where, f"valid {axis} parameters", cfg, hint=f"{type(err).__name__}: {err}") from None


# --------------------------------------------------------------------------------------------
# dotted train./probes. axes
# --------------------------------------------------------------------------------------------
def _field_paths(cls: Any, prefix: str) -> dict[str, Any]:
    """``{"train.steps": 300, "train.optimizer": OptimizerSpec(), "train.optimizer.lr": 2e-4, ...}``."""
    out: dict[str, Any] = {}
    inst = cls()
    for f in fields(cls):
        value = getattr(inst, f.name)
        out[f"{prefix}.{f.name}"] = value
        if is_dataclass(value):
            out.update(_field_paths(type(value), f"{prefix}.{f.name}"))
    return out


DOTTED_AXES: dict[str, Any] = {**_field_paths(TrainSpec, "train"), **_field_paths(ProbeSpec, "probes")}
AXES = (*CORE_AXES, *DOTTED_AXES)


def _plain(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return {k: _plain(v) for k, v in asdict(value).items()}
    return value


def apply_overrides(train: TrainSpec, probes: ProbeSpec,
                    overrides: Iterable[tuple[str, Any]]) -> tuple[TrainSpec, ProbeSpec]:
    """Apply dotted overrides (``train.optimizer.lr`` → 1e-3) onto base specs, validating the result.

    A mapping value for a sub-spec (``train.optimizer: {name: adamw}``) merges onto the base; shorter
    paths apply first, so ``train.optimizer`` and ``train.optimizer.lr`` compose.
    """
    items = sorted(overrides, key=lambda kv: kv[0].count("."))
    if not items:
        return train, probes
    raw = {"train": _plain(train), "probes": _plain(probes)}
    for path, value in items:
        *parents, leaf = path.split(".")
        node = raw
        for key in parents:
            node = node[key]
        if isinstance(node.get(leaf), dict) and isinstance(value, Mapping):
            node[leaf] = {**node[leaf], **value}
        else:
            node[leaf] = _plain(value)
    return (build_dataclass(TrainSpec, raw["train"], "train"),
            build_dataclass(ProbeSpec, raw["probes"], "probes"))


def _get(obj: Any, dotted: str) -> Any:
    for key in dotted.split("."):
        obj = getattr(obj, key)
    return obj


# --------------------------------------------------------------------------------------------
# the parser
# --------------------------------------------------------------------------------------------
def _unknown_key(where: str, key: Any, valid: Iterable[str], what: str) -> SpecError:
    valid = list(valid)
    near = closest(str(key), valid)
    path = f"{where}.{key}" if where else str(key)
    return SpecError(path, f"{what} ({', '.join(valid)})", key,
                     hint=f"did you mean {near!r}?" if near else None)


class _Parser:
    def __init__(self, file: str | None, check_data: bool = True) -> None:
        self.file = file
        self.check_data = check_data
        self.train = TrainSpec()
        self.probes = ProbeSpec()
        self._checked: dict[tuple[str, Component], None] = {}

    # values ---------------------------------------------------------------------------------
    def axis_name(self, key: Any, where: str) -> str:
        if not isinstance(key, str) or key not in AXES:
            near = closest(str(key), AXES)
            hint = f"did you mean {near!r}?" if near else "a dotted train./probes. field such as train.steps"
            path = f"{where}.{key}" if where else str(key)
            raise SpecError(path, f"an axis ({', '.join(CORE_AXES)} or a dotted train./probes. field)", key,
                            hint=hint)
        return key

    def value(self, axis: str, raw: Any, where: str) -> Any:
        """Validate and normalize one value of ``axis`` found at key path ``where``."""
        if axis in COMPONENT_AXES:
            comp = Component.parse(raw, where)
            if axis == "data":
                comp = self.absolute_paths(comp)
            if axis == "data" and not self.check_data:
                keys = _registry_keys("data")
                if keys is not None and comp.name not in keys:
                    near = closest(comp.name, keys)
                    raise SpecError(f"{where}.name" if comp.params else where, "a registered data", comp.name,
                                    hint=(f"did you mean {near!r}? " if near else "") + f"valid: {', '.join(keys)}")
                return comp
            if (axis, comp) not in self._checked:
                check_component(axis, comp, where)
                self._checked[(axis, comp)] = None
            return comp
        if axis == "rescale":
            if raw is not None and not isinstance(raw, bool):
                raise SpecError(where, "true, false or null (the norm's own default)", raw)
            return raw
        if axis == "seed":
            if isinstance(raw, bool) or not isinstance(raw, int) or raw < 0:
                raise SpecError(where, "a non-negative integer", raw)
            return raw
        try:
            train, probes = apply_overrides(self.train, self.probes, [(axis, raw)])
        except SpecError as err:
            raise _relocate(err, where, axis) from None
        return _get(train if axis.startswith("train.") else probes, axis.split(".", 1)[1])

    def absolute_paths(self, comp: Component) -> Component:
        """Data folders are relative to the YAML file (Ray workers run in another directory)."""
        base = Path(self.file).resolve().parent if self.file else Path.cwd()
        params = []
        for key, value in comp.params:
            if key in DATA_PATH_KEYS and isinstance(value, str) and value:
                path = Path(os.path.expanduser(value))
                value = str(path if path.is_absolute() else (base / path).resolve())
            params.append((key, value))
        return Component(comp.name, tuple(params))

    def entries(self, raw: Any, key: str) -> tuple[tuple[tuple[str, Any], ...], ...]:
        if raw is None:
            return ()
        if not isinstance(raw, list):
            raise SpecError(key, "a list of mappings (axis: value)", raw)
        out = []
        for i, entry in enumerate(raw):
            where = f"{key}[{i}]"
            if not isinstance(entry, Mapping) or not entry:
                raise SpecError(where, "a non-empty mapping of axis: value", entry)
            items = []
            for axis, value in entry.items():
                axis = self.axis_name(axis, where)
                if isinstance(value, list) and axis in (*CORE_AXES,):
                    raise SpecError(f"{where}.{axis}", "a single value (one entry per cell)", value)
                items.append((axis, self.value(axis, value, f"{where}.{axis}")))
            out.append(tuple(sorted(items, key=lambda kv: AXES.index(kv[0]))))  # key order is no meaning
        return tuple(out)

    # sections -------------------------------------------------------------------------------
    def parse(self, raw: Any, source_text: str | None) -> ExperimentSpec:
        if raw is None:
            raise SpecError("", "a mapping with at least `name:` (the file is empty)", None)
        if not isinstance(raw, Mapping):
            raise SpecError("", "a mapping of experiment keys (name, grid, train, ...) at the top level",
                            type(raw).__name__)
        for key in raw:
            if key not in TOP_LEVEL_KEYS:
                raise _unknown_key("", key, TOP_LEVEL_KEYS, "a top-level key")
        name = raw.get("name")
        if not isinstance(name, str) or not name.strip():
            raise SpecError("name", "a non-empty string (the MLflow experiment name)", name)
        description = raw.get("description") or ""
        if not isinstance(description, str):
            raise SpecError("description", "a string", description)

        # base train/probes first: dotted axis values are validated against them
        self.train = build_dataclass(TrainSpec, raw.get("train"), "train")
        self.probes = build_dataclass(ProbeSpec, raw.get("probes"), "probes")
        data = self.value("data", raw["data"], "data") if raw.get("data") is not None else Component("skimage")

        grid = self.grid(raw.get("grid"))
        grid_axes = {axis for axis, _ in grid}
        fixed = []
        for axis in ("norm", "rescale", "backbone", "task", "seed"):
            if axis not in raw:
                continue
            if axis in grid_axes:
                raise SpecError(axis, f"one place for {axis!r}: a fixed top-level value or a grid axis",
                                raw[axis], hint=f"remove it or grid.{axis}")
            if isinstance(raw[axis], list):
                raise SpecError(axis, "a single value", raw[axis],
                                hint=f"list several under grid: {{{axis}: [...]}}")
            if raw[axis] is None and axis != "rescale":
                raise SpecError(axis, f"a {axis}", None)
            fixed.append((axis, self.value(axis, raw[axis], axis)))
        if "data" in grid_axes and raw.get("data") is not None:
            raise SpecError("data", "one place for 'data': a fixed top-level value or a grid axis",
                            raw["data"], hint="remove it or grid.data")

        return ExperimentSpec(
            name=name,
            description=description,
            grid=grid,
            fixed=tuple(fixed),
            include=self.entries(raw.get("include"), "include"),
            exclude=self.entries(raw.get("exclude"), "exclude"),
            train=self.train,
            probes=self.probes,
            data=data,
            resources=self.resources(raw.get("resources")),
            tracking=self.tracking(raw.get("tracking")),
            search=self.search(raw.get("search"), grid_axes),
            file=self.file,
            source_text=source_text if source_text is not None else yaml.safe_dump(dict(raw), sort_keys=False),
        )

    def grid(self, raw: Any) -> tuple[tuple[str, tuple[Any, ...]], ...]:
        if raw is None:
            return ()
        if not isinstance(raw, Mapping):
            raise SpecError("grid", "a mapping of axis: [values]", raw)
        out = []
        for axis, values in raw.items():
            axis = self.axis_name(axis, "grid")
            where = f"grid.{axis}"
            if not isinstance(values, list):
                raise SpecError(where, "a list of values", values, hint=f"write [{values}] for one value"
                                if isinstance(values, (str, int, float)) else None)
            if not values:
                raise SpecError(where, "a non-empty list of values", values,
                                hint="an empty axis would make an empty grid; remove the axis instead")
            normalized: list[Any] = []
            for i, value in enumerate(values):
                v = self.value(axis, value, f"{where}[{i}]")
                if v not in normalized:  # a repeated value would only repeat cells
                    normalized.append(v)
            out.append((axis, tuple(normalized)))
        return tuple(out)

    def resources(self, raw: Any) -> ResourceSpec:
        raw = self._section(raw, "resources", ResourceSpec)
        cpus = raw.get("cpus_per_trial", 1.0)
        gpus = raw.get("gpus_per_trial", 0.0)
        conc = raw.get("max_concurrent")
        retries = raw.get("max_retries", 3)
        if isinstance(cpus, bool) or not isinstance(cpus, (int, float)) or cpus <= 0:
            raise SpecError("resources.cpus_per_trial", "a positive number", cpus)
        if isinstance(gpus, bool) or not isinstance(gpus, (int, float)) or gpus < 0:
            raise SpecError("resources.gpus_per_trial", "a number ≥ 0 (fractions share a GPU)", gpus)
        if conc is not None and (isinstance(conc, bool) or not isinstance(conc, int) or conc < 1):
            raise SpecError("resources.max_concurrent", "a positive integer or null", conc)
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise SpecError("resources.max_retries", "an integer ≥ 0", retries)
        return ResourceSpec(float(cpus), float(gpus), conc, retries)

    def tracking(self, raw: Any) -> TrackingSpec:
        raw = self._section(raw, "tracking", TrackingSpec)
        uri = raw.get("uri")
        if uri is not None and (not isinstance(uri, str) or not uri):
            raise SpecError("tracking.uri", "a tracking URI string (sqlite:///..., http://...)", uri)
        return TrackingSpec(uri)

    def _section(self, raw: Any, key: str, cls: Any) -> Mapping[str, Any]:
        if raw is None:
            return {}
        if not isinstance(raw, Mapping):
            raise SpecError(key, "a mapping", raw)
        names = [f.name for f in fields(cls)]
        for k in raw:
            if k not in names:
                raise _unknown_key(key, k, names, f"a key of {key}")
        return raw

    def search(self, raw: Any, grid_axes: set[str]) -> SearchSpec | None:
        if raw is None:
            return None
        raw = self._section(raw, "search", SearchSpec)
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
        space = raw.get("space")
        if not isinstance(space, Mapping) or not space:
            raise SpecError("search.space", "a non-empty mapping of axis: {type, low, high | values}", space)
        params: dict[str, SearchParam] = {}
        for key, dim in space.items():
            axis = self.axis_name(key, "search.space")
            if axis in grid_axes:
                raise SpecError(f"search.space.{axis}", "an axis that is not also a grid axis", axis,
                                hint=f"remove grid.{axis} or this search dimension")
            params[axis] = self.search_param(axis, dim, f"search.space.{axis}")
        return SearchSpec(metric, mode, num, scheduler, params)

    def search_param(self, axis: str, raw: Any, where: str) -> SearchParam:
        if not isinstance(raw, Mapping):
            raise SpecError(where, "a mapping {type: loguniform|uniform|int|choice, low, high | values}", raw)
        for k in raw:
            if k not in ("type", "low", "high", "values"):
                raise _unknown_key(where, k, ("type", "low", "high", "values"), "a key of a search dimension")
        kind = raw.get("type")
        if kind not in SEARCH_TYPES:
            near = closest(str(kind), SEARCH_TYPES)
            raise SpecError(f"{where}.type", f"one of {', '.join(SEARCH_TYPES)}", kind,
                            hint=f"did you mean {near!r}?" if near else None)
        if kind == "choice":
            values = raw.get("values")
            if not isinstance(values, list) or not values:
                raise SpecError(f"{where}.values", "a non-empty list of values", values)
            if "low" in raw or "high" in raw:
                raise SpecError(where, "values only (low/high are for numeric types)", dict(raw))
            choices = []
            for i, v in enumerate(values):
                at = f"{where}.values[{i}]"
                value = self.value(axis, v, at)
                if isinstance(value, Component):
                    if value.params:
                        raise SpecError(at, "a bare name (Optuna choices are plain values; grid a "
                                        "parameterized component instead)", v)
                    value = value.name
                if value is not None and not isinstance(value, (bool, int, float, str)):
                    raise SpecError(at, "a plain value: a number, string, true/false or null "
                                    "(Optuna choices)", v)
                choices.append(value)
            return SearchParam(axis, kind, values=tuple(choices))
        default = DOTTED_AXES.get(axis)
        numeric = isinstance(default, (int, float)) and not isinstance(default, bool)
        if axis == "train.grad_clip":
            numeric, default = True, 1.0
        if not numeric:
            raise SpecError(f"{where}.type", f"choice for the non-numeric axis {axis!r}", kind)
        if kind != "int" and isinstance(default, int) and not isinstance(default, float):
            raise SpecError(f"{where}.type", f"int or choice for the integer field {axis!r}", kind)
        if "values" in raw:
            raise SpecError(f"{where}.values", f"low and high for type {kind} (values are for choice)",
                            raw["values"])
        bounds = []
        for end in ("low", "high"):
            if end not in raw:
                raise SpecError(f"{where}.{end}", f"a {end} bound for type {kind}", None)
            value = raw[end]
            if isinstance(value, str):  # YAML 1.1 reads 1e-5 (no dot) as a string
                try:
                    value = float(value)
                except ValueError:
                    raise SpecError(f"{where}.{end}", "a number", raw[end]) from None
            if kind == "int" and (isinstance(value, bool) or not isinstance(value, int)):
                raise SpecError(f"{where}.{end}", "an integer", raw[end])
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise SpecError(f"{where}.{end}", "a number", raw[end])
            bounds.append(self.value(axis, value, f"{where}.{end}"))  # the field's own range checks
        low, high = bounds
        if kind == "loguniform" and low <= 0:
            raise SpecError(f"{where}.low", "a positive number (loguniform)", low)
        if (kind == "int" and low > high) or (kind != "int" and low >= high):
            raise SpecError(where, "low < high" if kind != "int" else "low ≤ high", f"low={low}, high={high}")
        return SearchParam(axis, kind, low, high)
