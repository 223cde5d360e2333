"""A new SQLite store is a copy of a cached empty one, not a fresh run of MLflow's migrations."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from ablate.cache import cache_dir
from ablate.track import RunStore, Tracker, seed_sqlite_store


def _version(db: Path) -> str:
    with sqlite3.connect(db) as con:
        return str(con.execute("SELECT version_num FROM alembic_version").fetchone()[0])


def test_the_cache_follows_ablate_then_xdg_then_home() -> None:
    assert cache_dir({"ABLATE_CACHE_DIR": "/c/a", "XDG_CACHE_HOME": "/x"}) == Path("/c/a")
    assert cache_dir({"XDG_CACHE_HOME": "/x"}) == Path("/x/ablate")
    assert cache_dir({}) == Path.home() / ".cache" / "ablate"


def test_a_new_store_is_the_cached_template_and_works(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from importlib import metadata

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    cache = cache_dir()  # the suite's cache (tests/conftest.py), not ~/.cache
    assert str(cache) != str(Path.home() / ".cache" / "ablate")
    tracker = Tracker(None, tmp_path / "state")
    tracker.experiment_id("x")
    template = cache / f"mlflow-{metadata.version('mlflow')}" / "mlflow.db"
    assert template.exists() and _version(tmp_path / "state" / "mlflow.db") == _version(template)
    assert RunStore(tracker.tracking_uri).backend == "sqlite"  # the tables ablate reads are there
    with sqlite3.connect(tmp_path / "state" / "mlflow.db") as con:
        # MLflow's Default experiment points where MLflow itself would have put it: ./mlruns of this process
        assert con.execute("SELECT artifact_location FROM experiments WHERE experiment_id = 0").fetchone()[0] \
            == str(tmp_path / "mlruns" / "0")
    t0 = time.perf_counter()
    assert seed_sqlite_store(tmp_path / "other" / "mlflow.db")
    assert time.perf_counter() - t0 < 2.0  # a copy, not ~100 migrations
    assert not list((tmp_path / "other").glob(".mlflow-*"))  # no scratch file left behind


def test_an_existing_store_is_never_replaced(tmp_path: Path) -> None:
    db = tmp_path / "mlflow.db"
    db.write_bytes(b"theirs")
    assert seed_sqlite_store(db)  # the template was there; the race is lost gracefully
    assert db.read_bytes() == b"theirs"


def test_without_a_writable_cache_mlflow_builds_the_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    assert not seed_sqlite_store(tmp_path / "state" / "mlflow.db", blocker / "cache")
    monkeypatch.setenv("ABLATE_CACHE_DIR", str(blocker / "cache"))
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    tracker = Tracker(None, tmp_path / "state")
    assert tracker.experiment_id("x") is not None
    assert RunStore(tracker.tracking_uri).backend == "sqlite"


def test_a_corrupt_template_is_rebuilt(tmp_path: Path) -> None:
    from importlib import metadata

    template = tmp_path / "cache" / f"mlflow-{metadata.version('mlflow')}" / "mlflow.db"
    template.parent.mkdir(parents=True)
    template.write_bytes(b"half a database")
    assert seed_sqlite_store(tmp_path / "state" / "mlflow.db", tmp_path / "cache")
    assert _version(template) == _version(tmp_path / "state" / "mlflow.db")
