"""Build the self-contained HTML dashboard of an experiment.

    from ablate.report import build_dashboard
    path = build_dashboard("dashboards/norm-ablation.yaml", "quickstart",
                           "sqlite:////abs/.ablate/mlflow.db", "report.html")

One file, no network needed to view it: CSS inline, plots interactive (plotly.js inline once, the
figures as JSON: hover values, legend toggles, zoom) when the ``plotly`` package is installed, else
(or with ``interactive=False``) every plot an inline SVG and no JavaScript at all.
"""

from __future__ import annotations

import datetime as _dt
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jinja2

from ablate.naming import safe_name
from ablate.status import CellStatus
from ablate.track import RunStore, Tag, default_state_dir, resolve_tracking_uri

from . import _plotly
from ._anova import anova_context, factor_anova
from ._budget import budget_rows, imbalances
from ._data import Cells, load_cells
from ._eval import eval_context
from ._figures import MAX_POINTS, FigureModel, build_figure, needed_keys
from ._spec import STATUS_ORDER, DashboardSpec, load_dashboard_spec
from ._table import SINGLE_SEED, AblationTable, build_table, fmt, fmt_signed, pvalue

_STATUS_COLOURS = {CellStatus.FINISHED.value: "#2e7d32", CellStatus.DIVERGED.value: "#c62828",
                   CellStatus.FAILED.value: "#6a1b9a", CellStatus.PRUNED.value: "#ef6c00",
                   CellStatus.KILLED.value: "#616161", CellStatus.RUNNING.value: "#1565c0"}


def _env() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.PackageLoader("ablate.report", "templates"),
                              autoescape=jinja2.select_autoescape(["html", "j2"]), trim_blocks=True,
                              lstrip_blocks=True, undefined=jinja2.StrictUndefined)


def _experiments(spec: DashboardSpec, experiment: str | list[str] | tuple[str, ...] | None) -> list[str]:
    if experiment:
        return [experiment] if isinstance(experiment, str) else list(experiment)
    if spec.experiments:
        return list(spec.experiments)
    from ablate.errors import AblateError

    raise AblateError(f"dashboard {spec.name!r} names no experiment: pass --experiment NAME")


def _histories(cells: Cells, spec: DashboardSpec) -> dict[str, Any]:
    """The histories the plots draw: for cells that ran on, only the ≤ MAX_POINTS steps a line keeps;
    a diverged cell's trace whole (its × marks its last finite value, wherever that is)."""
    keys = needed_keys(cells, spec.plots)
    if cells.empty or not keys:
        return {}
    diverged = [r.run_id for r in cells.select(diverged=True)]
    hist = cells.store.histories([r.run_id for r in cells.select(diverged=False)], keys=keys, max_points=MAX_POINTS)
    hist.update(cells.store.histories(diverged, keys=keys))
    return hist


def _figure(model: FigureModel, cells: Cells, interactive: bool, index: int) -> dict[str, Any]:
    out: dict[str, Any] = {"title": model.title, "caption": model.caption, "notes": model.notes, "kind": model.kind,
                           "svg": None, "plot": None, "id": f"plot-{index}"}
    if interactive:
        fig = _plotly.figure_json(model, cells)
        out["plot"] = _plotly.figure_script(fig) if fig is not None else None
    else:
        from ._plots import to_svg_figure  # matplotlib: only for the static page

        out["svg"] = to_svg_figure(model, cells)
    return out


