"""A parsed YAML mapping → :class:`ExperimentSpec`: every section and axis value validated, in one pass.

    from ablate.spec._parse import Parser
    spec = Parser(file=None).parse({"name": "t", "norm": "token_ln", "backbone": "swinir-tiny",
                                    "task": "sr-x2"}, source_text=None)

Registry names and component parameters are resolved here (by the subpackages that own them), so a
typo fails at load time, not in a trial. docs/schema.md documents every key.
"""

from __future__ import annotations

import os
import re
import unicodedata
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from ablate.errors import SpecError, closest

from ._axes import AXES, COMPONENT_AXES, CORE_AXES, apply_overrides, dotted_value
from ._components import check_component, check_registered, relocate
from ._eval import parse_eval
from ._experiment import ExperimentSpec, ResourceSpec, TrackingSpec
from ._fields import build_dataclass, section, unknown_key
from ._search import parse_search
from ._types import Component, ProbeSpec, TrainSpec

TOP_LEVEL_KEYS = ("name", "description", "grid", "include", "exclude", "norm", "rescale", "backbone",
                  "task", "seed", "data", "train", "probes", "resources", "tracking", "search", "eval")
# Axes a top-level key can pin for every cell (data too, checked apart: it has a default).
FIXED_AXES = ("norm", "rescale", "backbone", "task", "seed")
# The name is the MLflow experiment and, made file-safe (ablate.naming.safe_name), the folder of its
# checkpoints, artifacts and dashboards in the state folder: file names stop at 255 bytes.
MAX_NAME = 200
# data parameters that name folders; made absolute against the YAML file's directory
DATA_PATH_KEYS = ("path", "val_path", "lq", "gt", "val_lq", "val_gt", "prepared")

Entries = tuple[tuple[tuple[str, Any], ...], ...]


def check_name(name: str) -> None:
    """The experiment name names folders too: printable, at most ``MAX_NAME`` bytes, with a letter
    or digit (a name of dots and slashes alone would become the fallback folder name)."""
    if len(name.encode("utf-8")) > MAX_NAME:
        raise SpecError("name", f"at most {MAX_NAME} bytes of UTF-8 (it names folders in the state folder)",
                        f"{len(name.encode('utf-8'))} bytes")
    if any(unicodedata.category(ch).startswith("C") for ch in name):
        raise SpecError("name", "printable characters only (no newlines, tabs or control characters)", name)
    if not re.search(r"[^\W_]", name):
        raise SpecError("name", "a name with at least one letter or digit", name)


class Parser:
    """Validates one experiment mapping; ``check_data=False`` checks a dataset's name, not its folders."""

    def __init__(self, file: str | None, check_data: bool = True) -> None:
        self.file = file
        self.check_data = check_data
        self.train = TrainSpec()
        self.probes = ProbeSpec()
        self._checked: set[tuple[str, Component]] = set()

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
            return self.component(axis, raw, where)
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
            raise relocate(err, where, axis) from None
        return dotted_value(train, probes, axis)

    def component(self, axis: str, raw: Any, where: str) -> Component:
        comp = Component.parse(raw, where)
        if axis == "data":
            comp = self.absolute_paths(comp)
            if not self.check_data:
                check_registered("data", comp, where)
                return comp
        if (axis, comp) not in self._checked:
            check_component(axis, comp, where)
            self._checked.add((axis, comp))
        return comp

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

    def entries(self, raw: Any, key: str) -> Entries:
        """The ``include:`` or ``exclude:`` list: partial cells, each a sorted tuple of (axis, value)."""
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
                if isinstance(value, list) and axis in CORE_AXES:
                    raise SpecError(f"{where}.{axis}", "a single value (one entry per cell)", value)
                items.append((axis, self.value(axis, value, f"{where}.{axis}")))
            out.append(tuple(sorted(items, key=lambda kv: AXES.index(kv[0]))))  # key order is no meaning
        return tuple(out)

    # sections -------------------------------------------------------------------------------
    def parse(self, raw: Any, source_text: str | None) -> ExperimentSpec:
        name, description = self.header(raw)
        # base train/probes first: dotted axis values are validated against them
        self.train = build_dataclass(TrainSpec, raw.get("train"), "train")
        self.probes = build_dataclass(ProbeSpec, raw.get("probes"), "probes")
        data = self.value("data", raw["data"], "data") if raw.get("data") is not None else Component("skimage")
        grid = self.grid(raw.get("grid"))
        grid_axes = {axis for axis, _ in grid}
        fixed = self.fixed(raw, grid_axes)
        return ExperimentSpec(
            name=name,
            description=description,
            grid=grid,
            fixed=fixed,
            include=self.entries(raw.get("include"), "include"),
            exclude=self.entries(raw.get("exclude"), "exclude"),
            train=self.train,
            probes=self.probes,
            data=data,
            resources=self.resources(raw.get("resources")),
            tracking=self.tracking(raw.get("tracking")),
            search=parse_search(raw.get("search"), grid_axes, self, seeds=_search_seeds(grid, fixed)),
            eval=parse_eval(raw.get("eval"), self),
            file=self.file,
            source_text=source_text if source_text is not None else yaml.safe_dump(dict(raw), sort_keys=False),
        )

    def header(self, raw: Any) -> tuple[str, str]:
        """(name, description), after checking that ``raw`` is a mapping of known top-level keys."""
        if raw is None:
            raise SpecError("", "a mapping with at least `name:` (the file is empty)", None)
        if not isinstance(raw, Mapping):
            raise SpecError("", "a mapping of experiment keys (name, grid, train, ...) at the top level",
                            type(raw).__name__)
        for key in raw:
            if key not in TOP_LEVEL_KEYS:
                raise unknown_key("", key, TOP_LEVEL_KEYS, "a top-level key")
        name = raw.get("name")
        if not isinstance(name, str) or not name.strip():
            raise SpecError("name", "a non-empty string (the MLflow experiment name)", name)
        check_name(name)
        description = raw.get("description") or ""
        if not isinstance(description, str):
            raise SpecError("description", "a string", description)
        return name, description

    def fixed(self, raw: Mapping[str, Any], grid_axes: set[str]) -> tuple[tuple[str, Any], ...]:
        """The top-level values every cell shares; an axis is either fixed or gridded, not both."""
        fixed = []
        for axis in FIXED_AXES:
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
        return tuple(fixed)

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
        raw = section(raw, "resources", ResourceSpec)
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
        raw = section(raw, "tracking", TrackingSpec)
        uri = raw.get("uri")
        if uri is not None and (not isinstance(uri, str) or not uri):
            raise SpecError("tracking.uri", "a tracking URI string (sqlite:///..., http://...)", uri)
        return TrackingSpec(uri)


def _search_seeds(grid: tuple[tuple[str, tuple[Any, ...]], ...], fixed: tuple[tuple[str, Any], ...]) -> set[int]:
    """The seeds a search's trials run with (a grid's, else the top-level one, else 0): a confirm
    experiment must use others."""
    seeds = {v for axis, values in grid if axis == "seed" for v in values}
    return seeds or {dict(fixed).get("seed", 0)}
