"""What each dashboard figure shows, independent of how it is drawn: panels of lines, bands, points, bars.

    from ablate.report._figures import build_figure
    fig = build_figure(cells, histories, PlotSpec("trace", stat="msq"), facets)
    fig.panels[0].lines[0].variant, fig.panels[0].lines[0].y

One model, two renderers: ``_plotly`` (interactive: hover values, legend toggles, zoom) and
``_plots`` (matplotlib SVG, the static fallback) draw the same lines from it. Per-step lines are the
across-seed centre (geometric mean on log axes, mean otherwise) with the min–max range over seeds
as a band; a diverged cell is drawn on its own, ending in × at its last finite value, so a blow-up is
seen, not averaged in. Variants come in the experiment's order (``cells.variants``).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np

from ablate.status import CellStatus
from ablate.track import spaced

from ._data import CellRow, Cells, pick_sites, sites_of
from ._spec import PlotSpec

History = tuple[np.ndarray, np.ndarray]
MAX_POINTS = 200  # points per drawn line: ~1 per 1.5 px of a panel; more only grows the page

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


def metric_label(key: str) -> str:
    return METRIC_LABELS.get(key, key)


@dataclass
class Line:
    """A variant's across-seed centre over steps (with its range band), or one diverged cell's trace."""

    variant: str
    x: np.ndarray
    y: np.ndarray
    low: np.ndarray | None = None  # the min–max band over seeds (None for a single cell)
    high: np.ndarray | None = None
    cells: int = 1
    diverged: str | None = None  # the cell id of a diverged cell's own trace
    last: tuple[float, float] | None = None  # (step, value) where that trace ends: marked ×


@dataclass
class Points:
    """A variant's value per category (depth: per site), centre and range, or one diverged cell's."""

    variant: str
    x: np.ndarray  # category positions (offset per variant so that variants do not overlap)
    y: np.ndarray
    low: np.ndarray | None = None
    high: np.ndarray | None = None
    cells: int = 1
    diverged: str | None = None


@dataclass
class Bar:
    """The PSNR drop of one variant at one precision: mean over cells, error bar the std."""

    variant: str
    precision: str
    x: float
    width: float
    mean: float
    err: float
    cells: int
    first: bool  # the first precision is drawn solid, the others hatched


@dataclass
class Panel:
    title: str
    xlabel: str
    ylabel: str
    log_y: bool = False
    lines: list[Line] = field(default_factory=list)
    points: list[Points] = field(default_factory=list)
    bars: list[Bar] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)  # x tick labels at 0, 1, … (depth, lowprec)
    reference: tuple[float, str] | None = None  # a horizontal dashed line: (value, legend label)

    @property
    def empty(self) -> bool:
        return not (self.lines or self.points or self.bars)


@dataclass
class FigureModel:
    kind: str  # trace | depth | metric | lowprec
    title: str
    caption: str
    panels: list[Panel] = field(default_factory=list)
    columns: int = 1  # panels per row (at most; the static renderer fits them to the page)
    size: tuple[float, float] = (3.1, 2.5)  # one panel's width × height in inches (static renderer)
    facets: int = 1  # column groups (rows of trace panels)
    band: bool = False  # some line has a range band over seeds (legend entry)
    diverged: bool = False  # some cell diverged (legend entry)
    precisions: list[str] = field(default_factory=list)  # lowprec: legend entries
    notes: list[str] = field(default_factory=list)


def aggregate(series: list[History], log: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(steps, centre, low, high) over cells: geometric mean on log axes, else the mean; at most
    ``MAX_POINTS`` evenly spaced steps."""
    steps = np.unique(np.concatenate([s for s, _ in series]))
    grid = np.full((len(series), len(steps)), np.nan)
    for i, (s, v) in enumerate(series):
        grid[i, np.searchsorted(steps, s)] = v
    grid[~np.isfinite(grid)] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns of the seed matrix
        if log:
            grid[grid <= 0] = np.nan
            centre = np.exp(np.nanmean(np.log(grid), axis=0))
        else:
            centre = np.nanmean(grid, axis=0)
        low, high = np.nanmin(grid, axis=0), np.nanmax(grid, axis=0)
    keep = spaced(len(steps), MAX_POINTS)
    return steps[keep], centre[keep], low[keep], high[keep]


def _last_finite(hist: History, log: bool) -> tuple[float, float] | None:
    steps, values = hist
    ok = np.isfinite(values) & ((values > 0) if log else True)
    if not ok.any():
        return None
    i = int(np.flatnonzero(ok)[-1])
    return float(steps[i]), float(values[i])


