"""The static renderer: a :class:`~ablate.report._figures.FigureModel` as an inline SVG (matplotlib).

    from ablate.report._figures import trace_figure
    from ablate.report._plots import to_svg_figure
    svg = to_svg_figure(trace_figure(cells, histories, PlotSpec("trace", stat="msq"), facets), cells)

The dashboard's fallback when plotly is not installed (or ``ablate dashboard --static``): a page
without JavaScript. Every figure colours a variant the same way (``cells.colours``), labels its
axes with units and has a legend. Figures are built on their own Agg canvas, never through pyplot:
importing or using ablate leaves the caller's matplotlib backend and figure list alone.
"""

from __future__ import annotations

import io
import math
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter

from ._data import Cells
from ._figures import FigureModel, Panel

_STYLE: dict[str, Any] = {
    "svg.fonttype": "none",  # text stays text: smaller files, selectable, browser fonts
    "font.size": 9,
    "axes.titlesize": 9.5,
    "axes.labelsize": 9,
    "legend.fontsize": 8,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "figure.dpi": 100,
    # a fixed title position: matplotlib otherwise measures every tick label of every panel to
    # lift titles above them (half of the SVG time of a 40-panel dashboard)
    "axes.titley": 1.02,
}
PAGE_WIDTH = 12.2  # inches (96 CSS px each) inside the page's sections: wider figures would shrink their text


@contextmanager
def _style() -> Iterator[None]:
    with matplotlib.rc_context(_STYLE), warnings.catch_warnings():  # type: ignore[arg-type]
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def _grid(n_panels: int, max_cols: int, w: float, h: float, *, top: float = 0.7, bottom: float = 0.6,
          left: float = 1.05, right: float = 0.25, hgap: float = 0.85, wgap: float = 0.8,
          sharex: bool = False) -> tuple[Figure, Any]:
    """A grid of ``w``×``h``-inch panels, as many columns (≤ ``max_cols``) as fit the page width,
    with fixed margins in inches (room for the legend on top).

    Matplotlib's constrained layout computes the same thing but took ~8 s for a 12-panel log-scale
    figure here; fixed margins take milliseconds.
    """
    fit = int((PAGE_WIDTH - left - right + wgap) // (w + wgap))
    ncols = max(1, min(max_cols, n_panels, fit))
    nrows = math.ceil(n_panels / ncols)
    width = left + right + ncols * w + (ncols - 1) * wgap
    height = top + bottom + nrows * h + (nrows - 1) * hgap
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False, sharex=sharex)
    fig.subplots_adjust(left=left / width, right=1 - right / width, bottom=bottom / height, top=1 - top / height,
                        wspace=wgap / w, hspace=hgap / h)
    return fig, axes


def to_svg(fig: Figure) -> str:
    """The figure as an ``<svg>`` element (no XML prolog), scaled by CSS to its container."""
    buf = io.StringIO()
    fig.savefig(buf, format="svg")  # fixed margins (see _grid): "tight" would cost a second draw
    text = buf.getvalue()
    text = text[text.index("<svg"):]
    return re.sub(r"<svg ", '<svg role="img" ', text, count=1)


def _readable_log_ticks(ax: Any) -> None:
    """Within less than a decade a log axis labels its minor ticks as 1.7×10⁰; print them plainly."""
    lo, hi = ax.get_ylim()
    if lo > 0 and hi / lo < 30:
        plain = FuncFormatter(lambda v, _: f"{v:.3g}")
        ax.yaxis.set_major_formatter(plain)
        ax.yaxis.set_minor_formatter(plain)


