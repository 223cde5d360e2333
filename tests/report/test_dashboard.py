"""The dashboard page, built from a real MLflow store and checked against ``mlflow.search_runs``."""

from __future__ import annotations

import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import stats

from ablate.errors import AblateError
from ablate.report import build_dashboard, render_dashboard
from ablate.report._spec import DashboardSpec

COLUMN = "swinir-tiny · sr-x2"


class Tables(HTMLParser):
    """Collect ``<table class=X>`` rows as lists of (attrs, text) cells; also every swatch colour."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[tuple[dict[str, str], str]]]] = {}
        self.swatches: dict[str, str] = {}
        self._table: str | None = None
        self._cell: tuple[dict[str, str], list[str]] | None = None
        self._swatch: str | None = None
        self._in_variants = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "section":
            self._in_variants = a.get("id") == "variants"
        if tag == "table":
            self._table = a.get("class", "")
            self.tables.setdefault(self._table, [])
        elif tag == "tr" and self._table is not None:
            self.tables[self._table].append([])
        elif tag in ("td", "th") and self._table is not None:
            self._cell = (a, [])
        elif tag == "span" and "sw" in a.get("class", "").split() and self._in_variants:
            self._swatch = a["style"].split(":", 1)[1]

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._table = None
        elif tag in ("td", "th") and self._cell is not None and self._table is not None:
            self.tables[self._table][-1].append((self._cell[0], " ".join("".join(self._cell[1]).split())))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell[1].append(data)
        if self._swatch is not None and data.strip():
            self.swatches[data.strip()] = self._swatch
            self._swatch = None


def parse(html: str) -> Tables:
    p = Tables()
    p.feed(html)
    return p


@pytest.fixture(scope="module")
def runs_df(store: dict[str, Any]) -> Any:
    """Every cell run of the ``ablation`` experiment, as ``mlflow.search_runs`` reports it."""
    import mlflow

    # through the environment, not mlflow.set_tracking_uri: that also exports MLFLOW_TRACKING_URI, and
    # "restoring" MLflow's default would leave sqlite:///mlflow.db in the environment of later tests
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", store["uri"])
        df = mlflow.search_runs(experiment_names=["ablation"], filter_string="tags.`ablate.cell` != ''")
    assert len(df) == 8
    return df


def _row_cells(table: list[list[tuple[dict[str, str], str]]], label: str) -> list[tuple[dict[str, str], str]]:
    for row in table:
        if row and row[0][1] == label:
            return row[1:]
    raise AssertionError(f"no row {label!r}")


def test_table_numbers_match_search_runs(ablation_page: Path, runs_df: Any) -> None:
    page = parse(ablation_page.read_text())
    table = page.tables["ablation"]
    assert [c[1] for c in table[0]] == ["norm", COLUMN]
    fin = runs_df[runs_df["tags.ablate.status"] == "finished"]
    expected = fin.groupby("tags.ablate.norm")["metrics.final/psnr"].agg(["mean", "std", "count"])
    assert set(expected.index) == {"token_ln", "i_ln", "batch_norm"}
    best = expected["mean"].idxmax()
    for variant, row in expected.iterrows():
        ((attrs, text),) = _row_cells(table, variant)
        assert text.startswith(f"{row['mean']:.2f} ± {row['std']:.2f}"), (variant, text)
        assert float(attrs["data-mean"]) == pytest.approx(row["mean"], rel=1e-12)
        assert float(attrs["data-std"]) == pytest.approx(row["std"], rel=1e-12)
        assert int(attrs["data-n"]) == row["count"] == 2
        assert ("best" in attrs.get("class", "")) == (variant == best)
    # the cells left out are counted beside the numbers
    assert "diverged 1" in _row_cells(table, "token_ln")[0][1]
    assert "failed 1" in _row_cells(table, "batch_norm")[0][1]


def test_paired_differences_match_a_paired_t_test(ablation_page: Path, runs_df: Any) -> None:
    page = parse(ablation_page.read_text())
    paired = page.tables["paired"]
    assert [c[1] for c in paired[0]] == ["norm", COLUMN]
    fin = runs_df[runs_df["tags.ablate.status"] == "finished"]
    base = fin[fin["tags.ablate.norm"] == "token_ln"].set_index("tags.ablate.pairing")["metrics.final/psnr"]
    pvalues = {}
    for variant in ("i_ln", "batch_norm"):
        var = fin[fin["tags.ablate.norm"] == variant].set_index("tags.ablate.pairing")["metrics.final/psnr"]
        keys = sorted(set(base.index) & set(var.index))
        assert len(keys) == 2  # the pairing key ignores the norm: seeds 0 and 1 pair up
        v, b = var[keys].to_numpy(), base[keys].to_numpy()
        diff = v - b
        # two pairs: every bootstrap resample's mean is d1, d2 or their mean, so the 95% percentile
        # interval runs from the smaller difference to the larger
        p = pvalues[variant] = stats.ttest_rel(v, b).pvalue
        ((attrs, text),) = _row_cells(paired, variant)
        assert text.startswith(f"{diff.mean():+.2f}") and float(attrs["data-delta"]) == pytest.approx(
            diff.mean(), rel=1e-12)
        assert attrs["data-pairs"] == "2" and "pairs = 2" in text
        assert attrs["data-ci"] == f"[{diff.min():.2f}, {diff.max():.2f}]"
        assert attrs["data-p"] == f"{p:.3g}" and f"p = {p:.3g}" in text
    low, high = sorted(pvalues.values())  # Holm over the two comparisons: 2·p₍₁₎, then max(that, p₍₂₎)
    holm = {k: min(1.0, 2 * low) if p == low else max(min(1.0, 2 * low), high) for k, p in pvalues.items()}
    for variant, adjusted in holm.items():
        ((attrs, text),) = _row_cells(paired, variant)
        assert attrs["data-p-holm"] == f"{adjusted:.3g}" and f"Holm {adjusted:.3g}" in text


def test_factor_importance_section(ablation_page: Path) -> None:
    html = ablation_page.read_text()
    anova = parse(html).tables["anova"]
    assert [c[1] for c in anova[0]] == ["factor", "levels", "df", "share of variance", "F", "p"]
    rows = {r[0][1]: [c[1] for c in r[1:]] for r in anova[1:]}
    assert rows["norm"][:2] == ["3", "2"]  # three variants, two degrees of freedom
    assert "residual" in rows and "seed" not in rows


def test_status_counts_and_problem_cells(ablation_page: Path, runs_df: Any) -> None:
    html = ablation_page.read_text()
    page = parse(html)
    status = page.tables["status"]
    counts = runs_df.groupby(["tags.ablate.norm", "tags.ablate.status"]).size()
    for (variant, st), n in counts.items():
        cells = {c[0].get("data-status"): int(c[1]) for c in _row_cells(status, variant) if c[0].get("data-status")}
        assert cells[st] == n
    problems = page.tables["problems"]
    assert sorted(r[4][1] for r in problems[1:]) == ["diverged", "failed"]
    assert "exceeded train.max_msq" in html and "synthetic failure" in html


def test_page_is_self_contained_and_consistently_coloured(ablation_page: Path) -> None:
    html = ablation_page.read_text()
    assert not re.search(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", html)  # nothing to fetch
    assert "<script" not in html and "<link" not in html and "@import" not in html
    page = parse(html)
    assert set(page.swatches) == {"token_ln", "i_ln", "batch_norm"}
    assert len(set(page.swatches.values())) == 3
    figures = re.findall(r'<section class="figure"[^>]*data-kind="(\w+)">(.*?)</section>', html, re.S)
    assert [k for k, _ in figures] == ["trace", "trace", "depth", "metric", "lowprec"]
    for kind, body in figures:
        svg = body[body.index("<svg"):body.index("</svg>")]
        for variant, colour in page.swatches.items():
            assert colour.lower() in svg.lower(), (kind, variant)  # same colour in every plot
            assert variant in svg  # legend or tick label
    traces = [b for k, b in figures if k == "trace"]
    assert "training step" in traces[0] and "mean of x²" in traces[0] and "(log)" in traces[0]
    assert "channel entropy (nats)" in traces[1]
    for label in ("shallow (g0.b0)", "middle (g0.b3)", "deep (g1.b3)"):
        assert label in traces[0]
    assert "probe site (shallow → deep)" in figures[2][1] and ">final<" in figures[2][1]
    assert "validation PSNR (dB)" in figures[3][1] and "ref/psnr_input" in figures[3][1]
    assert "PSNR drop vs fp32 (dB)" in figures[4][1] and "fp16 inference" in figures[4][1]


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(_chromium() is None, reason="needs Debian's chromium (apt-get install -y chromium)")
def test_page_renders_in_headless_chromium(ablation_page: Path, tmp_path: Path) -> None:
    from PIL import Image

    shot = tmp_path / "page.png"
    cmd = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'profile'}", "--host-resolver-rules=MAP * ~NOTFOUND",
           "--enable-logging=stderr", "--v=0", "--hide-scrollbars", "--window-size=1280,3600",
           f"--screenshot={shot}", ablation_page.as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    console = [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]
    assert console == [], console  # no JavaScript, so any console line is a failed load or an error
    img = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    assert img.shape[:2] == (3600, 1280)
    background = np.all(np.abs(img - img[5, -5]) < 8, axis=-1)
    assert background.mean() < 0.97  # not blank
    page = parse(ablation_page.read_text())
    for variant, colour in page.swatches.items():  # every variant's colour made it to the screen
        rgb = np.array([int(colour.strip()[i:i + 2], 16) for i in (1, 3, 5)])
        assert (np.abs(img - rgb).sum(axis=-1) < 30).sum() > 200, variant


def test_single_seed_has_no_test_column(store: dict[str, Any], tmp_path: Path) -> None:
    html = build_dashboard(None, "single-seed", store["uri"], tmp_path / "s.html").read_text()
    page = parse(html)
    for variant in ("i_ln", "batch_norm"):
        ((attrs, text),) = _row_cells(page.tables["paired"], variant)
        assert attrs["data-pairs"] == "1" and attrs["data-ci"] == attrs["data-p"] == ""  # no CI, no test
        assert "CI" not in text and "p =" not in text
    assert 'id="no-test"' in html and "needs at least two seeds" in html
    ((attrs, text),) = _row_cells(page.tables["ablation"], "i_ln")
    assert attrs["data-n"] == "1" and "±" not in text


def test_all_diverged_still_gives_a_useful_page(store: dict[str, Any], tmp_path: Path) -> None:
    html = build_dashboard(None, "all-diverged", store["uri"], tmp_path / "d.html").read_text()
    page = parse(html)
    for variant in ("token_ln", "rms_norm"):
        ((attrs, text),) = _row_cells(page.tables["ablation"], variant)
        assert attrs["data-n"] == "0" and text.startswith("—") and "diverged 2" in text
    assert html.count("<svg") + html.count('<div class="plot"') >= 3  # the traces show where they blew up
    assert "no low-precision evaluation" in html
    div = build_dashboard(Path(__file__).resolve().parents[2] / "dashboards" / "divergence.yaml", "all-diverged",
                          store["uri"], tmp_path / "div.html").read_text()
    ((attrs, _),) = _row_cells(parse(div).tables["ablation"], "token_ln")
    assert attrs["data-n"] == "2"  # the divergence table counts diverged cells: final/max_msq


def test_empty_experiment_says_so(store: dict[str, Any], tmp_path: Path) -> None:
    html = build_dashboard(None, "empty", store["uri"], tmp_path / "e.html").read_text()
    assert "has no cell runs yet" in html and "<table class=\"ablation\"" not in html


def test_missing_experiment_is_a_clear_error(store: dict[str, Any], tmp_path: Path) -> None:
    with pytest.raises(AblateError, match=r"experiment 'ablaton' not found in sqlite:.* \(did you mean 'ablation'\?\)"):
        build_dashboard(None, "ablaton", store["uri"], tmp_path / "m.html")
    assert not (tmp_path / "m.html").exists()


def test_filters_and_unknown_fields(store: dict[str, Any]) -> None:
    from dataclasses import replace

    from ablate.report._spec import FilterSpec, TableSpec

    spec = replace(DashboardSpec(), filters=FilterSpec(norms=("i_ln", "token_ln")), plots=())
    html = render_dashboard(spec, ["ablation"], store["uri"])
    rows = [r[0][1] for r in parse(html).tables["ablation"][1:]]
    assert rows == ["token_ln", "i_ln"] and "filters kept 5 of 8 cells" in html
    bad = replace(DashboardSpec(), table=TableSpec(columns=("bakcbone",)), plots=())
    with pytest.raises(AblateError, match="'bakcbone' is not a param or tag.*did you mean 'backbone'"):
        render_dashboard(bad, ["ablation"], store["uri"])


def test_a_search_shows_its_budget_per_variant_and_flags_an_imbalance(store: dict[str, Any], tmp_path: Path) -> None:
    from ablate.tune import VariantBudget

    even = [VariantBudget("token_ln", "s/a", finished=3, pruned=1, steps=800, wall_s=120.0),
            VariantBudget("i_ln", "s/b", finished=2, pruned=2, steps=700, wall_s=110.0)]
    html = build_dashboard(None, "single-seed", store["uri"], tmp_path / "b.html", budgets=even).read_text()
    section = html[html.index('<section id="budget">'):]
    section = section[:section.index("</section>")]
    assert '<tr data-variant="token_ln"><td>token_ln</td><td>3</td><td>1</td>' in section
    assert "800" in section and "every variant got the same budget of trials" in section
    short = [*even[:1], VariantBudget("i_ln", "s/b", finished=2, failed=2, steps=500, wall_s=90.0)]
    html = build_dashboard(None, "single-seed", store["uri"], tmp_path / "c.html", budgets=short).read_text()
    assert "imbalance: i_ln (2) ended with fewer trials with a result than the most (4)" in html
    plain = build_dashboard(None, "single-seed", store["uri"], tmp_path / "d.html").read_text()
    assert 'id="budget"' not in plain  # a grid has no budget section
