"""Fixtures: one real MLflow SQLite store filled through the Tracker with synthetic sweeps.

Experiments: ``ablation`` (token_ln, i_ln, batch_norm × seeds 0, 1 — plus a diverged token_ln and a
failed batch_norm cell on seed 2), ``single-seed`` (one seed), ``all-diverged`` (every cell
diverged), ``ordered`` (i_ln, batch_norm, token_ln: the baseline last in the experiment's order),
``empty`` (a sweep that never started a cell). Traces: 20 steps, sites g0.b0…g1.b3 + final.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest


def _template_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the empty MLflow database is cached: pytest's cache (kept across sessions), or this
    session's temp folder when the cache plugin is off (-p no:cacheprovider)."""
    cache = getattr(request.config, "cache", None)
    return cache.mkdir("ablate-mlflow") if cache is not None else tmp_path_factory.getbasetemp() / "ablate-mlflow"


@pytest.fixture(scope="session")
def store(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> dict[str, Any]:
    from ablate.testing.synthetic import log_synthetic, prepared_store, synthetic_cells
    from ablate.track import Tracker

    state = tmp_path_factory.mktemp("report-store")
    uri = prepared_store(state, _template_dir(request, tmp_path_factory))
    tracker = Tracker(uri, state)
    runs = {
        "ablation": log_synthetic(tracker, "ablation", synthetic_cells(
            ("token_ln", "i_ln", "batch_norm"), (0, 1), steps=20,
            extra=[("token_ln", 2, "diverged"), ("batch_norm", 2, "failed")])),
        "single-seed": log_synthetic(tracker, "single-seed", synthetic_cells(("token_ln", "i_ln", "batch_norm"),
                                                                             (0,), steps=20)),
        "all-diverged": log_synthetic(tracker, "all-diverged", synthetic_cells(
            ("token_ln", "rms_norm"), (0, 1), steps=20,
            outcomes={(v, s): "diverged" for v in ("token_ln", "rms_norm") for s in (0, 1)})),
        "ordered": log_synthetic(tracker, "ordered", synthetic_cells(("i_ln", "batch_norm", "token_ln"), (0,),
                                                                     steps=20)),
    }
    parent = tracker.start_sweep("empty", "h", "name: empty\n", [])
    tracker.end_sweep(parent, "killed")
    return {"uri": uri, "state": state, "runs": runs, "tracker": tracker}


@pytest.fixture(scope="session")
def ablation_page(store: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The static page (matplotlib SVG plots, no script): the fallback without plotly."""
    from ablate.report import build_dashboard

    out = tmp_path_factory.mktemp("pages") / "ablation.html"
    return build_dashboard(None, "ablation", store["uri"], out, interactive=False)


@pytest.fixture(scope="session")
def interactive_page(store: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The interactive page (plotly.js inline); skipped where the plotly package is not installed."""
    pytest.importorskip("plotly")
    from ablate.report import build_dashboard

    out = tmp_path_factory.mktemp("pages") / "ablation-interactive.html"
    return build_dashboard(None, "ablation", store["uri"], out, interactive=True)
