"""The cells of one or more experiments as plain rows, plus the variant order and colours.

    from ablate.report._data import load_cells
    cells = load_cells(["quickstart"], "sqlite:////abs/.ablate/mlflow.db", spec)
    [(c.variant, c.column, c.status, c.metric("final/psnr")) for c in cells.rows]

Variants (and table columns) keep the experiment's order — the order its plan lists the cells: the
grid as the spec expands it, then ``include`` — on every table and plot; colours follow that order.
The baseline of paired differences is the dashboard's ``table.baseline`` or else the first variant.

Fields (table rows/columns, filters) name a cell attribute: ``norm`` (the variant label, tag
``ablate.norm``), ``status``, ``experiment``, ``cell``, ``tags.<key>``, ``params.<key>`` or a bare
param key (``seed``, ``task``, ``train.optimizer.lr``). A component param logged as a mapping
(``backbone.name``, ``backbone.depth``…) reads back as one label, ``swinir(depth=2)``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ablate.errors import AblateError, did_you_mean
from ablate.status import CellStatus
from ablate.track import RunStore, latest_per_cell

from ._spec import DashboardSpec

MISSING = "—"
# tab10 first (distinct, colour-blind-friendlier than most), then tab20's light half for >10 variants
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
           "#bcbd22", "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94",
           "#f7b6d2", "#c7c7c7", "#dbdb8d", "#9edae5")
_SITE = re.compile(r"^feat/(?P<site>.+)/(?P<stat>[^/]+)$")
_BLOCK = re.compile(r"^g(\d+)\.(?:b(\d+)|(ocab))$")


def field_value(run: dict[str, Any], name: str) -> str:
    """The value of field ``name`` for one run record, as a label ("—" when absent)."""
    if name in ("norm", "variant"):
        label = run.get("norm")
        if label:
            return str(label)
        base = _param_label(run["params"], "norm")
        rescale = run["params"].get("rescale")
        return f"{base}+rescale" if rescale == "True" and base != MISSING else base
    if name in ("status", "experiment", "cell", "pairing", "reason"):
        value = run.get(name)
        return str(value) if value not in (None, "") else MISSING
    if name.startswith("tags."):
        return str(run["tags"].get(name[5:], MISSING))
    if name.startswith("params."):
        return _param_label(run["params"], name[7:])
    return _param_label(run["params"], name)


def _param_label(params: dict[str, str], key: str) -> str:
    if key in params:
        return params[key]
    prefix = key + "."
    sub = {k[len(prefix):]: v for k, v in params.items() if k.startswith(prefix)}
    if not sub:
        return MISSING
    name = sub.pop("name", key)
    return name + ("(" + ",".join(f"{k}={v}" for k, v in sorted(sub.items())) + ")" if sub else "")


def known_fields(runs: list[dict[str, Any]]) -> list[str]:
    keys = {"norm", "status", "experiment", "cell"}
    for run in runs:
        for k in run["params"]:
            keys.add(k)
            keys.add(k.split(".", 1)[0])
    return sorted(keys)


def _matches(value: str, accepted: tuple[str, ...]) -> bool:
    for want in accepted:
        if value == want:
            return True
        try:
            if float(value) == float(want):  # "0.0002" and "2e-4" are the same learning rate
                return True
        except ValueError:
            pass
    return False


def site_order(site: str) -> tuple[float, float, str]:
    """Sort key shallow → deep: embed, g0.b0 … g0.bN, g0.ocab, g1.b0 …, anything else, final."""
    if site in ("embed", "patch_embed"):
        return (-1.0, 0.0, site)
    if site == "final":
        return (float("inf"), 0.0, site)
    m = _BLOCK.match(site)
    if m:
        return (float(m.group(1)), float(m.group(2)) if m.group(2) is not None else 1e9, site)
    return (1e12, 0.0, site)


def sites_of(runs: list[dict[str, Any]], stat: str) -> list[str]:
    """Every probe site that logged ``feat/<site>/<stat>`` in any run, shallow → deep."""
    found = set()
    for run in runs:
        for key in run["metrics"]:
            m = _SITE.match(key)
            if m and m.group("stat") == stat:
                found.add(m.group("site"))
    return sorted(found, key=site_order)


def pick_sites(available: list[str], picks: tuple[str, ...]) -> list[tuple[str, str]]:
    """``[(label, site)]``: shallow/middle/deep are the first, middle and last block (not ``final``)."""
    blocks = [s for s in available if s != "final"] or list(available)
    out: list[tuple[str, str]] = []
    for pick in picks:
        if pick == "all":
            out.extend((s, s) for s in available)
        elif pick in ("shallow", "middle", "deep") and blocks:
            site = {"shallow": blocks[0], "middle": blocks[(len(blocks) - 1) // 2], "deep": blocks[-1]}[pick]
            out.append((f"{pick} ({site})", site))
        elif pick in available:
            out.append((pick, pick))
    seen: set[str] = set()
    return [(lbl, s) for lbl, s in out if not (s in seen or seen.add(s))]  # type: ignore[func-returns-value]


@dataclass(frozen=True)
class CellRow:
    """One cell (the latest run of its id): identity, its table row and column labels, its metrics."""

    run_id: str
    cell: str
    experiment: str
    status: str
    reason: str
    variant: str
    row: str  # the table row label (the variant when the table's rows are norms)
    column: str  # the table column label: "swinir-tiny · sr-x2"
    pairing: str
    seed: str
    run_name: str
    metrics: dict[str, float]

    def metric(self, key: str) -> float:
        """The run's latest value of ``key`` (NaN when it did not log it)."""
        return self.metrics.get(key, math.nan)