def variant_lines(cells: Cells, group: list[CellRow], histories: dict[str, dict[str, History]], key: str,
                  log: bool) -> list[Line]:
    """Per variant: the centre line and range of its cells that did not diverge, then each diverged
    cell on its own."""
    lines: list[Line] = []
    for variant in cells.variants:
        mine = [r for r in group if r.variant == variant]
        found = [histories.get(r.run_id, {}).get(key) for r in mine if r.status != CellStatus.DIVERGED]
        series = [h for h in found if h is not None and len(h[0])]
        if series:
            steps, centre, low, high = aggregate(series, log)
            band = len(series) > 1
            lines.append(Line(variant, steps, centre, low if band else None, high if band else None, len(series)))
        for r in mine:
            if r.status != CellStatus.DIVERGED:
                continue
            hist = histories.get(r.run_id, {}).get(key)
            if hist is None or not len(hist[0]):
                continue
            steps, centre, _, _ = aggregate([hist], log)
            lines.append(Line(variant, steps, centre, diverged=r.cell, last=_last_finite(hist, log)))
    return lines


def _flags(cells: Cells) -> tuple[bool, bool]:
    """Whether a legend needs "range over seeds" (some variant has two non-diverged cells in one
    column) and "diverged cell"."""
    regular = cells.select(diverged=False)
    groups: dict[tuple[str, str], int] = {}
    for r in regular:
        groups[(r.variant, r.column)] = groups.get((r.variant, r.column), 0) + 1
    return any(n > 1 for n in groups.values()), len(regular) < len(cells.rows)


def trace_figure(cells: Cells, histories: dict[str, dict[str, History]], plot: PlotSpec,
                 facets: list[str]) -> FigureModel:
    """A probe statistic vs training step: one panel per picked site (columns) and facet (rows)."""
    title = plot.title or f"{STAT_TITLES[plot.stat]} vs training step"
    caption = ("Probe statistic of the residual stream on a fixed probe batch. Lines: across-seed "
               + ("geometric mean" if plot.log_y else "mean") + "; shaded: min–max over seeds.")
    band, diverged = _flags(cells)
    fig = FigureModel("trace", title, caption, columns=0, size=(3.1, 2.5), facets=len(facets), band=band,
                      diverged=diverged)
    picked = pick_sites(sites_of(list(cells.runs.values()), plot.stat), plot.sites)
    if not picked:
        fig.notes.append(f"no probe traces feat/<site>/{plot.stat} were logged")
        return fig
    fig.columns = len(picked)
    ylabel = STAT_LABELS[plot.stat] + (" (log)" if plot.log_y else "")
    for facet in facets:
        group = cells.select(column=facet)
        for label, site in picked:
            fig.panels.append(Panel(label + (f"\n{facet}" if len(facets) > 1 else ""), "training step", ylabel,
                                    plot.log_y, lines=variant_lines(cells, group, histories,
                                                                    f"feat/{site}/{plot.stat}", plot.log_y)))
    return fig


def depth_figure(cells: Cells, plot: PlotSpec, facets: list[str]) -> FigureModel:
    """The last probed value of a statistic at every site, shallow → deep (one panel per facet)."""
    title = plot.title or f"{STAT_TITLES[plot.stat]} vs depth at the last probe"
    caption = "Each site's value at the last probe step (finished cells; diverged cells dotted ×)."
    sites = sites_of(list(cells.runs.values()), plot.stat)
    fig = FigureModel("depth", title, caption, columns=2, size=(max(4.6, 0.45 * len(sites) + 1.0), 3.0),
                      diverged=_flags(cells)[1])
    if not sites:
        fig.notes.append(f"no probe traces feat/<site>/{plot.stat} were logged")
        return fig
    log = plot.log_y
    keys = [f"feat/{s}/{plot.stat}" for s in sites]
    x = np.arange(len(sites), dtype=float)
    offsets = np.linspace(-0.15, 0.15, max(len(cells.variants), 1))
    ylabel = STAT_LABELS[plot.stat] + " at the last probe" + (" (log)" if log else "")
    for facet in facets:
        panel = Panel(facet if len(facets) > 1 else "", "probe site (shallow → deep)", ylabel, log,
                      categories=list(sites))
        group = cells.select(column=facet)
        for off, variant in zip(offsets, cells.variants):
            mine = [r for r in group if r.variant == variant]
            fin = [r for r in mine if r.status != CellStatus.DIVERGED]
            values = np.array([[r.metric(k) for k in keys] for r in fin], dtype=float).reshape(len(fin), len(keys))
            values[~np.isfinite(values)] = np.nan
            if log:
                values[values <= 0] = np.nan
            if len(fin) and np.isfinite(values).any():
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)  # sites no cell logged
                    centre = np.exp(np.nanmean(np.log(values), axis=0)) if log else np.nanmean(values, axis=0)
                    low, high = np.nanmin(values, axis=0), np.nanmax(values, axis=0)
                panel.points.append(Points(variant, x + off, centre, low, high, len(fin)))
            for r in mine:
                if r.status == CellStatus.DIVERGED:
                    dv = np.array([r.metric(k) for k in keys], dtype=float)
                    dv[~np.isfinite(dv)] = np.nan
                    panel.points.append(Points(variant, x + off, dv, diverged=r.cell))
        fig.panels.append(panel)
    return fig