def _table_context(table: AblationTable, cells: Cells) -> dict[str, Any]:
    spec = table.spec
    rows = []
    for row in table.rows:
        out = []
        for col in table.columns:
            e = table.entries.get((row, col))
            out.append({
                "text": table.cell_text(row, col), "best": bool(e and e.best), "n": e.n if e else 0,
                "excluded": table.excluded_text(row, col),
                "mean": "" if e is None or not e.n else repr(table.center(e)),
                "std": "" if e is None or e.n < 2 else repr(e.std),
            })
        rows.append({"label": row, "colour": cells.colours.get(row), "cells": out})
    paired = []
    for row in table.paired_rows():
        out = []
        for col in table.columns:
            pr = table.paired.get((row, col))
            if pr is None or pr.n == 0:
                out.append({"text": "—", "ci": "", "p": "", "p_holm": "", "n": 0, "sig": False, "sign": "",
                            "delta": ""})
                continue
            lo, hi = pr.ci
            decisive = pr.p_holm if table.family > 1 else pr.p  # the p that decides: adjusted when several
            better = (pr.mean > 0) == (spec.goal == "max")
            out.append({
                "text": fmt_signed(pr.mean, spec.precision),
                "ci": "" if math.isnan(lo) else f"[{fmt(lo, spec.precision)}, {fmt(hi, spec.precision)}]",
                "p": "" if math.isnan(pr.p) else pvalue(pr.p), "n": pr.n,
                "p_holm": "" if math.isnan(pr.p_holm) or table.family < 2 else pvalue(pr.p_holm),
                "sig": not math.isnan(decisive) and decisive < 0.05,
                "sign": "" if pr.mean == 0 else ("better" if better else "worse"),
                "delta": repr(pr.mean),
            })
        paired.append({"label": row, "colour": cells.colours.get(row), "cells": out})
    return {"rows": rows, "columns": table.columns, "paired": paired, "has_test": table.has_test,
            "baseline": table.baseline, "metric": spec.metric, "unit": spec.unit,
            "rows_field": spec.rows, "aggregate": spec.aggregate, "goal": spec.goal,
            "statuses": ", ".join(spec.statuses), "has_best": table.has_best, "family": table.family,
            "single_seed": SINGLE_SEED if SINGLE_SEED in table.notes else "",
            "notes": [n for n in table.notes if n != SINGLE_SEED]}


def _status_context(cells: Cells) -> dict[str, Any]:
    present = {r.status for r in cells.rows}
    statuses = [s for s in STATUS_ORDER if s in present] + sorted(present - set(STATUS_ORDER))
    rows = []
    for v in cells.variants:
        mine = cells.select(variant=v)
        rows.append({"label": v, "colour": cells.colours[v],
                     "counts": [sum(r.status == s for r in mine) for s in statuses], "total": len(mine)})
    totals = [sum(r.status == s for r in cells.rows) for s in statuses]
    rank = {v: i for i, v in enumerate(cells.variants)}
    problems = sorted((r for r in cells.rows if r.status != CellStatus.FINISHED),
                      key=lambda r: (r.status, rank[r.variant], r.column))
    listed = [{"cell": r.cell, "variant": r.variant, "colour": cells.colours[r.variant], "column": r.column,
               "seed": r.seed, "status": r.status, "reason": r.reason or "",
               "status_colour": _STATUS_COLOURS.get(r.status, "#444")} for r in problems[:100]]
    return {"statuses": [{"name": s, "colour": _STATUS_COLOURS.get(s, "#444")} for s in statuses], "rows": rows,
            "totals": totals, "total": len(cells.rows), "problems": listed, "more": max(0, len(problems) - 100)}


def _sweep_context(cells: Cells) -> list[dict[str, Any]]:
    out = []
    for s in sorted(cells.sweeps, key=lambda r: r["start_time"] or 0, reverse=True)[:5]:
        started = (_dt.datetime.fromtimestamp(s["start_time"] / 1000).strftime("%Y-%m-%d %H:%M")
                   if s["start_time"] else "")
        out.append({"name": s["run_name"], "run_id": s["run_id"], "experiment": s["experiment"],
                    "status": s["tags"].get(Tag.STATUS, s["status"]), "started": started,
                    "spec_hash": s["tags"].get(Tag.SPEC_HASH, ""),
                    "commit": s["tags"].get(Tag.GIT_COMMIT, "")[:12],
                    "version": s["tags"].get(Tag.VERSION, "")})
    return out


