"""Dashboard figures, rendered with matplotlib to inline SVG strings.

    from ablate.report._plots import trace_figure
    svg, notes = trace_figure(cells, histories, PlotSpec("trace", stat="msq"), facets)

Every figure colours a variant the same way (``cells.colours``), labels its axes with units and
has a legend. Per-step lines are the across-seed centre (geometric mean on log axes, mean
otherwise) with the min–max range over seeds shaded; a diverged cell's last probe is marked ×.
Figures are built on their own Agg canvas, never through pyplot: importing or using ablate leaves
the caller's matplotlib backend and figure list alone.
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
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter

from ablate.status import CellStatus

from ._data import Cells, pick_sites, sites_of
from ._spec import PlotSpec

History = tuple[np.ndarray, np.ndarray]
MAX_POINTS = 200  # points per drawn line: ~1 per 1.5 px of a panel; more only grows the SVG

STAT_LABELS = {
    "msq": "feature magnitude, mean of x²",
    "maxabs": "max |x| over the feature map",
    "entropy": "channel entropy (nats)",
    "top1": "top channel's share of energy",
}
STAT_TITLES = {"msq": "Feature magnitude", "maxabs": "Largest feature value", "entropy": "Channel entropy",
               "top1": "Dominant-channel energy share"}
METRIC_LABELS = {"val/psnr": "validation PSNR (dB)", "val/ssim": "validation SSIM", "train/loss": "training loss",
                 "train/lr": "learning rate"}
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
}


@contextmanager
def _style() -> Iterator[None]:
    with matplotlib.rc_context(_STYLE), warnings.catch_warnings():  # type: ignore[arg-type]
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns of the seed matrix
        yield


PAGE_WIDTH = 12.2  # inches (96 CSS px each) inside the page's sections: wider figures would shrink their text


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


def metric_label(key: str) -> str:
    return METRIC_LABELS.get(key, key)


def _facet_cells(cells: Cells, facets: list[str]) -> list[tuple[str, Any]]:
    frame = cells.frame
    return [(f, frame[frame["column"] == f]) for f in facets]


def _aggregate(series: list[History], log: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(steps, centre, low, high) over cells: geometric mean on log axes, else the mean."""
    steps = np.unique(np.concatenate([s for s, _ in series]))
    grid = np.full((len(series), len(steps)), np.nan)
    for i, (s, v) in enumerate(series):
        grid[i, np.searchsorted(steps, s)] = v
    grid[~np.isfinite(grid)] = np.nan
    if log:
        grid[grid <= 0] = np.nan
        centre = np.exp(np.nanmean(np.log(grid), axis=0))
    else:
        centre = np.nanmean(grid, axis=0)
    low, high = np.nanmin(grid, axis=0), np.nanmax(grid, axis=0)
    if len(steps) > MAX_POINTS:
        keep = np.unique(np.linspace(0, len(steps) - 1, MAX_POINTS).round().astype(int))
        steps, centre, low, high = steps[keep], centre[keep], low[keep], high[keep]
    return steps, centre, low, high


def _last_finite(hist: History, log: bool) -> tuple[float, float] | None:
    steps, values = hist
    ok = np.isfinite(values) & ((values > 0) if log else True)
    if not ok.any():
        return None
    i = int(np.flatnonzero(ok)[-1])
    return float(steps[i]), float(values[i])


def _variant_lines(ax: Any, cells: Cells, group: Any, histories: dict[str, dict[str, History]], key: str,
                   log: bool) -> bool:
    """Per variant: the centre line and range band of its cells that did not diverge, and each
    diverged cell on its own (thin, dashed) ending in × — so a blow-up is seen, not averaged in."""
    drew = False
    for variant in cells.variants:
        sub = group[group["variant"] == variant]
        colour = cells.colours[variant]
        regular = sub[sub["status"] != CellStatus.DIVERGED]
        found = [histories.get(rid, {}).get(key) for rid in regular["run_id"]]
        series = [h for h in found if h is not None and len(h[0])]
        if series:
            steps, centre, low, high = _aggregate(series, log)
            ax.plot(steps, centre, color=colour, lw=1.6, label=variant)
            if len(series) > 1:
                ax.fill_between(steps, low, high, color=colour, alpha=0.15, lw=0)
            drew = True
        for rid in sub.loc[sub["status"] == CellStatus.DIVERGED, "run_id"]:
            hist = histories.get(rid, {}).get(key)
            if hist is None or not len(hist[0]):
                continue
            steps, centre, _, _ = _aggregate([hist], log)
            ax.plot(steps, centre, color=colour, lw=1.0, ls="--", alpha=0.85)
            last = _last_finite(hist, log)
            if last:
                ax.plot(*last, marker="x", ms=7, mew=2, color=colour, ls="none")
            drew = True
    if log and drew:
        ax.set_yscale("log")
        _readable_log_ticks(ax)
    return drew


def _readable_log_ticks(ax: Any) -> None:
    """Within less than a decade a log axis labels its minor ticks as 1.7×10⁰; print them plainly."""
    lo, hi = ax.get_ylim()
    if lo > 0 and hi / lo < 30:
        plain = FuncFormatter(lambda v, _: f"{v:.3g}")
        ax.yaxis.set_major_formatter(plain)
        ax.yaxis.set_minor_formatter(plain)


