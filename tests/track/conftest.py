"""Fixtures: a fresh, real MLflow SQLite store per test (copied from a cached empty one)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def state_dir(tmp_path: Path, request: pytest.FixtureRequest) -> Path:
    from ablate.track.synthetic import prepared_store

    state = tmp_path / "state"
    prepared_store(state, request.config.cache.mkdir("ablate-mlflow"))
    return state


@pytest.fixture
def tracker(state_dir: Path, monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201
    from ablate.track import Tracker

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with Tracker(None, state_dir) as tr:
        yield tr