def render_dashboard(spec: DashboardSpec, experiments: list[str], tracking_uri: str,
                     stats: dict[str, float] | None = None, store: RunStore | None = None, *,
                     interactive: bool | None = None, budgets: Sequence[Any] = ()) -> str:
    """The dashboard page as an HTML string (see :func:`build_dashboard`)."""
    from ablate import __version__

    interactive = _plotly.available() if interactive is None else interactive
    stats = stats if stats is not None else {}
    t0 = time.perf_counter()
    cells = load_cells(experiments, tracking_uri, spec, store=store)
    facets = cells.columns[:spec.max_facets]
    notes = list(cells.notes)
    if len(cells.columns) > len(facets):
        notes.append(f"plots show the first {len(facets)} of {len(cells.columns)} column groups "
                     f"(max_facets: {spec.max_facets}); the table shows all")
    hist = _histories(cells, spec)
    stats["read_s"] = time.perf_counter() - t0
    stats["cells"] = len(cells.rows)
    t1 = time.perf_counter()
    table = build_table(cells, spec.table)
    table.experiment = ", ".join(experiments)
    models = [build_figure(cells, hist, p, facets) for p in spec.plots] if not cells.empty and facets else []
    figures = [_figure(m, cells, interactive, i + 1) for i, m in enumerate(models)]
    stats["plots_s"] = time.perf_counter() - t1
    t2 = time.perf_counter()
    n_points = int(sum(len(h[0]) for per in hist.values() for h in per.values()))
    context = {
        "spec": spec, "experiments": experiments, "tracking_uri": tracking_uri, "version": __version__,
        "generated": _dt.datetime.now().strftime("%Y-%m-%d %H:%M"), "empty": cells.empty, "notes": notes,
        "n_cells": len(cells.rows), "variants": [{"label": v, "colour": cells.colours[v]} for v in cells.variants],
        "table": _table_context(table, cells) if not cells.empty else None,
        "status": _status_context(cells) if not cells.empty else None,
        "eval": eval_context(cells, spec.table.statuses) if not cells.empty else None,
        "anova": anova_context(factor_anova(cells, spec.table)) if not cells.empty else None,
        "figures": figures, "sweeps": _sweep_context(cells), "n_points": n_points,
        "budget": {"rows": budget_rows(budgets), "notes": imbalances(budgets)} if budgets else None,
        "backend": cells.store.backend,
        "plotly_js": _plotly.plotly_js() if any(f["plot"] for f in figures) else None,
    }
    html = _env().get_template("dashboard.html.j2").render(**context)
    stats["render_s"] = time.perf_counter() - t2
    return html


def build_dashboard(spec: str | Path | DashboardSpec | None = None,
                    experiment: str | list[str] | tuple[str, ...] | None = None,
                    tracking_uri: str | None = None, out_path: str | Path | None = None, *,
                    state_dir: str | Path | None = None, stats: dict[str, float] | None = None,
                    interactive: bool | None = None, budgets: Sequence[Any] = ()) -> Path:
    """Write the dashboard of ``experiment`` (a name or several) as one self-contained HTML file.

    ``spec``: a dashboard YAML path, a name in ``./dashboards``, or None for the default
    norm-ablation dashboard. ``tracking_uri`` None resolves as the CLI does (env, then SQLite in
    ``state_dir``). ``out_path`` None writes ``<state_dir>/dashboards/<experiment>-<spec>.html``.
    Raises :class:`ablate.errors.AblateError` for a missing experiment; an empty one gives a page
    that says so. ``stats`` (if given) receives cells, read_s, plots_s, render_s, total_s and bytes.
    ``interactive``: plotly.js plots (None: when the ``plotly`` package is installed) or, False,
    static SVG plots drawn with matplotlib and no script at all. ``budgets``: a search's spending per
    variant (``ablate.tune.read_budgets``), shown as its own table with any imbalance flagged.
    """
    t0 = time.perf_counter()
    dspec = load_dashboard_spec(spec)
    names = _experiments(dspec, experiment)
    sdir = Path(state_dir) if state_dir is not None else default_state_dir()
    uri = tracking_uri or resolve_tracking_uri(None, None, sdir)
    stats = stats if stats is not None else {}
    html = render_dashboard(dspec, names, uri, stats, interactive=interactive, budgets=budgets)
    stem = f"{safe_name('+'.join(names), 'dashboard')}-{safe_name(dspec.name, 'dashboard')}"
    out = Path(out_path) if out_path is not None else sdir / "dashboards" / f"{stem}.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(html, encoding="utf-8")
    stats["bytes"] = out.stat().st_size
    stats["total_s"] = time.perf_counter() - t0
    return out.resolve()


__all__ = ["build_dashboard", "render_dashboard"]