def _legend(fig: Figure, cells: Cells, group_has: dict[str, bool], extra: list[Any] | None = None) -> None:
    handles: list[Any] = [Line2D([], [], color=cells.colours[v], lw=2, label=v) for v in cells.variants]
    if group_has.get("band"):
        handles.append(Patch(color="0.6", alpha=0.3, label="range over seeds"))
    if group_has.get("diverged"):
        handles.append(Line2D([], [], color="0.3", marker="x", mew=2, ls="--", lw=1, label="diverged cell (× last value)"))
    handles.extend(extra or [])
    fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 1.0), ncol=min(len(handles), 8),
               frameon=False)
    rows = math.ceil(len(handles) / 8)
    if rows > 1:  # many variants: a taller legend, so lower the panels below it
        fig.subplots_adjust(top=fig.subplotpars.top - (rows - 1) * 0.22 / fig.get_figheight())


def _legend_flags(cells: Cells) -> dict[str, bool]:
    frame = cells.frame
    ok = frame[frame["status"] != CellStatus.DIVERGED] if len(frame) else frame
    band = bool(len(ok)) and bool((ok.groupby(["variant", "column"]).size() > 1).any())
    return {"band": band, "diverged": bool((frame["status"] == CellStatus.DIVERGED).any()) if len(frame) else False}


def trace_figure(cells: Cells, histories: dict[str, dict[str, History]], plot: PlotSpec,
                 facets: list[str]) -> tuple[str | None, list[str]]:
    """A probe statistic vs training step: one panel per picked site (columns) and facet (rows)."""
    available = sites_of(list(cells.runs.values()), plot.stat)
    picked = pick_sites(available, plot.sites)
    if not picked:
        return None, [f"no probe traces feat/<site>/{plot.stat} were logged"]
    log = plot.log_y
    panels = [(f, lbl, site) for f in facets for lbl, site in picked]
    with _style():
        fig, axes = _grid(len(panels), len(picked), 3.1, 2.5, wgap=0.75, hgap=1.0 if len(facets) > 1 else 0.8,
                          sharex=True)
        groups = dict(_facet_cells(cells, facets))
        for ax, (facet, label, site) in zip(axes.flat, panels):
            drew = _variant_lines(ax, cells, groups[facet], histories, f"feat/{site}/{plot.stat}", log)
            ax.set_title(label + (f"\n{facet}" if len(facets) > 1 else ""))
            if not drew:
                ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center", va="center", color="0.5")
        for ax in axes.flat[len(panels):]:
            ax.set_visible(False)
        for ax in axes[:, 0]:
            ax.set_ylabel(STAT_LABELS[plot.stat] + (" (log)" if log else ""))
        for ax in axes[-1, :]:
            ax.set_xlabel("training step")
        _legend(fig, cells, _legend_flags(cells))
        return to_svg(fig), []


def depth_figure(cells: Cells, plot: PlotSpec, facets: list[str]) -> tuple[str | None, list[str]]:
    """The last probed value of a statistic at every site, shallow → deep (one panel per facet)."""
    sites = sites_of(list(cells.runs.values()), plot.stat)
    if not sites:
        return None, [f"no probe traces feat/<site>/{plot.stat} were logged"]
    log = plot.log_y
    key = [f"feat/{s}/{plot.stat}" for s in sites]
    x = np.arange(len(sites))
    with _style():
        fig, axes = _grid(len(facets), 2, max(4.6, 0.45 * len(sites) + 1.0), 3.0, bottom=1.1, hgap=1.5)
        for ax, (facet, group) in zip(axes.flat, _facet_cells(cells, facets)):
            offsets = np.linspace(-0.15, 0.15, max(len(cells.variants), 1))
            for off, variant in zip(offsets, cells.variants):
                sub = group[group["variant"] == variant]
                colour = cells.colours[variant]
                fin = sub[sub["status"] != CellStatus.DIVERGED]
                values = np.array([[cells.runs[r]["metrics"].get(k, np.nan) for k in key] for r in fin["run_id"]],
                                  dtype=float).reshape(len(fin), len(key))
                values[~np.isfinite(values)] = np.nan
                if log:
                    values[values <= 0] = np.nan
                if len(fin) and np.isfinite(values).any():
                    centre = (np.exp(np.nanmean(np.log(values), axis=0)) if log else np.nanmean(values, axis=0))
                    lo, hi = np.nanmin(values, axis=0), np.nanmax(values, axis=0)
                    ax.errorbar(x + off, centre, yerr=[np.maximum(centre - lo, 0), np.maximum(hi - centre, 0)], color=colour, marker="o", ms=4,
                                lw=1.5, capsize=2, label=variant)
                for rid in sub.loc[sub["status"] == CellStatus.DIVERGED, "run_id"]:
                    dv = np.array([cells.runs[rid]["metrics"].get(k, np.nan) for k in key], dtype=float)
                    dv[~np.isfinite(dv)] = np.nan
                    ax.plot(x + off, dv, color=colour, marker="x", ms=6, mew=1.8, ls=":", lw=1)
            if log:
                ax.set_yscale("log")
                _readable_log_ticks(ax)
            ax.set_xticks(x, sites, rotation=45, ha="right")
            ax.set_xlabel("probe site (shallow → deep)")
            ax.set_ylabel(STAT_LABELS[plot.stat] + " at the last probe" + (" (log)" if log else ""))
            if len(facets) > 1:
                ax.set_title(facet)
        for ax in axes.flat[len(facets):]:
            ax.set_visible(False)
        flags = _legend_flags(cells)
        _legend(fig, cells, {"diverged": flags["diverged"]},
                [Line2D([], [], color="0.4", marker="o", ms=4, label="centre, bars: range over seeds")])
        return to_svg(fig), []


