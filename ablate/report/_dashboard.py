"""Build the self-contained HTML dashboard of an experiment.

    from ablate.report import build_dashboard
    path = build_dashboard("dashboards/norm-ablation.yaml", "quickstart",
                           "sqlite:////abs/.ablate/mlflow.db", "report.html")

One file, no network needed to view it: CSS inline, every plot an inline SVG, no JavaScript.
"""

from __future__ import annotations

import datetime as _dt
import math
import time
from pathlib import Path
from typing import Any

import jinja2

from ablate.naming import safe_name
from ablate.status import CellStatus
from ablate.track import RunStore, default_state_dir, resolve_tracking_uri

from ._data import Cells, load_cells, pick_sites, sites_of
from ._eval import eval_context
from ._plots import STAT_TITLES, depth_figure, lowprec_figure, metric_figure, metric_label, trace_figure
from ._spec import STATUS_ORDER, DashboardSpec, PlotSpec, load_dashboard_spec
from ._table import AblationTable, build_table, fmt, fmt_signed

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


def _needed_keys(cells: Cells, spec: DashboardSpec, facets: list[str]) -> list[str]:
    runs = list(cells.runs.values())
    keys: set[str] = set()
    for plot in spec.plots:
        if plot.kind == "trace":
            keys.update(f"feat/{s}/{plot.stat}" for _, s in pick_sites(sites_of(runs, plot.stat), plot.sites))
        elif plot.kind == "metric":
            keys.add(plot.key)
    return sorted(keys)


def _figure(cells: Cells, hist: dict[str, Any], plot: PlotSpec, facets: list[str]) -> dict[str, Any]:
    if plot.kind == "trace":
        svg, notes = trace_figure(cells, hist, plot, facets)
        title = plot.title or f"{STAT_TITLES[plot.stat]} vs training step"
        caption = ("Probe statistic of the residual stream on a fixed probe batch. Lines: across-seed "
                   + ("geometric mean" if plot.log_y else "mean") + "; shaded: min–max over seeds.")
    elif plot.kind == "depth":
        svg, notes = depth_figure(cells, plot, facets)
        title = plot.title or f"{STAT_TITLES[plot.stat]} vs depth at the last probe"
        caption = "Each site's value at the last probe step (finished cells; diverged cells dotted ×)."
    elif plot.kind == "metric":
        svg, notes = metric_figure(cells, hist, plot, facets)
        title = plot.title or f"{metric_label(plot.key)} vs training step"
        caption = "Lines: across-seed mean; shaded: min–max over seeds." + (
            f" Dashed: the mean of {plot.reference}." if plot.reference else "")
    else:
        svg, notes = lowprec_figure(cells, plot, facets)
        title = plot.title or "PSNR lost when the final model runs in low precision"
        caption = ("final/psnr − final/psnr_<precision> per finished cell; bar: mean, whisker: std over seeds. "
                   "Features beyond fp16's range (65504) overflow at inference.")
    return {"title": title, "svg": svg, "caption": caption, "notes": notes, "kind": plot.kind}


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
                out.append({"text": "—", "ci": "", "p": "", "n": 0, "sig": False, "sign": "", "delta": ""})
                continue
            lo, hi = pr.ci
            better = (pr.mean > 0) == (spec.goal == "max")
            out.append({
                "text": fmt_signed(pr.mean, spec.precision),
                "ci": "" if math.isnan(lo) else f"[{fmt(lo, spec.precision)}, {fmt(hi, spec.precision)}]",
                "p": "" if math.isnan(pr.p) else f"{pr.p:.3g}", "n": pr.n,
                "sig": not math.isnan(pr.p) and pr.p < 0.05,
                "sign": "" if pr.mean == 0 else ("better" if better else "worse"),
                "delta": repr(pr.mean),
            })
        paired.append({"label": row, "colour": cells.colours.get(row), "cells": out})
    return {"rows": rows, "columns": table.columns, "paired": paired, "has_test": table.has_test,
            "baseline": table.baseline, "notes": table.notes, "metric": spec.metric, "unit": spec.unit,
            "rows_field": spec.rows, "aggregate": spec.aggregate, "goal": spec.goal,
            "statuses": ", ".join(spec.statuses)}


def _status_context(cells: Cells) -> dict[str, Any]:
    frame = cells.frame
    statuses = [s for s in STATUS_ORDER if s in set(frame["status"])] + sorted(
        set(frame["status"]) - set(STATUS_ORDER))
    rows = []
    for v in cells.variants:
        sub = frame[frame["variant"] == v]
        rows.append({"label": v, "colour": cells.colours[v],
                     "counts": [int((sub["status"] == s).sum()) for s in statuses], "total": len(sub)})
    totals = [int((frame["status"] == s).sum()) for s in statuses]
    problems = frame[frame["status"] != CellStatus.FINISHED].sort_values(["status", "variant", "column"])
    listed = [{"cell": r["cell"], "variant": r["variant"], "colour": cells.colours[r["variant"]],
               "column": r["column"], "seed": r["seed"], "status": r["status"], "reason": r["reason"] or "",
               "status_colour": _STATUS_COLOURS.get(r["status"], "#444")}
              for _, r in problems.head(100).iterrows()]
    return {"statuses": [{"name": s, "colour": _STATUS_COLOURS.get(s, "#444")} for s in statuses], "rows": rows,
            "totals": totals, "total": len(frame), "problems": listed, "more": max(0, len(problems) - 100)}


