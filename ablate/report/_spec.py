"""Dashboard specs: YAML → a frozen, validated :class:`DashboardSpec`.

    from ablate.report import load_dashboard_spec
    spec = load_dashboard_spec("dashboards/divergence.yaml")
    spec.table.metric, [p.kind for p in spec.plots]

A spec says which experiment(s) and cells to read, how to lay out the ablation table (rows,
columns, metric, aggregation over seeds, the baseline variant for paired differences) and which
plots to draw. ``DashboardSpec()`` is the default norm-ablation dashboard
(``dashboards/norm-ablation.yaml`` spells it out).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from ablate.errors import SpecError, did_you_mean
from ablate.status import ENDED, CellStatus

STATS = ("msq", "maxabs", "entropy", "top1")
PLOT_KINDS = ("trace", "depth", "metric", "lowprec")
SITE_PICKS = ("shallow", "middle", "deep", "all")
#: every cell status, in the order tables and messages list them: the ended ones, then running
STATUS_ORDER = tuple(s.value for s in (*ENDED, CellStatus.RUNNING))
BUILTIN = {"norm-ablation", "default"}


@dataclass(frozen=True)
class FilterSpec:
    """Which cells enter the dashboard (all of them by default)."""

    params: tuple[tuple[str, tuple[str, ...]], ...] = ()  # param key -> accepted values
    norms: tuple[str, ...] = ()  # variant labels (tag ablate.norm); empty: every variant


@dataclass(frozen=True)
class TableSpec:
    """The ablation table: one row per ``rows`` value, one column per ``columns`` combination."""

    rows: str = "norm"  # a field: norm, status, experiment, a param key (seed, task, train.optimizer.lr…), tags.X
    columns: tuple[str, ...] = ("backbone", "task")
    metric: str = "final/psnr"
    unit: str = "dB"
    goal: str = "max"  # max | min: which value is best (marked per column)
    aggregate: str = "mean"  # mean | median over seeds (± is always the sample std)
    baseline: str | None = None  # variant for paired differences; None: the experiment's first variant
    statuses: tuple[str, ...] = (CellStatus.FINISHED.value,)  # cells whose metric enters the table
    precision: int = 2


@dataclass(frozen=True)
class PlotSpec:
    """One figure. ``trace``: a probe statistic vs step per site; ``depth``: the last probed value vs
    depth; ``metric``: a per-step metric vs step; ``lowprec``: the fp32 − fp16/bf16 PSNR drop."""

    kind: str
    stat: str = "msq"  # trace/depth: msq | maxabs | entropy | top1
    sites: tuple[str, ...] = ("shallow", "middle", "deep")  # trace: picks or site names (g0.b0, final…)
    key: str = "val/psnr"  # metric: the per-step metric
    reference: str | None = None  # metric: a summary metric drawn as a dashed line (e.g. ref/psnr_input)
    log: bool | None = None  # log y axis; None: yes for msq and maxabs
    precisions: tuple[str, ...] = ("fp16", "bf16")  # lowprec
    title: str | None = None

    @property
    def log_y(self) -> bool:
        return self.log if self.log is not None else (self.kind in ("trace", "depth") and
                                                       self.stat in ("msq", "maxabs"))


def _default_plots() -> tuple[PlotSpec, ...]:
    return (
        PlotSpec("trace", stat="msq"),
        PlotSpec("trace", stat="entropy"),
        PlotSpec("depth", stat="msq"),
        PlotSpec("metric", key="val/psnr", reference="ref/psnr_input"),
        PlotSpec("lowprec"),
    )


@dataclass(frozen=True)
class DashboardSpec:
    name: str = "norm-ablation"
    title: str = "Normalization ablation"
    description: str = ""
    experiments: tuple[str, ...] = ()  # empty: the command line's --experiment
    filters: FilterSpec = field(default_factory=FilterSpec)
    table: TableSpec = field(default_factory=TableSpec)
    plots: tuple[PlotSpec, ...] = field(default_factory=_default_plots)
    max_facets: int = 4  # column groups drawn as separate panels (the rest are listed, not drawn)
    source: str = ""  # the YAML text (shown at the bottom of the page)


# parsing ---------------------------------------------------------------------------------------------
def _keys(raw: Mapping[str, Any], allowed: tuple[str, ...], where: str, file: str | None) -> None:
    for key in raw:
        if key not in allowed:
            hint = did_you_mean(str(key), allowed).strip(" ()") or None
            raise SpecError(f"{where}{key}", f"one of {', '.join(allowed)}", key, file=file, hint=hint)


def _str(value: Any, path: str, file: str | None, *, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        raise SpecError(path, "a non-empty string", value, file=file)
    return value.strip()


def _str_list(value: Any, path: str, file: str | None) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, (str, int, float)) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, list):
        raise SpecError(path, "a string or a list of strings", value, file=file)
    return tuple(str(_str(v, f"{path}[{i}]", file)) for i, v in enumerate(value))


def _choice(value: Any, choices: tuple[str, ...], path: str, file: str | None) -> str:
    if value not in choices:
        hint = did_you_mean(str(value), choices).strip(" ()") or None
        raise SpecError(path, f"one of {', '.join(choices)}", value, file=file, hint=hint)
    return str(value)


def _mapping(value: Any, path: str, file: str | None) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise SpecError(path, "a mapping", value, file=file)
    return value


def _filters(raw: Any, file: str | None) -> FilterSpec:
    raw = _mapping(raw, "filters", file)
    _keys(raw, ("params", "norms"), "filters.", file)
    params = _mapping(raw.get("params"), "filters.params", file)
    return FilterSpec(
        params=tuple((str(k), _str_list(v, f"filters.params.{k}", file)) for k, v in params.items()),
        norms=_str_list(raw.get("norms"), "filters.norms", file),
    )


def _table(raw: Any, file: str | None) -> TableSpec:
    raw = _mapping(raw, "table", file)
    _keys(raw, tuple(f.name for f in fields(TableSpec)), "table.", file)
    d = TableSpec()
    precision = raw.get("precision", d.precision)
    if isinstance(precision, bool) or not isinstance(precision, int) or not 0 <= precision <= 8:
        raise SpecError("table.precision", "an integer from 0 to 8", precision, file=file)
    statuses = _str_list(raw.get("statuses", list(d.statuses)), "table.statuses", file)
    for i, s in enumerate(statuses):
        _choice(s, STATUS_ORDER, f"table.statuses[{i}]", file)
    if not statuses:
        raise SpecError("table.statuses", "at least one status", [], file=file)
    columns = raw.get("columns", list(d.columns))
    return TableSpec(
        rows=str(_str(raw.get("rows", d.rows), "table.rows", file)),
        columns=_str_list(columns, "table.columns", file),
        metric=str(_str(raw.get("metric", d.metric), "table.metric", file)),
        unit=str(raw.get("unit", d.unit) or ""),
        goal=_choice(raw.get("goal", d.goal), ("max", "min"), "table.goal", file),
        aggregate=_choice(raw.get("aggregate", d.aggregate), ("mean", "median"), "table.aggregate", file),
        baseline=_str(raw.get("baseline", d.baseline), "table.baseline", file, optional=True),
        statuses=statuses,
        precision=precision,
    )


def _plot(raw: Any, i: int, file: str | None) -> PlotSpec:
    where = f"plots[{i}]"
    if isinstance(raw, str):
        raw = {"kind": raw}
    raw = _mapping(raw, where, file)
    _keys(raw, tuple(f.name for f in fields(PlotSpec)), f"{where}.", file)
    if "kind" not in raw:
        raise SpecError(f"{where}.kind", f"one of {', '.join(PLOT_KINDS)}", None, file=file)
    kind = _choice(raw["kind"], PLOT_KINDS, f"{where}.kind", file)
    d = PlotSpec(kind)
    stat = _choice(raw.get("stat", d.stat), STATS, f"{where}.stat", file)
    sites = _str_list(raw.get("sites", list(d.sites)), f"{where}.sites", file)
    if not sites:
        raise SpecError(f"{where}.sites", "at least one site (shallow, middle, deep, all or a site name)", [],
                        file=file)
    log = raw.get("log", d.log)
    if log is not None and not isinstance(log, bool):
        raise SpecError(f"{where}.log", "true, false or null", log, file=file)
    precisions = _str_list(raw.get("precisions", list(d.precisions)), f"{where}.precisions", file)
    for j, p in enumerate(precisions):
        _choice(p, ("fp16", "bf16"), f"{where}.precisions[{j}]", file)
    return PlotSpec(kind=kind, stat=stat, sites=sites, key=str(_str(raw.get("key", d.key), f"{where}.key", file)),
                    reference=_str(raw.get("reference", d.reference), f"{where}.reference", file, optional=True),
                    log=log, precisions=precisions,
                    title=_str(raw.get("title"), f"{where}.title", file, optional=True))


def parse_dashboard_spec(raw: Any, *, file: str | None = None, source: str = "") -> DashboardSpec:
    """Validate a loaded YAML mapping; :class:`SpecError` names the file and key path on error."""
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise SpecError("", "a mapping at the top level of a dashboard spec", type(raw).__name__, file=file)
    allowed = tuple(f.name for f in fields(DashboardSpec) if f.name != "source")
    _keys(raw, allowed, "", file)
    d = DashboardSpec()
    plots_raw = raw.get("plots", None)
    if plots_raw is None:
        plots = d.plots
    elif isinstance(plots_raw, list):
        plots = tuple(_plot(p, i, file) for i, p in enumerate(plots_raw))
    else:
        raise SpecError("plots", "a list of plots", plots_raw, file=file)
    max_facets = raw.get("max_facets", d.max_facets)
    if isinstance(max_facets, bool) or not isinstance(max_facets, int) or max_facets < 1:
        raise SpecError("max_facets", "a positive integer", max_facets, file=file)
    return DashboardSpec(
        name=str(_str(raw.get("name", Path(file).stem if file else d.name), "name", file)),
        title=str(_str(raw.get("title", d.title), "title", file)),
        description=str(raw.get("description") or ""),
        experiments=_str_list(raw.get("experiments"), "experiments", file),
        filters=_filters(raw.get("filters"), file),
        table=_table(raw.get("table"), file),
        plots=plots,
        max_facets=max_facets,
        source=source,
    )


def load_dashboard_spec(spec: str | Path | DashboardSpec | None = None,
                        search: tuple[Path, ...] | None = None) -> DashboardSpec:
    """A spec from a path, a name (``divergence`` → ``dashboards/divergence.yaml``), or the default.

    ``None``, ``"default"`` and ``"norm-ablation"`` (when no such file is found) give the built-in
    default. Names are looked up in ``search`` (default: ``./dashboards``).
    """
    if isinstance(spec, DashboardSpec):
        return spec
    if spec is None:
        return DashboardSpec()
    path = Path(spec)
    if not path.exists() and path.suffix == "" and len(path.parts) == 1:
        for folder in search if search is not None else (Path.cwd() / "dashboards",):
            for suffix in (".yaml", ".yml"):
                if (folder / f"{spec}{suffix}").exists():
                    path = folder / f"{spec}{suffix}"
                    break
            if path.exists():
                break
        else:
            if str(spec) in BUILTIN:
                return DashboardSpec()
    if not path.exists():
        raise SpecError("", "a dashboard spec file (or the name of one in ./dashboards)", str(spec),
                        hint="try dashboards/norm-ablation.yaml, or leave SPEC out for the default")
    text = path.read_text(encoding="utf-8")
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else ""
        raise SpecError(where, "valid YAML", getattr(err, "problem", str(err)), file=str(path)) from None
    return parse_dashboard_spec(raw, file=str(path), source=text)