@dataclass
class Cells:
    """One row per cell (the latest run of each cell id) with its fields and summary metrics."""

    rows: list[CellRow]
    runs: dict[str, dict[str, Any]]  # run id -> run record
    variants: list[str]  # in the experiment's order
    cell_order: dict[str, int]  # cell id -> its position in the experiment (see plan_order)
    colours: dict[str, str]
    columns: list[str]  # column-group labels, in order
    store: RunStore
    experiments: list[str]
    baseline: str | None = None  # the variant paired differences are taken against
    sweeps: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.rows

    def metric_keys(self) -> set[str]:
        return {k for r in self.runs.values() for k in r["metrics"]}

    def select(self, *, variant: str | None = None, column: str | None = None,
               statuses: Iterable[str] | None = None, diverged: bool | None = None) -> list[CellRow]:
        """The rows of one variant and/or column; ``statuses`` keeps those statuses, ``diverged``
        keeps (True) or drops (False) diverged cells."""
        keep = set(statuses) if statuses is not None else None
        return [r for r in self.rows
                if (variant is None or r.variant == variant) and (column is None or r.column == column)
                and (keep is None or r.status in keep)
                and (diverged is None or (r.status == CellStatus.DIVERGED) == diverged)]


def plan_order(store: RunStore, sweeps: list[dict[str, Any]], runs: list[dict[str, Any]]) -> dict[str, int]:
    """Cell id -> its position in the experiment: the newest sweep's plan first (``plan/plan.json``:
    the grid as the spec expands it, then ``include``), then older plans, then cells no plan names, in
    the order they started. Older plans are read only while some cell is not placed yet."""
    wanted = {r["cell"] for r in runs}
    order: dict[str, int] = {}
    for sweep in sorted(sweeps, key=lambda r: r["start_time"] or 0, reverse=True):
        if wanted <= set(order):
            break
        text = store.artifact_text(sweep["run_id"], "plan/plan.json")
        try:
            plan = json.loads(text) if text else []
        except ValueError:  # a damaged artifact: the start order below still covers its cells
            plan = []
        for row in plan if isinstance(plan, list) else []:
            cell = row.get("id", row.get("cell")) if isinstance(row, dict) else None
            if isinstance(cell, str) and cell not in order:
                order[cell] = len(order)
    for r in sorted(runs, key=lambda r: (r["start_time"] or 0, r["run_id"])):
        order.setdefault(r["cell"], len(order))
    return order


def experiment_order(rows: list[CellRow], cell_order: dict[str, int], label: Any) -> list[str]:
    """The distinct ``label(row)`` values in the order of their first cell in the experiment."""
    first: dict[str, int] = {}
    last = len(cell_order)
    for r in rows:
        value = label(r)
        first[value] = min(first.get(value, last), cell_order.get(r.cell, last))
    return sorted(first, key=lambda v: first[v])


