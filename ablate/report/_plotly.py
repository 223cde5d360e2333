"""The interactive renderer: a :class:`~ablate.report._figures.FigureModel` as a plotly.js figure.

    from ablate.report._figures import trace_figure
    from ablate.report._plotly import figure_json, plotly_js
    fig = figure_json(trace_figure(cells, histories, PlotSpec("trace", stat="msq"), facets), cells)

Plain plotly.js figure JSON (``{"data": [...], "layout": {...}, "config": {...}}``), built without the
plotly Python API (its validation costs seconds on a large dashboard); only ``plotly.min.js`` comes
from the ``plotly`` package, inlined once per page, so the page works offline. Hovering a line shows
the variant, step, value and range over seeds; clicking a variant in the legend hides or shows it in
every panel of the figure; dragging zooms, double-clicking resets.
"""

from __future__ import annotations

import importlib.util
import json
import math
from typing import Any

import numpy as np

from ._data import Cells
from ._figures import FigureModel, Panel

PAGE_PX = 1180  # the width figures are laid out for (the page's sections); they resize with the window
_PANEL_PX = {"trace": 250, "depth": 300, "metric": 280, "lowprec": 280}
_GAP_PX = 78  # between panel rows: the x-axis title of one row and the panel title of the next
_BOTTOM_PX = 64


def available() -> bool:
    """Whether the ``plotly`` package (for plotly.js) is installed."""
    return importlib.util.find_spec("plotly") is not None


def plotly_js() -> str:
    """plotly.js, minified, to inline in a ``<script>`` element."""
    from plotly.offline import get_plotlyjs

    return str(get_plotlyjs()).replace("</script", "<\\/script")  # cannot end the element early


def _num(values: Any) -> list[float | None]:
    """JSON numbers with 6 significant digits (a plot needs no more); NaN and ±inf become null (a gap)."""
    return [float(f"{v:.6g}") if math.isfinite(v) else None for v in np.asarray(values, dtype=float).tolist()]