def metric_figure(cells: Cells, histories: dict[str, dict[str, History]], plot: PlotSpec,
                  facets: list[str]) -> tuple[str | None, list[str]]:
    """A per-step metric (validation PSNR…) vs step, one panel per facet, reference line dashed."""
    if not any(plot.key in h for h in histories.values()):
        return None, [f"no cell logged {plot.key!r} per step"]
    notes: list[str] = []
    extra: list[Any] = []
    with _style():
        fig, axes = _grid(len(facets), 3, 4.6, 2.8, hgap=1.0)
        for ax, (facet, group) in zip(axes.flat, _facet_cells(cells, facets)):
            drew = _variant_lines(ax, cells, group, histories, plot.key, plot.log_y)
            if plot.reference and plot.reference in group.columns:
                ref = group[plot.reference].astype(float)
                ref = ref[np.isfinite(ref)]
                if len(ref):
                    ax.axhline(float(ref.mean()), color="0.35", ls="--", lw=1.2)
                    if not extra:
                        extra.append(Line2D([], [], color="0.35", ls="--", lw=1.2,
                                            label=f"{plot.reference} (mean)"))
            if not drew:
                ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center", va="center", color="0.5")
            ax.set_xlabel("training step")
            ax.set_ylabel(metric_label(plot.key))
            if len(facets) > 1:
                ax.set_title(facet)
        for ax in axes.flat[len(facets):]:
            ax.set_visible(False)
        if plot.reference and not extra:
            notes.append(f"no cell logged the reference {plot.reference!r}")
        _legend(fig, cells, _legend_flags(cells), extra)
        return to_svg(fig), notes


def lowprec_figure(cells: Cells, plot: PlotSpec, facets: list[str]) -> tuple[str | None, list[str]]:
    """fp32 PSNR minus fp16/bf16 PSNR of the final model, per variant (mean, bars: std over seeds)."""
    frame = cells.frame
    keys = [f"final/psnr_{p}" for p in plot.precisions]
    present = [p for p, k in zip(plot.precisions, keys) if k in frame.columns]
    if "final/psnr" not in frame.columns or not present:
        return None, ["no low-precision evaluation (final/psnr_fp16, final/psnr_bf16) was logged"]
    ok = frame[frame["status"] == CellStatus.FINISHED]
    width = 0.8 / len(present)
    with _style():
        fig, axes = _grid(len(facets), 3, max(3.5, 0.75 * len(cells.variants) + 0.8), 2.8, bottom=1.0, hgap=1.4)
        for ax, facet in zip(axes.flat, facets):
            group = ok[ok["column"] == facet]
            for j, prec in enumerate(present):
                for i, variant in enumerate(cells.variants):
                    sub = group[group["variant"] == variant]
                    drop = (sub["final/psnr"] - sub[f"final/psnr_{prec}"]).astype(float)
                    drop = drop[np.isfinite(drop)]
                    if not len(drop):
                        continue
                    mean = float(drop.mean())
                    err = float(drop.std(ddof=1)) if len(drop) > 1 else 0.0
                    xpos = i + (j - (len(present) - 1) / 2) * width
                    ax.bar(xpos, mean, width * 0.92, yerr=err, capsize=2, color=cells.colours[variant],
                           alpha=1.0 if j == 0 else 0.55, hatch=None if j == 0 else "//", edgecolor="white")
                    ax.annotate(f"{mean:.2f}", (xpos, max(mean, 0) + err), ha="center", va="bottom", fontsize=7,
                                xytext=(0, 2), textcoords="offset points")
            ax.axhline(0, color="0.3", lw=0.8)
            ax.set_xticks(range(len(cells.variants)), cells.variants, rotation=20, ha="right")
            ax.set_ylabel("PSNR drop vs fp32 (dB)")
            ax.set_xlabel("norm variant")
            if len(facets) > 1:
                ax.set_title(facet)
        for ax in axes.flat[len(facets):]:
            ax.set_visible(False)
        handles = [Patch(facecolor="0.45", label=f"{present[0]} inference")]
        handles += [Patch(facecolor="0.45", alpha=0.55, hatch="//", edgecolor="white", label=f"{p} inference")
                    for p in present[1:]]
        fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 1.0), ncol=len(handles), frameon=False)
        return to_svg(fig), []
