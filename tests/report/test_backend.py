"""Reports draw on their own Agg canvases: importing ablate never changes the user's matplotlib backend.

    .venv/bin/python -m pytest tests/report/test_backend.py

Checked in a fresh interpreter, since a backend, once chosen, stays chosen for the whole process.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

SCRIPT = """\
import sys
import matplotlib
matplotlib.use("pdf")  # the user's choice: anything but Agg

import ablate.report
from ablate.report import build_dashboard
from ablate.report._cellplot import divergence_plot

trace = [(s, {"feat/g0.b0/msq": 1.0 + s, "feat/g0.b0/entropy": 3.0, "feat/final/msq": 1.0}) for s in range(4)]
divergence_plot(trace, sys.argv[3])
build_dashboard(None, "ablation", sys.argv[1], sys.argv[2], interactive=False)  # the matplotlib SVG page
print(matplotlib.get_backend(), "matplotlib.pyplot" in sys.modules)
"""


def test_importing_and_plotting_keep_the_backend(store: dict[str, Any], tmp_path: Path) -> None:
    page, png = tmp_path / "page.html", tmp_path / "divergence.png"
    out = subprocess.run([sys.executable, "-c", SCRIPT, store["uri"], str(page), str(png)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["pdf", "False"]  # the backend is the user's; pyplot was never imported
    assert page.stat().st_size > 10_000 and "<svg" in page.read_text(encoding="utf-8")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_trace_without_entropy_draws_without_a_warning(tmp_path: Path) -> None:
    import warnings

    from ablate.report._cellplot import divergence_plot

    trace = [(s, {"feat/g0.b0/msq": 1.0 + s}) for s in range(3)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matplotlib warns when a legend has no line to name
        path = divergence_plot(trace, tmp_path / "msq-only.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