def choose_baseline(variants: list[str], wanted: str | None) -> str | None:
    """``wanted`` (the dashboard's ``table.baseline``) if it has cells, else the experiment's first
    variant: the grid's first ``norm`` value, the one the YAML sets the others against."""
    if wanted is not None:
        return wanted if wanted in variants else None
    return variants[0] if variants else None


def _read(store: RunStore, experiments: list[str],
          tracking_uri: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(the latest run of each cell, the sweep runs) of every experiment; AblateError for a missing one."""
    runs: list[dict[str, Any]] = []
    sweeps: list[dict[str, Any]] = []
    for name in experiments:
        if store.experiment(name) is None:
            names = store.experiment_names()
            listed = ", ".join(names[:12]) + (" …" if len(names) > 12 else "") if names else "none"
            raise AblateError(f"experiment {name!r} not found in {tracking_uri}{did_you_mean(name, names)} "
                              f"(experiments there: {listed})")
        every = store.runs(name, kind="all")
        runs.extend(latest_per_cell(r for r in every if r["cell"]))
        sweeps.extend(r for r in every if r["is_sweep"])
    return runs, sweeps


def _filtered(runs: list[dict[str, Any]], spec: DashboardSpec, notes: list[str]) -> list[dict[str, Any]]:
    """The runs the spec's filters keep (a note says how many when they drop some)."""
    before = len(runs)
    for key, accepted in spec.filters.params:
        runs = [r for r in runs if _matches(field_value(r, key), accepted)]
    if spec.filters.norms:
        runs = [r for r in runs if field_value(r, "norm") in spec.filters.norms]
    if before and len(runs) < before:
        notes.append(f"filters kept {len(runs)} of {before} cells")
    return runs


def _check_table_fields(runs: list[dict[str, Any]], spec: DashboardSpec) -> None:
    """A table row/column field must be a param or tag of the cells (a typo fails here, by name)."""
    fields_here = known_fields(runs)
    for name in (spec.table.rows, *spec.table.columns):
        base = name[7:] if name.startswith("params.") else name
        if not name.startswith("tags.") and base not in fields_here and base.split(".")[0] not in fields_here:
            raise AblateError(f"dashboard {spec.name!r}: table field {name!r} is not a param or tag of these "
                              f"cells{did_you_mean(base, fields_here)}")


def _row(r: dict[str, Any], spec: DashboardSpec) -> CellRow:
    """One cell: its identity, table row and column labels, and its latest metrics."""
    column = " · ".join(field_value(r, c) for c in spec.table.columns) if spec.table.columns else "all cells"
    return CellRow(r["run_id"], r["cell"], r["experiment"], r["status"], r["reason"], field_value(r, "norm"),
                   field_value(r, spec.table.rows), column, r["pairing"] or "", field_value(r, "seed"),
                   r["run_name"], r["metrics"])


def load_cells(experiments: list[str], tracking_uri: str, spec: DashboardSpec,
               store: RunStore | None = None) -> Cells:
    """Read the experiments' cell runs and build :class:`Cells`.

    Raises :class:`AblateError` when an experiment does not exist (naming the closest one); an
    experiment without cell runs gives no rows.
    """
    store = store or RunStore(tracking_uri)
    runs, sweeps = _read(store, experiments, tracking_uri)
    notes: list[str] = []
    runs = _filtered(runs, spec, notes)
    if runs:
        _check_table_fields(runs, spec)
    rows = [_row(r, spec) for r in runs]
    cell_order = plan_order(store, sweeps, runs) if rows else {}
    variants = experiment_order(rows, cell_order, lambda r: r.variant)
    colours = {v: PALETTE[i % len(PALETTE)] for i, v in enumerate(variants)}
    columns = experiment_order(rows, cell_order, lambda r: r.column)
    return Cells(rows=rows, runs={r["run_id"]: r for r in runs}, variants=variants, cell_order=cell_order,
                 colours=colours, columns=columns, store=store, experiments=list(experiments),
                 baseline=choose_baseline(variants, spec.table.baseline), sweeps=sweeps, notes=notes)
