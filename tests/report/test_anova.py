"""Factor importance (ablate.report._anova): a balanced two-way ANOVA against its closed form.

    .venv/bin/python -m pytest tests/report/test_anova.py
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import pytest
from scipy import stats

from ablate.report._anova import factor_anova
from ablate.report._data import CellRow, Cells
from ablate.report._spec import TableSpec


def _cells(points: list[tuple[dict[str, str], float]]) -> Cells:
    rows, runs = [], {}
    for i, (params, value) in enumerate(points):
        rid = f"r{i}"
        runs[rid] = {"params": params}
        rows.append(CellRow(rid, f"c{i}", "x", "finished", "", params["norm"], params["norm"], "all cells", "",
                            params.get("seed", ""), rid, {"final/psnr": value}))
    variants = list(dict.fromkeys(r.variant for r in rows))
    store: Any = None  # the ANOVA reads only the rows and their params
    return Cells(rows=rows, runs=runs, variants=variants, cell_order={r.cell: i for i, r in enumerate(rows)},
                 colours={}, columns=["all cells"], store=store, experiments=["x"])


def test_balanced_two_way_matches_the_closed_form() -> None:
    rng = np.random.default_rng(0)
    norms, tasks, seeds = ["token_ln", "batch_norm", "i_ln"], ["sr-x2", "dn-s25"], ["0", "1", "2"]
    effect = {"token_ln": 0.0, "batch_norm": 0.2, "i_ln": 0.7}
    points = [({"norm": n, "task": t, "seed": s, "data": "skimage"}, 33 + effect[n] + rng.normal(0, 0.1))
              for n, t, s in itertools.product(norms, tasks, seeds)]
    anova = factor_anova(_cells(points), TableSpec())
    y = np.array([v for _, v in points]).reshape(3, 2, 3)  # norm × task × seed
    grand = y.mean()
    ss_norm = 6 * ((y.mean(axis=(1, 2)) - grand) ** 2).sum()
    ss_task = 9 * ((y.mean(axis=(0, 2)) - grand) ** 2).sum()
    cell = y.mean(axis=2)
    ss_inter = 3 * ((cell - cell.mean(axis=1, keepdims=True) - cell.mean(axis=0, keepdims=True) + grand) ** 2).sum()
    ss_res = ((y - cell[..., None]) ** 2).sum()
    terms = {t.name: t for t in anova.terms}
    assert list(terms) == ["norm", "task", "norm × task"]  # seed is the replicate, data never varies
    assert anova.residual_df == 12 and anova.residual_ss == pytest.approx(ss_res)
    for name, ss, df in (("norm", ss_norm, 2), ("task", ss_task, 1), ("norm × task", ss_inter, 2)):
        t = terms[name]
        assert t.df == df and t.ss == pytest.approx(ss, rel=1e-9)
        f = (ss / df) / (ss_res / 12)
        assert t.f == pytest.approx(f, rel=1e-9) and t.p == pytest.approx(stats.f.sf(f, df, 12), rel=1e-8)
    total = ((y - grand) ** 2).sum()
    assert sum(t.share for t in anova.terms) + ss_res / total == pytest.approx(1.0)
    assert terms["norm"].p < 1e-3 and terms["norm"].share > 0.8


def test_a_nested_factor_is_left_to_the_finer_one_and_single_seeds_get_no_table() -> None:
    # rescale is "None" exactly on the i_ln cells: a function of norm, not an axis of its own
    points = [({"norm": n, "rescale": "None" if n == "i_ln" else "False", "seed": "0"}, v)
              for n, v in (("token_ln", 31.9), ("batch_norm", 26.2), ("global_ln", 30.9), ("i_ln", 34.6))]
    anova = factor_anova(_cells(points), TableSpec())
    assert anova.residual_df == 0 and anova.terms == []  # saturated: everything, noise included, would be norm's
    assert "leaves none (add seeds)" in anova.to_markdown()
    # three seeds: norm alone (df 3), rescale left to it; the seeds' spread is the residual
    rng = np.random.default_rng(2)
    anova = factor_anova(_cells([({**p, "seed": s}, v + rng.normal(0, 0.1)) for p, v in points for s in "012"]),
                         TableSpec())
    assert [(t.name, t.df) for t in anova.terms] == [("norm", 3)] and anova.residual_df == 8
    assert anova.terms[0].share + anova.residual_ss / anova.total_ss == pytest.approx(1.0)
    assert not math.isnan(anova.terms[0].p) and anova.terms[0].p < 1e-6