def _draw_panel(ax: Any, panel: Panel, cells: Cells) -> None:
    for line in panel.lines:
        colour = cells.colours[line.variant]
        if line.diverged is None:
            ax.plot(line.x, line.y, color=colour, lw=1.6, label=line.variant)
            if line.low is not None and line.high is not None:
                ax.fill_between(line.x, line.low, line.high, color=colour, alpha=0.15, lw=0)
        else:
            ax.plot(line.x, line.y, color=colour, lw=1.0, ls="--", alpha=0.85)
            if line.last:
                ax.plot(*line.last, marker="x", ms=7, mew=2, color=colour, ls="none")
    for pts in panel.points:
        colour = cells.colours[pts.variant]
        if pts.diverged is None and pts.low is not None and pts.high is not None:
            ax.errorbar(pts.x, pts.y, yerr=[(pts.y - pts.low).clip(0), (pts.high - pts.y).clip(0)], color=colour,
                        marker="o", ms=4, lw=1.5, capsize=2, label=pts.variant)
        else:
            ax.plot(pts.x, pts.y, color=colour, marker="x", ms=6, mew=1.8, ls=":", lw=1)
    for bar in panel.bars:
        ax.bar(bar.x, bar.mean, bar.width * 0.92, yerr=bar.err, capsize=2, color=cells.colours[bar.variant],
               alpha=1.0 if bar.first else 0.55, hatch=None if bar.first else "//", edgecolor="white")
        ax.annotate(f"{bar.mean:.2f}", (bar.x, max(bar.mean, 0) + bar.err), ha="center", va="bottom", fontsize=7,
                    xytext=(0, 2), textcoords="offset points")
    if panel.bars:
        ax.axhline(0, color="0.3", lw=0.8)
    if panel.reference is not None:
        ax.axhline(panel.reference[0], color="0.35", ls="--", lw=1.2)
    if panel.log_y and (panel.lines or panel.points):
        ax.set_yscale("log")
        _readable_log_ticks(ax)
    if panel.categories:
        rotation, align = (20, "right") if panel.bars else (45, "right")
        ax.set_xticks(range(len(panel.categories)), panel.categories, rotation=rotation, ha=align)
    if panel.empty:
        ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center", va="center", color="0.5")
    if panel.title:
        ax.set_title(panel.title)


def _legend(fig: Figure, model: FigureModel, cells: Cells) -> None:
    if model.kind == "lowprec":
        handles: list[Any] = [Patch(facecolor="0.45", label=f"{model.precisions[0]} inference")]
        handles += [Patch(facecolor="0.45", alpha=0.55, hatch="//", edgecolor="white", label=f"{p} inference")
                    for p in model.precisions[1:]]
        fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 1.0), ncol=len(handles), frameon=False)
        return
    handles = [Line2D([], [], color=cells.colours[v], lw=2, label=v) for v in cells.variants]
    if model.band:
        handles.append(Patch(color="0.6", alpha=0.3, label="range over seeds"))
    if model.diverged:
        handles.append(Line2D([], [], color="0.3", marker="x", mew=2, ls="--", lw=1, label="diverged cell (× last value)"))
    if model.kind == "depth":
        handles.append(Line2D([], [], color="0.4", marker="o", ms=4, label="centre, bars: range over seeds"))
    reference = next((p.reference for p in model.panels if p.reference is not None), None)
    if reference is not None:
        handles.append(Line2D([], [], color="0.35", ls="--", lw=1.2, label=reference[1]))
    # as many entries per row as fit the figure (~1.7 in each), so a one-panel figure's legend is not clipped
    ncol = max(1, min(len(handles), 8, int(fig.get_figwidth() / 1.7)))
    fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 1.0), ncol=ncol, frameon=False)
    rows = math.ceil(len(handles) / ncol)
    if rows > 1:  # many variants: a taller legend, so lower the panels below it
        fig.subplots_adjust(top=fig.subplotpars.top - (rows - 1) * 0.22 / fig.get_figheight())


def to_svg_figure(model: FigureModel, cells: Cells) -> str | None:
    """The figure drawn with matplotlib as an inline ``<svg>`` (None when it has no panels)."""
    if not model.panels:
        return None
    w, h = model.size
    kw: dict[str, Any] = {
        "trace": {"wgap": 0.75, "hgap": 1.0 if model.facets > 1 else 0.8, "sharex": True},
        "depth": {"bottom": 1.1, "hgap": 1.5},
        "metric": {"hgap": 1.0},
        "lowprec": {"bottom": 1.0, "hgap": 1.4},
    }[model.kind]
    with _style():
        fig, axes = _grid(len(model.panels), model.columns, w, h, **kw)
        for ax, panel in zip(axes.flat, model.panels):
            _draw_panel(ax, panel, cells)
        for ax in axes.flat[len(model.panels):]:
            ax.set_visible(False)
        if model.kind == "trace":  # shared axes: labels on the outer panels only
            for ax in axes[:, 0]:
                ax.set_ylabel(model.panels[0].ylabel)
            for ax in axes[-1, :]:
                ax.set_xlabel(model.panels[0].xlabel)
        else:
            for ax, panel in zip(axes.flat, model.panels):
                ax.set_xlabel(panel.xlabel)
                ax.set_ylabel(panel.ylabel)
        _legend(fig, model, cells)
        return to_svg(fig)
