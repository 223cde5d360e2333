"""Factor importance across the grid's axes: a multi-way ANOVA of the table's metric.

    from ablate.report._anova import factor_anova
    anova = factor_anova(cells, spec.table)          # cells: ablate.report._data.load_cells(...)
    [(t.name, t.share, t.p) for t in anova.terms]    # norm, rescale, backbone, train.optimizer.lr …

The factors are the params that take two or more values over the counted cells (status in
``table.statuses``, metric finite), except the seed (the replicate); params that vary together (``backbone.name`` and ``backbone.depth``) are one factor, and a
param that is a function of another (``rescale: null`` only on the ``i_ln`` cells) is left to it. The model
holds every main effect and, where the residual keeps degrees of freedom, every two-way interaction;
the residual is the seeds' spread (and, without interactions, what the main effects leave). A model
with no residual (one cell per grid point) gets no table: it would attribute the noise too.
Sums of squares are Type II (each term after every term that does not contain it), so an unbalanced
grid (``include`` cells, cells that diverged) still gets an answer; ``share`` is the term's part of
the total sum of squares — how much of the spread in the metric that axis explains. Axes that
overlap without nesting (an ``include`` cell's own combination) share some of it, which no Type II
term claims: the table shows that part as "shared".
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._data import Cells
from ._spec import TableSpec
from ._stats import f_sf

_REPLICATE = {"seed"}


@dataclass(frozen=True)
class Term:
    name: str  # "norm", or "norm × rescale" for an interaction
    levels: int  # distinct values (product over an interaction's factors)
    df: int
    ss: float
    share: float  # ss / total sum of squares
    f: float  # NaN without residual degrees of freedom
    p: float


@dataclass
class Anova:
    metric: str
    n: int  # cells in the model
    terms: list[Term] = field(default_factory=list)
    residual_df: int = 0
    residual_ss: float = math.nan
    notes: list[str] = field(default_factory=list)

    def to_markdown(self) -> str:
        if not self.terms:
            return "\n".join(f"_{n}_" for n in self.notes) + ("\n" if self.notes else "")
        lines = [f"Factor importance: ANOVA of {self.metric} over the grid's axes (n = {self.n} cells, "
                 f"Type II sums of squares):", "", "| factor | levels | df | share of variance | F | p |",
                 "|---|---|---|---|---|---|"]
        for t in self.terms:
            lines.append(f"| {t.name} | {t.levels} | {t.df} | {t.share:.1%} | {_num(t.f)} | {_p(t.p)} |")
        if self.shared_ss > 0.005 * self.total_ss:
            lines.append(f"| shared (overlapping factors) | | | {_share(self.shared_ss, self)} | | |")
        lines.append(f"| residual | | {self.residual_df} | "
                     f"{_share(self.residual_ss, self)} | | |")
        lines.extend(f"\n_{n}_" for n in self.notes)
        return "\n".join(lines) + "\n"

    total_ss: float = math.nan  # of the metric around its mean

    @property
    def shared_ss(self) -> float:
        """The part of the total no term claims on its own (overlapping factors) and seeds do not leave."""
        if not math.isfinite(self.total_ss) or not math.isfinite(self.residual_ss):
            return 0.0
        return max(self.total_ss - self.residual_ss - sum(t.ss for t in self.terms), 0.0)


def _num(v: float) -> str:
    return "—" if math.isnan(v) else f"{v:.3g}"


def _p(v: float) -> str:
    return "—" if math.isnan(v) else ("< 0.001" if v < 1e-3 else f"{v:.3g}")


def _share(ss: float, anova: Anova) -> str:
    total = anova.total_ss
    return "—" if not math.isfinite(ss) or total <= 0 else f"{ss / total:.1%}"


def _factors(params: list[dict[str, str]]) -> dict[str, list[str]]:
    """Factor name -> the level of each cell; keys that vary together merge under the shortest name."""
    keys = sorted({k for p in params for k in p})
    by_partition: dict[tuple[int, ...], str] = {}
    for key in keys:
        if key in _REPLICATE or key.split(".", 1)[0] in _REPLICATE:
            continue
        values = [p.get(key, "—") for p in params]
        distinct = list(dict.fromkeys(values))
        if len(distinct) < 2:
            continue
        partition = tuple(distinct.index(v) for v in values)
        name = by_partition.get(partition)
        if name is None or (len(key), key) < (len(name), name):
            by_partition[partition] = key
    partitions = {name: partition for partition, name in by_partition.items()}
    # a factor that is a function of another (rescale null exactly on the i_ln cells) adds no level of
    # its own: its contrast belongs to the finer factor, not split between the two
    nested = {a for a, pa in partitions.items() for b, pb in partitions.items()
              if a != b and len(set(pa)) < len(set(pb)) and len(set(zip(pb, pa))) == len(set(pb))}
    return {name: [str(i) for i in partitions[name]] for name in sorted(partitions, key=keys.index)
            if name not in nested}


def _dummies(levels: list[str]) -> np.ndarray:
    """Treatment coding: one column per level but the first."""
    distinct = list(dict.fromkeys(levels))
    return np.array([[lv == d for d in distinct[1:]] for lv in levels], dtype=float).reshape(len(levels), -1)


def _interaction(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.einsum("ni,nj->nij", a, b).reshape(len(a), -1)


def _rss(y: np.ndarray, blocks: list[np.ndarray]) -> tuple[float, int]:
    """Residual sum of squares and rank of the least-squares fit on an intercept and ``blocks``."""
    x = np.column_stack([np.ones(len(y)), *blocks])
    coef, _, rank, _ = np.linalg.lstsq(x, y, rcond=None)
    resid = y - x @ coef
    return float(resid @ resid), int(rank)


def factor_anova(cells: Cells, spec: TableSpec) -> Anova:
    """The ANOVA of ``spec.metric`` over the counted cells' varying params (see the module docstring)."""
    ok = [r for r in cells.rows if r.status in spec.statuses and math.isfinite(r.metric(spec.metric))]
    out = Anova(spec.metric, len(ok))
    if len(ok) < 3:
        out.notes.append("factor importance needs at least three counted cells")
        return out
    y = np.array([r.metric(spec.metric) for r in ok])
    factors = _factors([cells.runs[r.run_id]["params"] for r in ok])
    if not factors:
        out.notes.append("no grid axis varies over the counted cells: nothing to attribute")
        return out
    main = {name: _dummies(levels) for name, levels in factors.items()}
    terms: dict[tuple[str, ...], np.ndarray] = {(name,): m for name, m in main.items()}
    pairs: dict[tuple[str, ...], np.ndarray] = {(a, b): _interaction(main[a], main[b])
                                                for a, b in itertools.combinations(main, 2)}
    if pairs and _rss(y, [*terms.values(), *pairs.values()])[1] < len(y):
        terms.update(pairs)  # the residual keeps degrees of freedom: two-way interactions fit too
    elif pairs:
        out.notes.append("main effects only: two-way interactions would leave no residual (add seeds)")
    full_rss, full_rank = _rss(y, list(terms.values()))
    out.residual_df = len(y) - full_rank
    out.residual_ss = full_rss
    total = out.total_ss = float(((y - y.mean()) ** 2).sum())
    rows: list[Term] = []
    for term in terms:
        without = [m for t, m in terms.items() if not set(term) <= set(t)]
        rss_without, rank_without = _rss(y, without)
        rss_with, rank_with = _rss(y, [*without, terms[term]])
        df = rank_with - rank_without
        if df == 0:  # confounded with terms before it (an include cell's own level): nothing of its own
            continue
        ss = max(rss_without - rss_with, 0.0)
        f = (ss / df) / (full_rss / out.residual_df) if out.residual_df > 0 and full_rss > 0 else math.nan
        levels = math.prod(len(set(factors[name])) for name in term)
        rows.append(Term(" × ".join(term), levels, df, ss, ss / total if total > 0 else math.nan, f,
                         f_sf(f, df, out.residual_df) if not math.isnan(f) else math.nan))
    if out.residual_df == 0:  # a saturated model attributes everything, noise included: say nothing
        out.notes.append("factor importance needs a residual to compare with: one cell per grid point "
                         "leaves none (add seeds)")
        return out
    out.terms = rows
    return out


def anova_context(anova: Anova) -> dict[str, Any] | None:
    """The dashboard's factor-importance section (None when there is nothing to show)."""
    if not anova.terms and not anova.notes:
        return None
    return {"metric": anova.metric, "n": anova.n, "residual_df": anova.residual_df,
            "residual_share": _share(anova.residual_ss, anova), "notes": anova.notes,
            "interactions": any(" × " in t.name for t in anova.terms),
            "shared": _share(anova.shared_ss, anova) if anova.shared_ss > 0.005 * anova.total_ss else "",
            "terms": [{"name": t.name, "levels": t.levels, "df": t.df, "share": f"{t.share:.1%}",
                       "width": f"{max(t.share, 0.0) * 100:.1f}", "f": _num(t.f), "p": _p(t.p),
                       "sig": not math.isnan(t.p) and t.p < 0.05} for t in anova.terms]}