def metric_figure(cells: Cells, histories: dict[str, dict[str, History]], plot: PlotSpec,
                  facets: list[str]) -> FigureModel:
    """A per-step metric (validation PSNR…) vs step, one panel per facet, reference line dashed."""
    title = plot.title or f"{metric_label(plot.key)} vs training step"
    caption = "Lines: across-seed mean; shaded: min–max over seeds." + (
        f" Dashed: the mean of {plot.reference}." if plot.reference else "")
    band, diverged = _flags(cells)
    fig = FigureModel("metric", title, caption, columns=3, size=(4.6, 2.8), band=band, diverged=diverged)
    if not any(plot.key in h for h in histories.values()):
        fig.notes.append(f"no cell logged {plot.key!r} per step")
        return fig
    referenced = False
    for facet in facets:
        group = cells.select(column=facet)
        panel = Panel(facet if len(facets) > 1 else "", "training step", metric_label(plot.key), plot.log_y,
                      lines=variant_lines(cells, group, histories, plot.key, plot.log_y))
        if plot.reference:
            ref = [v for v in (r.metric(plot.reference) for r in group) if math.isfinite(v)]
            if ref:
                panel.reference = (float(np.mean(ref)), f"{plot.reference} (mean)")
                referenced = True
        fig.panels.append(panel)
    if plot.reference and not referenced:
        fig.notes.append(f"no cell logged the reference {plot.reference!r}")
    return fig


def lowprec_figure(cells: Cells, plot: PlotSpec, facets: list[str]) -> FigureModel:
    """fp32 PSNR minus fp16/bf16 PSNR of the final model, per variant (mean, bars: std over seeds)."""
    title = plot.title or "PSNR lost when the final model runs in low precision"
    caption = ("final/psnr − final/psnr_<precision> per finished cell; bar: mean, whisker: std over seeds. "
               "Features beyond fp16's range (65504) overflow at inference.")
    fig = FigureModel("lowprec", title, caption, columns=3, size=(max(3.5, 0.75 * len(cells.variants) + 0.8), 2.8))
    logged = cells.metric_keys()
    present = [p for p in plot.precisions if f"final/psnr_{p}" in logged]
    if "final/psnr" not in logged or not present:
        fig.notes.append("no low-precision evaluation (final/psnr_fp16, final/psnr_bf16) was logged")
        return fig
    fig.precisions = present
    if len(present) > 1:
        fig.caption += f" Solid bars: {present[0]}; hatched: {', '.join(present[1:])}."
    width = 0.8 / len(present)
    for facet in facets:
        group = cells.select(column=facet, statuses=(CellStatus.FINISHED,))
        panel = Panel(facet if len(facets) > 1 else "", "norm variant", "PSNR drop vs fp32 (dB)",
                      categories=list(cells.variants))
        for j, prec in enumerate(present):
            for i, variant in enumerate(cells.variants):
                drop = np.array([r.metric("final/psnr") - r.metric(f"final/psnr_{prec}")
                                 for r in group if r.variant == variant], dtype=float)
                drop = drop[np.isfinite(drop)]
                if not len(drop):
                    continue
                err = float(drop.std(ddof=1)) if len(drop) > 1 else 0.0
                panel.bars.append(Bar(variant, prec, i + (j - (len(present) - 1) / 2) * width, width,
                                      float(drop.mean()), err, len(drop), j == 0))
        fig.panels.append(panel)
    return fig


def build_figure(cells: Cells, histories: dict[str, dict[str, History]], plot: PlotSpec,
                 facets: list[str]) -> FigureModel:
    if plot.kind == "trace":
        return trace_figure(cells, histories, plot, facets)
    if plot.kind == "depth":
        return depth_figure(cells, plot, facets)
    if plot.kind == "metric":
        return metric_figure(cells, histories, plot, facets)
    return lowprec_figure(cells, plot, facets)


def needed_keys(cells: Cells, plots: tuple[PlotSpec, ...]) -> list[str]:
    """The metric histories the figures draw (depth and lowprec use the runs' latest values)."""
    runs = list(cells.runs.values())
    keys: set[str] = set()
    for plot in plots:
        if plot.kind == "trace":
            keys.update(f"feat/{s}/{plot.stat}" for _, s in pick_sites(sites_of(runs, plot.stat), plot.sites))
        elif plot.kind == "metric":
            keys.add(plot.key)
    return sorted(keys)
