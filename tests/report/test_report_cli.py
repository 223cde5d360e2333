"""``ablate report``, ``ablate dashboard`` and ``ablate ui`` on a real store."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from ablate.cli import main

ROOT = Path(__file__).resolve().parents[2]


def _run(*args: str) -> Any:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_report_csv_has_the_numbers(store: dict[str, Any]) -> None:
    res = _run("report", "ablation", "--format", "csv", "--tracking-uri", store["uri"])
    assert res.exit_code == 0, res.output
    rows = {r["row"]: r for r in csv.DictReader(io.StringIO(res.stdout))}
    assert set(rows) == {"token_ln", "i_ln", "batch_norm"}
    cells = store["tracker"].cell_runs("ablation")
    for variant, row in rows.items():
        values = [c["metrics"]["final/psnr"] for c in cells if c["norm"] == variant and c["status"] == "finished"]
        assert int(row["n"]) == len(values) == 2
        assert float(row["value"]) == pytest.approx(sum(values) / 2, rel=1e-12)
        assert row["baseline"] == "token_ln" and row["metric"] == "final/psnr"
    assert rows["token_ln"]["excluded"] == "diverged 1" and rows["batch_norm"]["excluded"] == "failed 1"
    assert rows["token_ln"]["delta"] == "" and int(rows["i_ln"]["pairs"]) == 2 and rows["i_ln"]["p"] != ""
    best = max(rows.values(), key=lambda r: float(r["value"]))
    assert best["best"] == "True" and sum(r["best"] == "True" for r in rows.values()) == 1


def test_report_markdown_and_latex(store: dict[str, Any]) -> None:
    md = _run("report", "ablation", "--tracking-uri", store["uri"]).stdout
    assert "| norm | swinir-tiny · sr-x2 |" in md and md.count("**") >= 4 and "(n=2)" in md
    assert "Paired difference vs **token_ln**" in md and "p=" in md
    tex = _run("report", "ablation", "--format", "latex", "--metric", "final/ssim",
               "--tracking-uri", store["uri"]).stdout
    assert r"\begin{tabular}{lc}" in tex and r"\textbf{" in tex and r"$\pm$" in tex
    assert r"final/ssim" in tex and r"i\_ln" in tex and tex.count(r"\end{tabular}") == 2


def test_report_errors_are_one_line(store: dict[str, Any]) -> None:
    res = CliRunner().invoke(main, ["report", "ablaton", "--tracking-uri", store["uri"]])
    assert res.exit_code == 2
    assert res.output.strip().startswith("error: experiment 'ablaton' not found")
    assert "did you mean 'ablation'" in res.output and "Traceback" not in res.output


def test_dashboard_command_writes_the_page(store: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "page.html"
    res = _run("dashboard", "-e", "ablation", "-o", str(out), "--tracking-uri", store["uri"])
    assert res.exit_code == 0 and out.exists() and f"wrote {out.resolve()}" in res.output
    assert "8 cells" in res.output
    res = _run("dashboard", str(ROOT / "dashboards" / "divergence.yaml"), "-e", "empty",
               "--tracking-uri", store["uri"], "--state-dir", str(tmp_path / "state"))
    assert res.exit_code == 0 and "has no cell runs yet" in res.output
    assert (tmp_path / "state" / "dashboards" / "empty-divergence.html").exists()


def test_ui_without_a_store_is_one_line(tmp_path: Path) -> None:
    """Serving a store and stopping on each signal: tests/cli/test_ui.py (SIGTERM) and
    tests/cli/test_ui_browser.py (Ctrl-C)."""
    missing = CliRunner().invoke(main, ["ui", "--state-dir", str(tmp_path / "none"), "--port", "1"],
                                 env={"MLFLOW_TRACKING_URI": ""})
    assert missing.exit_code == 2 and "no MLflow store at" in missing.output
