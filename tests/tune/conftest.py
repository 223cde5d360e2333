"""Fixtures for the Ray Tune driver tests: one shared local Ray, fast empty MLflow SQLite stores.

    def test_x(ray_session, fresh_state):
        state = fresh_state("run1")      # <tmp>/run1 with an empty mlflow.db, ready for run_sweep

``run_sweep`` reuses an initialized Ray, so starting it once here (2 CPUs: this machine has 2
cores) means every sweep in the module pays Ray's start-up once, not per sweep.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def no_tracking_env() -> Iterator[None]:
    """MLFLOW_TRACKING_URI would outrank the state folder's SQLite store; RAY_ADDRESS another cluster."""
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        mp.delenv("RAY_ADDRESS", raising=False)
        yield


@pytest.fixture(scope="module")
def fresh_state(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
                ) -> Callable[[str], Path]:
    """``fresh_state(name)`` → a new state folder holding an empty MLflow SQLite store.

    Creating the MLflow schema takes 7–20 s here; ``prepared_store`` copies a cached empty database
    (the same cache the tracking tests use).
    """
    from ablate.testing.synthetic import prepared_store

    cache = getattr(request.config, "cache", None)
    template = (cache.mkdir("ablate-mlflow") if cache is not None
                else tmp_path_factory.getbasetemp() / "ablate-mlflow")

    def make(name: str) -> Path:
        state = tmp_path_factory.mktemp(name) / "state"
        prepared_store(state, template)
        return state

    return make