def _rgba(colour: str, alpha: float) -> str:
    r, g, b = (int(colour[i:i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


_MODEBAR_PX = 240  # plotly's tool buttons, top right: the legend stays left of them


def _top_px(model: FigureModel, legend: list[str]) -> int:
    """Room above the panels for the legend (rows of ~7 px per character) and the first panel titles."""
    entries = sum(len(label) * 7 + 46 for label in legend)
    title_lines = max((p.title.count("\n") + 1 for p in model.panels if p.title), default=0)
    return 16 + 24 * max(1, math.ceil(entries / (PAGE_PX - _MODEBAR_PX))) + 18 * title_lines


def _wrap(text: str, width: int = 34) -> str:
    """An axis title on two lines when it is longer than ``width`` (a panel is ~250 px tall)."""
    if len(text) <= width or " " not in text:
        return text
    cut = text.rfind(" ", 0, len(text) // 2 + 6)
    return text[:cut] + "<br>" + text[cut + 1:] if cut > 0 else text


def _layout_grid(model: FigureModel, top_px: int) -> tuple[int, int, int]:
    """(columns, rows, height px) of the panel grid."""
    n = len(model.panels)
    width_px = model.size[0] * 96  # the static renderer's panel width, in CSS pixels
    ncols = max(1, min(model.columns or 1, n, int((PAGE_PX + 60) // (width_px + 60))))
    nrows = math.ceil(n / ncols)
    panel = _PANEL_PX[model.kind]
    return ncols, nrows, top_px + _BOTTOM_PX + nrows * panel + (nrows - 1) * _GAP_PX


def _line_traces(panel: Panel, cells: Cells, axes: dict[str, str], shown: set[str]) -> list[dict[str, Any]]:
    traces: list[dict[str, Any]] = []
    for line in panel.lines:
        colour = cells.colours[line.variant]
        x = _num(line.x)
        common = {"type": "scatter", "x": x, "legendgroup": line.variant, **axes}
        if line.diverged is not None:
            traces.append({**common, "y": _num(line.y), "mode": "lines", "name": f"{line.variant} (diverged)",
                           "showlegend": False, "line": {"color": colour, "width": 1.2, "dash": "dash"},
                           "hovertemplate": f"{line.variant} · cell {line.diverged} (diverged)<br>step %{{x}}: "
                                            "%{y:.4g}<extra></extra>"})
            if line.last is not None:
                traces.append({**common, "x": _num([line.last[0]]), "y": _num([line.last[1]]), "mode": "markers",
                               "name": f"{line.variant} (diverged)", "showlegend": False,
                               "marker": {"symbol": "x-thin", "size": 11, "line": {"width": 2.5, "color": colour}},
                               "hovertemplate": f"{line.variant} · cell {line.diverged}: last finite value<br>"
                                                "step %{x}: %{y:.4g}<extra></extra>"})
            continue
        if line.low is not None and line.high is not None:
            traces.append({**common, "y": _num(line.low), "mode": "lines", "line": {"width": 0},
                           "showlegend": False, "hoverinfo": "skip", "name": line.variant})
            traces.append({**common, "y": _num(line.high), "mode": "lines", "line": {"width": 0},
                           "fill": "tonexty", "fillcolor": _rgba(colour, 0.15), "showlegend": False,
                           "hoverinfo": "skip", "name": line.variant})
            hover = (f"{line.variant}: %{{y:.4g}} (range %{{customdata[0]:.4g}}–%{{customdata[1]:.4g}}, "
                     f"{line.cells} cells)<extra></extra>")
            extra: dict[str, Any] = {"customdata": [[a, b] for a, b in zip(_num(line.low), _num(line.high))]}
        else:
            hover = f"{line.variant}: %{{y:.4g}}<extra></extra>"
            extra = {}
        traces.append({**common, **extra, "y": _num(line.y), "mode": "lines", "name": line.variant,
                       "showlegend": line.variant not in shown, "line": {"color": colour, "width": 2},
                       "hovertemplate": hover})
        shown.add(line.variant)
    return traces


def _point_traces(panel: Panel, cells: Cells, axes: dict[str, str], shown: set[str]) -> list[dict[str, Any]]:
    traces: list[dict[str, Any]] = []
    sites = panel.categories
    for pts in panel.points:
        colour = cells.colours[pts.variant]
        common = {"type": "scatter", "x": _num(pts.x), "y": _num(pts.y), "legendgroup": pts.variant,
                  "text": sites, **axes}
        if pts.diverged is not None:
            traces.append({**common, "mode": "lines+markers", "name": f"{pts.variant} (diverged)", "showlegend": False,
                           "line": {"color": colour, "width": 1, "dash": "dot"},
                           "marker": {"symbol": "x-thin", "size": 9, "line": {"width": 2, "color": colour}},
                           "hovertemplate": f"{pts.variant} · cell {pts.diverged} (diverged)<br>%{{text}}: "
                                            "%{y:.4g}<extra></extra>"})
            continue
        assert pts.low is not None and pts.high is not None
        traces.append({**common, "mode": "lines+markers", "name": pts.variant,
                       "showlegend": pts.variant not in shown, "line": {"color": colour, "width": 1.5},
                       "marker": {"color": colour, "size": 7},
                       "error_y": {"type": "data", "symmetric": False, "array": _num((pts.high - pts.y).clip(0)),
                                   "arrayminus": _num((pts.y - pts.low).clip(0)), "color": colour, "width": 3},
                       "customdata": [[a, b] for a, b in zip(_num(pts.low), _num(pts.high))],
                       "hovertemplate": f"{pts.variant} · %{{text}}: %{{y:.4g}} (range %{{customdata[0]:.4g}}–"
                                        f"%{{customdata[1]:.4g}}, {pts.cells} cells)<extra></extra>"})
        shown.add(pts.variant)
    return traces


def _bar_traces(panel: Panel, cells: Cells, axes: dict[str, str], shown: set[str]) -> list[dict[str, Any]]:
    traces: list[dict[str, Any]] = []
    for bar in panel.bars:
        colour = cells.colours[bar.variant]
        traces.append({"type": "bar", "x": _num([bar.x]), "y": _num([bar.mean]), "width": [bar.width * 0.92],
                       "name": bar.variant, "legendgroup": bar.variant,
                       "showlegend": bar.first and bar.variant not in shown,
                       "marker": {"color": colour, "opacity": 1.0 if bar.first else 0.55,
                                  "pattern": {"shape": "" if bar.first else "/", "fgcolor": "white"}},
                       "error_y": {"type": "data", "array": _num([bar.err]), "color": "#444", "width": 3},
                       "text": [f"{bar.mean:.2f}"], "textposition": "outside", "cliponaxis": False,
                       "hovertemplate": f"{bar.variant}, {bar.precision} inference: %{{y:.3f}} dB "
                                        f"(std {bar.err:.3f}, {bar.cells} cells)<extra></extra>", **axes})
        if bar.first:
            shown.add(bar.variant)
    return traces


def _axes(model: FigureModel, i: int, ncols: int, nrows: int,
          plot_h: int) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
    """(x axis, y axis, title annotations) of panel ``i``: domains from the grid, titles on the outer
    panels of a trace figure (its panels share axes) and on every other panel."""
    panel = model.panels[i]
    panel_h = _PANEL_PX[model.kind]
    row, col = divmod(i, ncols)
    n = "" if i == 0 else str(i + 1)
    xgap = 0.07 if ncols > 1 else 0.0
    width = (1 - xgap * (ncols - 1)) / ncols
    top = 1 - row * (panel_h + _GAP_PX) / plot_h
    x0 = col * (width + xgap)
    xaxis: dict[str, Any] = {"domain": [x0, x0 + width], "anchor": f"y{n}"}
    yaxis: dict[str, Any] = {"domain": [max(0.0, top - panel_h / plot_h), top], "anchor": f"x{n}",
                             "exponentformat": "power"}
    if panel.log_y and (panel.lines or panel.points):
        yaxis["type"] = "log"
    if panel.categories:
        xaxis.update(tickmode="array", tickvals=list(range(len(panel.categories))), ticktext=panel.categories,
                     tickangle=-35, range=[-0.6, len(panel.categories) - 0.4])
    if model.kind != "trace" or row == nrows - 1 or i + ncols >= len(model.panels):
        xaxis["title"] = {"text": panel.xlabel, "standoff": 6}
    if model.kind != "trace" or col == 0:
        yaxis["title"] = {"text": _wrap(panel.ylabel), "standoff": 4}
    for axis in (xaxis, yaxis):
        axis.update(zeroline=False, automargin=True, showgrid=True, gridcolor="#e6e9ef", linecolor="#9aa3b2",
                    showline=True, ticks="outside")
    notes: list[dict[str, Any]] = []
    if panel.title:
        notes.append({"text": panel.title.replace("\n", "<br>"), "xref": "paper", "yref": "paper",
                      "x": x0 + width / 2, "y": top, "yanchor": "bottom", "xanchor": "center", "showarrow": False,
                      "font": {"size": 13}})
    if panel.empty:
        notes.append({"text": "no data", "xref": f"x{n} domain", "yref": f"y{n} domain", "x": 0.5, "y": 0.5,
                      "showarrow": False, "font": {"color": "#888"}})
    return xaxis, yaxis, notes


def _reference_trace(panel: Panel, axes: dict[str, str], shown: set[str]) -> list[dict[str, Any]]:
    """The panel's dashed reference level (e.g. the input's PSNR) across its lines' steps."""
    xs = [float(v) for line in panel.lines for v in (line.x[0], line.x[-1]) if len(line.x)]
    if panel.reference is None or not xs:
        return []
    trace = {"type": "scatter", "mode": "lines", "x": [min(xs), max(xs)], "y": _num([panel.reference[0]] * 2),
             "name": panel.reference[1], "legendgroup": "reference", "showlegend": "reference" not in shown,
             "line": {"color": "#595959", "dash": "dash", "width": 1.5},
             "hovertemplate": f"{panel.reference[1]}: %{{y:.4g}}<extra></extra>", **axes}
    shown.add("reference")
    return [trace]


def figure_json(model: FigureModel, cells: Cells) -> dict[str, Any] | None:
    """The plotly.js figure (``data``, ``layout``, ``config``) of ``model``; None when it has no panels."""
    if not model.panels:
        return None
    legend = list(cells.variants) + [p.reference[1] for p in model.panels if p.reference is not None][:1]
    top_px = _top_px(model, legend)
    ncols, nrows, height = _layout_grid(model, top_px)
    data: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    layout: dict[str, Any] = {}
    shown: set[str] = set()  # variants already in the legend: one entry each, toggling every panel
    for i, panel in enumerate(model.panels):
        n = "" if i == 0 else str(i + 1)
        layout[f"xaxis{n}"], layout[f"yaxis{n}"], notes = _axes(model, i, ncols, nrows, height - top_px - _BOTTOM_PX)
        annotations += notes
        axes = {"xaxis": f"x{n}", "yaxis": f"y{n}"}
        data += _line_traces(panel, cells, axes, shown)
        data += _point_traces(panel, cells, axes, shown)
        data += _bar_traces(panel, cells, axes, shown)
        data += _reference_trace(panel, axes, shown)
    layout.update({
        "height": height, "margin": {"t": top_px, "b": _BOTTOM_PX, "l": 70, "r": 20},
        "annotations": annotations, "showlegend": True,
        "legend": {"orientation": "h", "x": 0, "xanchor": "left", "y": 1, "yanchor": "top",
                   "yref": "container", "entrywidthmode": "pixels", "groupclick": "togglegroup"},
        "hovermode": "x unified" if model.kind in ("trace", "metric") else "closest",
        "barmode": "overlay", "plot_bgcolor": "white", "paper_bgcolor": "white",
        "font": {"family": "system-ui, -apple-system, Segoe UI, Roboto, DejaVu Sans, Arial, sans-serif",
                 "size": 12},
    })
    config = {"responsive": True, "displaylogo": False, "modeBarButtonsToRemove": ["select2d", "lasso2d"],
              "toImageButtonOptions": {"format": "svg", "filename": model.kind}}
    return {"data": data, "layout": layout, "config": config}


def figure_script(fig: dict[str, Any]) -> str:
    """The figure as JSON to put inside ``<script type="application/json">`` (``</`` escaped)."""
    return json.dumps(fig, separators=(",", ":"), allow_nan=False).replace("</", "<\\/")
