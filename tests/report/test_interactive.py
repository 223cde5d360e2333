"""The interactive dashboard (plotly.js inline), the experiment's variant order, and no "best" from one seed.

    .venv/bin/python -m pytest tests/report/test_interactive.py

The interactive tests need the ``plotly`` package (the ``interactive_page`` fixture skips without it);
the Chromium one renders the page with scripts on and checks that every plot drew its SVG.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from test_dashboard import parse  # same folder: pytest puts it on sys.path

from ablate.cli import main
from ablate.report import build_dashboard

VARIANTS = ["token_ln", "i_ln", "batch_norm"]  # the synthetic sweeps' order: not alphabetical, baseline first
ORDERED = ["i_ln", "batch_norm", "token_ln"]  # the "ordered" experiment: token_ln comes last


def _figures(html: str) -> list[tuple[str, dict[str, Any]]]:
    kinds = re.findall(r'<section class="figure"[^>]*data-kind="(\w+)">', html)
    blobs = re.findall(r'<script type="application/json" id="(plot-\d+)-data">(.*?)</script>', html, re.S)
    assert len(kinds) == len(blobs)
    return [(kind, json.loads(blob)) for kind, (_, blob) in zip(kinds, blobs)]


def test_interactive_page_is_self_contained(interactive_page: Path) -> None:
    html = interactive_page.read_text()
    scripts = re.findall(r"<script>(.*?)</script>", html, re.S)
    assert len(scripts) == 2 and "plotly.js v" in scripts[0]  # plotly.js once, then the few lines that draw
    assert "Plotly.newPlot" in scripts[1] and "http" not in scripts[1]
    page = html.replace(scripts[0], "")  # the library's own links (map tiles, its logo) are code, not page
    assert not re.search(r"""(?:src|href)\s*=\s*["']?(?:https?:)?//""", page)  # nothing to fetch
    assert "<link" not in page and "@import" not in page
    assert "<svg" not in page  # plotly draws in the browser; no matplotlib figure was rendered


def test_interactive_figures_colour_and_name_every_variant(interactive_page: Path) -> None:
    html = interactive_page.read_text()
    swatches = parse(html).swatches
    figures = _figures(html)
    assert [k for k, _ in figures] == ["trace", "trace", "depth", "metric", "lowprec"]
    for kind, fig in figures:
        named = [t for t in fig["data"] if t.get("showlegend")]
        legend = [t["name"] for t in named if t["legendgroup"] in swatches]
        assert legend == VARIANTS, kind  # the experiment's order, once each: one click toggles every panel
        for trace in fig["data"]:
            colour = (trace.get("line") or {}).get("color") or (trace.get("marker") or {}).get("color")
            if trace.get("legendgroup") in swatches and colour:
                assert colour == swatches[trace["legendgroup"]], (kind, trace["name"])
        hovers = [t["hovertemplate"] for t in fig["data"] if "hovertemplate" in t]
        assert hovers and all("<extra></extra>" in h for h in hovers)
    trace = figures[0][1]
    assert trace["layout"]["yaxis"]["type"] == "log" and "mean of x²" in trace["layout"]["yaxis"]["title"]["text"]
    titles = [a["text"] for a in trace["layout"]["annotations"]]
    assert titles == ["shallow (g0.b0)", "middle (g0.b3)", "deep (g1.b3)"]
    diverged = [t for t in trace["data"] if "(diverged)" in t["name"]]
    assert diverged and any(t["mode"] == "markers" for t in diverged)  # the × at the last finite value
    banded = [t for t in trace["data"] if t.get("fill") == "tonexty"]
    assert {t["legendgroup"] for t in banded} == set(VARIANTS)  # two seeds each: a range band


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(_chromium() is None, reason="needs Debian's chromium (apt-get install -y chromium)")
def test_interactive_plots_render_in_headless_chromium(interactive_page: Path, tmp_path: Path) -> None:
    cmd = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'p'}",
           "--host-resolver-rules=MAP * ~NOTFOUND", "--enable-logging=stderr", "--v=0",
           "--virtual-time-budget=20000", "--dump-dom", interactive_page.as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if ":CONSOLE" in line and "Error" in line]
    assert errors == [], errors
    dom = proc.stdout
    plots = re.findall(r'<div class="plot[^"]*" id="(plot-\d+)"(.*?)</figure>', dom, re.S)
    assert len(plots) == 5
    for plot_id, body in plots:
        assert 'class="main-svg"' in body, plot_id  # plotly drew the figure's SVG
        assert "legendtext" in body and all(v in body for v in VARIANTS), plot_id
        assert "class=\"modebar" in body, plot_id  # zoom, pan and reset buttons


