"""`ablate ui` in a real browser: headless Chromium loads the MLflow UI (a React app) from the link
`ablate ui` prints and must find the model-training view with every cell listed, and the sweep's
results table in its description; then Ctrl-C stops it and its server.

    .venv/bin/python -m pytest tests/cli/test_ui_browser.py      # needs Debian's chromium

Without chromium the test is skipped, unless the environment variable CI is set: then it fails.
"""

from __future__ import annotations

import html
import os
import re
import shutil
import signal
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest


def _chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        message = "needs Debian's chromium (apt-get install -y chromium)"
        if os.environ.get("CI"):
            pytest.fail(f"CI is set but chromium is missing: {message}")
        pytest.skip(message)
    return found


def _dump_dom(chromium: str, url: str, profile: Path) -> str:
    """The page's DOM once its scripts ran: 30 s of virtual time, in which the app fetches its runs."""
    cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={profile}", "--window-size=1600,2400", "--virtual-time-budget=30000",
           "--dump-dom", url]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


def _visible_text(dom: str) -> str:
    body = re.sub(r"<(script|style)\b.*?</\1>", " ", dom, flags=re.S)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", body)).split())


def test_the_experiment_opens_on_its_cells_and_the_sweep_shows_its_results(
        ui_store: dict[str, Any], start_ui: Callable[..., Any], tmp_path: Path) -> None:
    chromium = _chromium()
    ui = start_ui("--tracking-uri", ui_store["uri"])
    ui.wait_healthy()
    link = ui.read_until(lambda line: "/#/experiments/" in line).split()[1]
    assert link.startswith(ui.url)

    page = _visible_text(_dump_dom(chromium, link, tmp_path / "profile-runs"))
    # the model-training view: its sidebar, a runs table, no GenAI overview
    assert "Observability" not in page and "Token Usage" not in page and "Token usage" not in page, page[:2000]
    assert "Runs" in page and "Models" in page and "Sort: final/psnr" in page, page[:2000]
    for name in ui_store["names"].values():  # every cell, without expanding anything
        assert name in page, (name, page[:3000])
    assert "skimage" in page  # the dataset column shows each cell's dataset input

    sweep = f"{ui.url}/#/experiments/{link.split('/experiments/')[1].split('/')[0]}/runs/{ui_store['sweep']}"
    dom = _dump_dom(chromium, sweep + "?workflowType=machine_learning", tmp_path / "profile-sweep")
    tables = re.findall(r"<table\b.*?</table>", dom, flags=re.S)
    assert tables, _visible_text(dom)[:3000]
    results = _visible_text(tables[0])
    assert results.startswith("cell variant backbone task seed status final PSNR (dB)")
    for cell in ui_store["cells"]:  # one row per cell, in the experiment's order
        assert cell.id in results
    order = [results.index(c.id) for c in ui_store["cells"]]
    assert order == sorted(order)
    assert "diverged" in results and "failed" in results
    assert "8 cells · 6 finished · 1 diverged · 1 failed · sweep finished" in _visible_text(dom)

    # Ctrl-C: the server stops, `ablate ui` exits as interrupted, and nothing of the server is left behind
    # (SIGTERM: tests/cli/test_ui.py)
    group = ui.server_group()
    ui.proc.send_signal(signal.SIGINT)
    assert ui.proc.wait(timeout=60) == 130
    assert ui.group_members(group, wait=10) == []
    ui.read_until(lambda line: "stopped the MLflow server (SIGINT)" in line, timeout=5)
    with socket.socket() as s:  # the port is free again
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", int(ui.url.rsplit(":", 1)[1])))
