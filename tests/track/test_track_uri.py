"""Tracking URI resolution: precedence CLI > env > spec > default, and absolute local paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from ablate.track import default_state_dir, normalize_tracking_uri, resolve_tracking_uri, sqlite_path


def test_precedence_cli_env_spec_default(tmp_path: Path) -> None:
    env = {"MLFLOW_TRACKING_URI": "http://env:5000"}
    assert resolve_tracking_uri("http://cli:5000", "http://spec:5000", tmp_path, env=env) == "http://cli:5000"
    assert resolve_tracking_uri(None, "http://spec:5000", tmp_path, env=env) == "http://env:5000"
    assert resolve_tracking_uri(None, "http://spec:5000", tmp_path, env={}) == "http://spec:5000"
    assert resolve_tracking_uri("", "  ", tmp_path, env={"MLFLOW_TRACKING_URI": ""}) == (
        "sqlite:///" + (tmp_path / "mlflow.db").resolve().as_posix())


def test_default_is_absolute_sqlite_in_state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    uri = resolve_tracking_uri(None, None, ".ablate", env={})
    assert uri == f"sqlite:///{tmp_path.resolve()}/.ablate/mlflow.db"
    assert uri.startswith("sqlite:////")  # four slashes: an absolute path Ray workers can use
    assert sqlite_path(uri) == tmp_path.resolve() / ".ablate" / "mlflow.db"


@pytest.mark.parametrize(("given", "expected"), [
    ("sqlite:///runs/m.db", "sqlite:///{base}/runs/m.db"),
    ("sqlite:////abs/m.db", "sqlite:////abs/m.db"),
    ("file:mlruns", "file://{base}/mlruns"),
    ("./mlruns", "file://{base}/mlruns"),
    ("store/results.db", "sqlite:///{base}/store/results.db"),
    ("http://tracking:5000", "http://tracking:5000"),
    ("postgresql://u@h/db", "postgresql://u@h/db"),
])
def test_normalize_makes_local_paths_absolute(tmp_path: Path, given: str, expected: str) -> None:
    base = tmp_path.resolve().as_posix()
    assert normalize_tracking_uri(given, base=tmp_path) == expected.format(base=base)


def test_state_dir_from_env() -> None:
    assert default_state_dir({"ABLATE_STATE_DIR": "/x/y"}) == Path("/x/y")
    assert default_state_dir({}) == Path(".ablate")
