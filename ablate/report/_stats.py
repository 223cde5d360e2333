"""The statistics of the tables: paired t-test, bootstrap interval, Holm's correction, t and F tails.

    from ablate.report._stats import bootstrap_ci, holm, paired_t_p, t_quantile, t_two_sided_p, f_sf
    t_quantile(0.975, df=4)          # 2.7764451051977987 (scipy.stats.t.ppf(0.975, 4))
    t_two_sided_p(2.0, df=4)         # 0.1161165...       (2 * scipy.stats.t.sf(2.0, 4))
    holm([0.01, 0.04, 0.03])         # [0.03, 0.06, 0.06]

Plain Python and numpy, so that ``ablate report`` does not import scipy (≈ 1 s on a small machine)
for a few numbers; tests/report/test_stats.py checks the distributions against scipy to 1e-10
(relative) over the degrees of freedom and values a table meets. The regularized incomplete beta function is evaluated by its
continued fraction (modified Lentz, as in Numerical Recipes §6.4), the quantile by bisection.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

_EPS = 1e-16
_TINY = 1e-300


def _beta_fraction(a: float, b: float, x: float) -> float:
    """The continued fraction of I_x(a, b) (converges fast for x < (a + 1) / (a + b + 2))."""
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    h = d
    for m in range(1, 10_000):
        for numerator in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                          -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > _TINY else _TINY)
            c = 1.0 + numerator / c
            c = c if abs(c) > _TINY else _TINY
            h *= d * c
        if abs(d * c - 1.0) < _EPS:
            break
    return h


def incomplete_beta(a: float, b: float, x: float, y: float | None = None) -> float:
    """The regularized incomplete beta function I_x(a, b), for a, b > 0 and x in [0, 1].

    ``y`` is 1 − x when the caller knows it more precisely than ``1.0 - x`` (x within 1e-12 of 1)."""
    y = 1.0 - x if y is None else y
    if x <= 0.0:
        return 0.0
    if y <= 0.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log(y))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _beta_fraction(a, b, x) / a
    return 1.0 - front * _beta_fraction(b, a, y) / b


def t_two_sided_p(t: float, df: float) -> float:
    """P(|T| ≥ |t|) for T ~ Student's t with ``df`` degrees of freedom (a two-sided test's p-value)."""
    if math.isnan(t):
        return math.nan
    if math.isinf(t):
        return 0.0
    return incomplete_beta(df / 2.0, 0.5, df / (df + t * t), t * t / (df + t * t))


def t_quantile(q: float, df: float) -> float:
    """The ``q`` quantile of Student's t with ``df`` degrees of freedom (``scipy.stats.t.ppf``)."""
    if not 0.0 < q < 1.0:
        raise ValueError(f"q must be in (0, 1), got {q}")
    if q < 0.5:
        return -t_quantile(1.0 - q, df)
    tail = 2.0 * (1.0 - q)  # the two-sided p-value of the quantile
    lo, hi = 0.0, 1.0
    while t_two_sided_p(hi, df) > tail:
        lo, hi = hi, hi * 2.0
    for _ in range(200):  # bisection to the last bit: the p-value falls as t grows
        mid = (lo + hi) / 2.0
        if mid in (lo, hi):
            break
        if t_two_sided_p(mid, df) > tail:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2.0


def f_sf(f: float, df1: float, df2: float) -> float:
    """P(F ≥ f) for F ~ Fisher's F(df1, df2): an ANOVA term's p-value (``scipy.stats.f.sf``)."""
    if math.isnan(f):
        return math.nan
    if f <= 0.0:
        return 1.0
    if math.isinf(f):
        return 0.0
    return incomplete_beta(df2 / 2.0, df1 / 2.0, df2 / (df2 + df1 * f), df1 * f / (df2 + df1 * f))


def paired_t_p(diffs: Sequence[float]) -> float:
    """Two-sided paired t-test p-value of the differences (NaN below two pairs or with zero spread)."""
    n = len(diffs)
    std = float(np.std(diffs, ddof=1)) if n >= 2 else 0.0
    if std == 0.0:
        return math.nan
    return t_two_sided_p(float(np.mean(diffs)) / (std / math.sqrt(n)), n - 1)


def bootstrap_ci(diffs: Sequence[float], level: float = 0.95, resamples: int = 10_000,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``diffs`` (resampling the seed pairs whole, so a
    pair's two cells stay together); NaN below two pairs. A fixed ``seed``: the same table every run."""
    values = np.asarray(diffs, dtype=float)
    if len(values) < 2:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(resamples, len(values)))].mean(axis=1)
    tail = (1.0 - level) / 2.0
    lo, hi = np.quantile(means, [tail, 1.0 - tail])
    return (float(lo), float(hi))


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment of a family of p-values (NaN entries are left out of the family and
    stay NaN): the adjusted p of the k-th smallest of m is max over j ≤ k of min(1, (m − j + 1) p_j)."""
    ranked = sorted((p, i) for i, p in enumerate(pvalues) if not math.isnan(p))
    out = [math.nan] * len(pvalues)
    running = 0.0
    for j, (p, i) in enumerate(ranked):
        running = max(running, min(1.0, (len(ranked) - j) * p))
        out[i] = running
    return out