def test_one_seed_marks_no_best(store: dict[str, Any], tmp_path: Path) -> None:
    html = build_dashboard(None, "single-seed", store["uri"], tmp_path / "s.html", interactive=False).read_text()
    table = parse(html).tables["ablation"]
    assert all("best" not in attrs.get("class", "") for row in table[1:] for attrs, _ in row)
    assert "★" not in html and "no best is marked" in html
    assert 'id="single-seed"' in html and "cannot rank the variants" in html
    for fmt in ("md", "latex", "csv"):
        out = CliRunner().invoke(main, ["report", "single-seed", "--format", fmt, "--tracking-uri", store["uri"]])
        assert out.exit_code == 0, out.output
        assert "**3" not in out.stdout and r"\textbf" not in out.stdout and ",True," not in out.stdout
    md = CliRunner().invoke(main, ["report", "single-seed", "--tracking-uri", store["uri"]]).stdout
    assert "best per column" not in md and "> **one seed per variant: this table cannot rank" in md
    # with two seeds per variant the best is marked
    two = CliRunner().invoke(main, ["report", "ablation", "--tracking-uri", store["uri"]]).stdout
    assert "best per column in bold" in two


def test_variants_keep_the_experiments_order(store: dict[str, Any], tmp_path: Path) -> None:
    for interactive in (False, True) if importlib.util.find_spec("plotly") else (False,):
        html = build_dashboard(None, "ordered", store["uri"], tmp_path / "o.html",
                               interactive=interactive).read_text()
        page = parse(html)
        assert list(page.swatches) == ORDERED  # the variants legend
        assert [r[0][1] for r in page.tables["ablation"][1:]] == ORDERED
        # the baseline is the experiment's first variant, not a name the code knows
        assert [r[0][1] for r in page.tables["paired"][1:]] == ["batch_norm", "token_ln"]
        assert [r[0][1] for r in page.tables["status"][1:-1]] == ORDERED
        if interactive:
            for kind, fig in _figures(html):
                assert [t["name"] for t in fig["data"] if t.get("showlegend") and t["legendgroup"] in ORDERED] \
                    == ORDERED, kind
    md = CliRunner().invoke(main, ["report", "ordered", "--tracking-uri", store["uri"]]).stdout
    rows = [line.split("|")[1].strip() for line in md.splitlines() if line.startswith("| ") and "·" not in line]
    assert rows[:3] == ORDERED and "Paired difference vs **i_ln**" in md
    csv_rows = CliRunner().invoke(main, ["report", "ordered", "--format", "csv", "--tracking-uri", store["uri"]])
    assert [line.split(",")[0] for line in csv_rows.stdout.splitlines()[1:]] == ORDERED


def test_a_named_baseline_wins_over_the_first_variant(store: dict[str, Any]) -> None:
    md = CliRunner().invoke(main, ["report", "ordered", "--baseline", "token_ln", "--tracking-uri", store["uri"]])
    assert md.exit_code == 0, md.output
    assert "Paired difference vs **token_ln**" in md.stdout
    paired = md.stdout.split("Paired difference", 1)[1].split("\n\n")[1]  # the table after its caption
    assert [line.split("|")[1].strip() for line in paired.splitlines()[2:]] == ["i_ln", "batch_norm"]