def _sweep_context(cells: Cells) -> list[dict[str, Any]]:
    out = []
    for s in sorted(cells.sweeps, key=lambda r: r["start_time"] or 0, reverse=True)[:5]:
        started = (_dt.datetime.fromtimestamp(s["start_time"] / 1000).strftime("%Y-%m-%d %H:%M")
                   if s["start_time"] else "")
        out.append({"name": s["run_name"], "run_id": s["run_id"], "experiment": s["experiment"],
                    "status": s["tags"].get("ablate.status", s["status"]), "started": started,
                    "spec_hash": s["tags"].get("ablate.spec_hash", ""),
                    "commit": s["tags"].get("ablate.git_commit", "")[:12],
                    "version": s["tags"].get("ablate.version", "")})
    return out


def render_dashboard(spec: DashboardSpec, experiments: list[str], tracking_uri: str,
                     stats: dict[str, float] | None = None, store: RunStore | None = None) -> str:
    """The dashboard page as an HTML string (see :func:`build_dashboard`)."""
    from ablate import __version__

    stats = stats if stats is not None else {}
    t0 = time.perf_counter()
    cells = load_cells(experiments, tracking_uri, spec, store=store)
    facets = cells.columns[:spec.max_facets]
    notes = list(cells.notes)
    if len(cells.columns) > len(facets):
        notes.append(f"plots show the first {len(facets)} of {len(cells.columns)} column groups "
                     f"(max_facets: {spec.max_facets}); the table shows all")
    hist = cells.store.histories(list(cells.runs), keys=_needed_keys(cells, spec, facets)) if not cells.empty else {}
    stats["read_s"] = time.perf_counter() - t0
    stats["cells"] = len(cells.frame)
    t1 = time.perf_counter()
    table = build_table(cells, spec.table)
    table.experiment = ", ".join(experiments)
    figures = [_figure(cells, hist, p, facets) for p in spec.plots] if not cells.empty and facets else []
    stats["plots_s"] = time.perf_counter() - t1
    t2 = time.perf_counter()
    n_points = int(sum(len(h[0]) for per in hist.values() for h in per.values()))
    context = {
        "spec": spec, "experiments": experiments, "tracking_uri": tracking_uri, "version": __version__,
        "generated": _dt.datetime.now().strftime("%Y-%m-%d %H:%M"), "empty": cells.empty, "notes": notes,
        "n_cells": len(cells.frame), "variants": [{"label": v, "colour": cells.colours[v]} for v in cells.variants],
        "table": _table_context(table, cells) if not cells.empty else None,
        "status": _status_context(cells) if not cells.empty else None,
        "eval": eval_context(cells, spec.table.statuses) if not cells.empty else None,
        "figures": figures, "sweeps": _sweep_context(cells), "n_points": n_points,
        "backend": cells.store.backend,
    }
    html = _env().get_template("dashboard.html.j2").render(**context)
    stats["render_s"] = time.perf_counter() - t2
    return html


def build_dashboard(spec: str | Path | DashboardSpec | None = None,
                    experiment: str | list[str] | tuple[str, ...] | None = None,
                    tracking_uri: str | None = None, out_path: str | Path | None = None, *,
                    state_dir: str | Path | None = None, stats: dict[str, float] | None = None) -> Path:
    """Write the dashboard of ``experiment`` (a name or several) as one self-contained HTML file.

    ``spec``: a dashboard YAML path, a name in ``./dashboards``, or None for the default
    norm-ablation dashboard. ``tracking_uri`` None resolves as the CLI does (env, then SQLite in
    ``state_dir``). ``out_path`` None writes ``<state_dir>/dashboards/<experiment>-<spec>.html``.
    Raises :class:`ablate.errors.AblateError` for a missing experiment; an empty one gives a page
    that says so. ``stats`` (if given) receives cells, read_s, plots_s, render_s, total_s and bytes.
    """
    t0 = time.perf_counter()
    dspec = load_dashboard_spec(spec)
    names = _experiments(dspec, experiment)
    sdir = Path(state_dir) if state_dir is not None else default_state_dir()
    uri = tracking_uri or resolve_tracking_uri(None, None, sdir)
    stats = stats if stats is not None else {}
    html = render_dashboard(dspec, names, uri, stats)
    stem = f"{safe_name('+'.join(names), 'dashboard')}-{safe_name(dspec.name, 'dashboard')}"
    out = Path(out_path) if out_path is not None else sdir / "dashboards" / f"{stem}.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(html, encoding="utf-8")
    stats["bytes"] = out.stat().st_size
    stats["total_s"] = time.perf_counter() - t0
    return out.resolve()


def ablation_table(experiment: str | list[str], tracking_uri: str | None = None,
                   spec: str | Path | DashboardSpec | None = None, *, state_dir: str | Path | None = None,
                   metric: str | None = None, baseline: str | None = None) -> AblationTable:
    """The ablation table alone (for ``ablate report``): ``.to_markdown()``, ``.to_csv()``, ``.to_latex()``."""
    import dataclasses

    dspec = load_dashboard_spec(spec)
    table_spec = dspec.table
    if metric:
        table_spec = dataclasses.replace(table_spec, metric=metric,
                                         unit=table_spec.unit if metric == dspec.table.metric else "")
    if baseline:
        table_spec = dataclasses.replace(table_spec, baseline=baseline)
    dspec = dataclasses.replace(dspec, table=table_spec)
    names = [experiment] if isinstance(experiment, str) else list(experiment)
    sdir = Path(state_dir) if state_dir is not None else default_state_dir()
    uri = tracking_uri or resolve_tracking_uri(None, None, sdir)
    cells = load_cells(names, uri, dspec)
    table = build_table(cells, table_spec)
    table.experiment = ", ".join(names)
    if cells.empty:
        table.notes.insert(0, f"experiment {table.experiment!r} has no cell runs yet")
    return table


__all__ = ["ablation_table", "build_dashboard", "render_dashboard"]
