"""The tables' statistics (ablate.report._stats): t and F tails against scipy.stats, the paired
t-test against ``scipy.stats.ttest_rel``, the bootstrap interval and Holm's correction.

    .venv/bin/python -m pytest tests/report/test_stats.py
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from ablate.report._stats import bootstrap_ci, f_sf, holm, incomplete_beta, t_quantile, t_two_sided_p
from ablate.report._table import Paired

DFS = [*range(1, 41), 50, 75, 100, 199, 500, 1000, 5000]


@pytest.mark.parametrize("df", DFS)
def test_quantile_matches_scipy(df: int) -> None:
    for q in (0.5, 0.6, 0.9, 0.95, 0.975, 0.995, 0.9995, 0.025):
        assert t_quantile(q, df) == pytest.approx(stats.t.ppf(q, df), rel=1e-10, abs=1e-12)


@pytest.mark.parametrize("df", DFS)
def test_two_sided_p_matches_scipy(df: int) -> None:
    for t in (0.0, 1e-6, 0.01, 0.3, 1.0, 1.96, 2.0, 3.0, 5.0, 8.0, 12.0, 30.0, 100.0, -2.5):
        assert t_two_sided_p(t, df) == pytest.approx(2 * stats.t.sf(abs(t), df), rel=1e-10, abs=1e-300)
    assert t_two_sided_p(math.inf, df) == 0.0 and math.isnan(t_two_sided_p(math.nan, df))


def test_incomplete_beta_matches_scipy() -> None:
    from scipy import special

    for a, b in ((0.5, 0.5), (1.0, 3.0), (2.5, 0.5), (40.0, 0.5), (7.0, 11.0)):
        for x in (0.0, 1e-9, 0.1, 0.5, 0.77, 0.999, 1.0):
            assert incomplete_beta(a, b, x) == pytest.approx(special.betainc(a, b, x), rel=1e-10, abs=1e-15)


def test_paired_p_matches_scipys_paired_t_test_and_the_interval_is_a_bootstrap() -> None:
    rng = np.random.default_rng(0)
    for n in (2, 3, 5, 12):
        variant, baseline = rng.normal(33.5, 0.2, n), rng.normal(33.2, 0.2, n)
        diff = variant - baseline
        pr = Paired(list(diff))
        assert pr.p == pytest.approx(stats.ttest_rel(variant, baseline).pvalue, rel=1e-9)
        lo, hi = pr.ci
        assert diff.min() <= lo < diff.mean() < hi <= diff.max()
        assert pr.ci == Paired(list(diff)).ci  # a fixed resampling seed: the same table every run
        if n == 12:  # many pairs: the bootstrap percentile interval approaches the t-interval
            half = stats.t.ppf(0.975, n - 1) * diff.std(ddof=1) / math.sqrt(n)
            assert (hi - lo) == pytest.approx(2 * half, rel=0.2)
    assert math.isnan(Paired([0.5]).p) and math.isnan(Paired([0.5, 0.5]).p)
    assert all(math.isnan(v) for v in Paired([0.5]).ci)


def test_bootstrap_resamples_whole_pairs() -> None:
    # two pairs: a resample holds (d1, d1), (d1, d2) or (d2, d2): its mean is d1, the midpoint or d2
    assert bootstrap_ci([0.2, 1.0]) == (0.2, 1.0)


def test_holm_matches_the_step_down_definition() -> None:
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5, 0.001]) == pytest.approx([0.5, 0.002])
    assert holm([0.9, 0.8]) == [1.0, 1.0]  # 2 × 0.8 capped at 1, and never below an earlier rank
    adjusted = holm([0.02, math.nan, 0.01])
    assert adjusted[0] == pytest.approx(0.02) and math.isnan(adjusted[1]) and adjusted[2] == pytest.approx(0.02)
    rng = np.random.default_rng(1)
    for _ in range(20):  # against a brute-force reading of the definition
        p = list(rng.uniform(0, 0.2, 6))
        order = sorted(range(6), key=lambda i: p[i])
        expected = [0.0] * 6
        for k, i in enumerate(order):
            expected[i] = max(min(1.0, (6 - j) * p[order[j]]) for j in range(k + 1))
        assert holm(p) == pytest.approx(expected)


@pytest.mark.parametrize("df1,df2", [(1, 1), (1, 4), (2, 10), (3, 7), (5, 40), (12, 188)])
def test_f_tail_matches_scipy(df1: int, df2: int) -> None:
    for f in (0.0, 0.05, 0.5, 1.0, 2.5, 7.0, 30.0, 400.0):
        assert f_sf(f, df1, df2) == pytest.approx(stats.f.sf(f, df1, df2), rel=1e-9, abs=1e-300)
