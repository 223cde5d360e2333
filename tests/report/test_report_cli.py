"""``ablate report``, ``ablate dashboard`` and ``ablate ui`` on a real store."""

from __future__ import annotations

import csv
import io
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_ui_serves_the_store_and_stops_cleanly(store: dict[str, Any], tmp_path: Path) -> None:
    port = _free_port()
    missing = CliRunner().invoke(main, ["ui", "--state-dir", str(tmp_path / "none"), "--port", str(port)],
                                 env={"MLFLOW_TRACKING_URI": ""})
    assert missing.exit_code == 2 and "no MLflow store at" in missing.output
    env = dict(os.environ, PYTHONPATH=str(ROOT), MLFLOW_TRACKING_URI="")
    proc = subprocess.Popen([sys.executable, "-c", "from ablate.cli import main; main()", "ui",
                             "--tracking-uri", store["uri"], "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=tmp_path)
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert f"MLflow UI: http://127.0.0.1:{port}" in first
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as resp:
                    assert resp.status == 200
                    break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "mlflow server did not start"
                time.sleep(0.5)
        req = urllib.request.Request(f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/get-by-name"
                                     "?experiment_name=ablation")
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert b'"name": "ablation"' in resp.read().replace(b'":"', b'": "')
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            assert proc.wait(timeout=30) == 130  # Ctrl-C: the server stopped, then ablate ui exits as interrupted
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
    with socket.socket() as s:  # the server (and its workers) went away with it
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
