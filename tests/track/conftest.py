"""Fixtures: a fresh, real MLflow SQLite store per test (copied from a cached empty one)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


def _template_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the empty MLflow database is cached: pytest's cache (kept across sessions), or this
    session's temp folder when the cache plugin is off (-p no:cacheprovider)."""
    cache = getattr(request.config, "cache", None)
    return cache.mkdir("ablate-mlflow") if cache is not None else tmp_path_factory.getbasetemp() / "ablate-mlflow"


@pytest.fixture
def state_dir(tmp_path: Path, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from ablate.testing.synthetic import prepared_store

    state = tmp_path / "state"
    prepared_store(state, _template_dir(request, tmp_path_factory))
    return state


@pytest.fixture
def tracker(state_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    from ablate.track import Tracker

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with Tracker(None, state_dir) as tr:
        yield tr
