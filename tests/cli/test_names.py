"""An experiment name from YAML never makes a path outside the state folder.

    .venv/bin/python -m pytest tests/cli/test_names.py

The name is an MLflow experiment name (any text); wherever it names a file or folder — checkpoints,
artifacts, dashboards, Ray's run folder — it goes through ``ablate.naming.safe_name``. Dataset paths
are never joined to the state folder: they are made absolute against the YAML file and only read.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from ablate.cli import main
from ablate.track import Tracker
from ablate.tune._setup import ray_run_name
from ablate.tune._storage import CheckpointStore

NAME = "../../x"
CELLS = """\
norm: token_ln
backbone: {name: swinir-tiny, embed_dim: 16, depths: [1, 1], num_heads: 2, window_size: 4}
task: sr-x2
train: {steps: 5, batch_size: 2, patch_size: 16, val_size: 32, eval_every: 5, lowprec_eval: false}
probes: {every: 5, patch_size: 16}
"""


def _files(root: Path) -> set[Path]:
    return {p.relative_to(root) for p in root.rglob("*")}


def test_every_path_made_from_a_name_stays_in_the_state_folder(tmp_path: Path,
                                                                request: pytest.FixtureRequest) -> None:
    from ablate.testing.synthetic import prepared_store

    state = (tmp_path / "a" / "b" / "state").resolve()
    cache = getattr(request.config, "cache", None)
    prepared_store(state, cache.mkdir("ablate-mlflow") if cache is not None else tmp_path / "template")
    tracker = Tracker(None, state)
    for name in (NAME, "/etc/x", "..\\..\\x", "a/../../../x", "x/.."):
        location = tracker.artifact_location(name)
        assert location is not None
        for path in (Path(CheckpointStore.open(None, state, name).cell_path("cell")), Path(location.removeprefix("file://")),
                     state / "ray" / ray_run_name(name, "search", "base")):
            assert path.resolve().is_relative_to(state) and path.resolve() != state, (name, path)


def test_validate_accepts_the_name(tmp_path: Path) -> None:
    (tmp_path / "x.yaml").write_text(f"name: {NAME}\n{CELLS}")
    result = CliRunner().invoke(main, ["validate", str(tmp_path / "x.yaml")])
    assert result.exit_code == 0 and result.output.startswith("ok: 1 cell"), result.output


@pytest.mark.slow
def test_a_run_writes_nothing_outside_the_state_folder(ray_session: str, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    work = tmp_path / "a" / "b" / "c"
    work.mkdir(parents=True)
    (work / "x.yaml").write_text(f"name: {NAME}\n{CELLS}")
    monkeypatch.chdir(work)
    for var in ("MLFLOW_TRACKING_URI", "ABLATE_STATE_DIR", "RAY_ADDRESS"):
        monkeypatch.delenv(var, raising=False)
    before = _files(tmp_path)
    result = CliRunner().invoke(main, ["run", "x.yaml", "--state-dir", "state"])
    assert result.exit_code == 0, f"{result.output}{result.exception!r}"
    assert "dashboard: " in result.output
    new = _files(tmp_path) - before
    outside = sorted(str(p) for p in new if not p.is_relative_to(Path("a/b/c/state")))
    assert outside == []
    state = work / "state"
    assert (state / "checkpoints" / "x").is_dir() and (state / "mlartifacts" / "x").is_dir()
    assert (state / "dashboards" / "x.html").is_file()
    assert [p.name.startswith("x-") for p in (state / "ray").iterdir()] == [True]
