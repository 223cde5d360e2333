"""A cell run's name and tags: one definition for `ablate run`/`search` and `ablate train`.

    .venv/bin/python -m pytest tests/track/test_identity.py
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from click.testing import CliRunner

from ablate.spec import CellSpec, Component, expand, load_experiment
from ablate.track import cell_run_identity, cell_run_name

CELL = """\
name: identity
norm: global_ln
rescale: true
seed: 3
backbone: {name: swinir-tiny, embed_dim: 16, depths: [1, 1], num_heads: 2, window_size: 4}
task: sr-x2
train: {steps: 20, batch_size: 2, patch_size: 16, val_size: 32, eval_every: 10, lowprec_eval: false}
probes: {every: 5, patch_size: 16}
"""


def test_name_and_tags_of_a_cell() -> None:
    cell = CellSpec(norm=Component("token_ln"), rescale=False, backbone=Component("swinir-tiny"),
                    task=Component("sr-x2"), seed=2)
    name, tags = cell_run_identity(cell, "token_ln")
    assert name == "token_ln·swinir-tiny·sr-x2·s2" == cell_run_name(cell, "token_ln")
    assert tags["ablate.norm"] == "token_ln" and tags["ablate.pairing"] == cell.pairing_key
    assert {k for k in tags if k.startswith("ablate.source.")} == {
        "ablate.source.norm", "ablate.source.backbone", "ablate.source.task", "ablate.source.data"}
    assert tags["ablate.source.norm"].startswith("ablate ")
    # extra tags (a search's ablate.search) are added and win over the built ones
    _, more = cell_run_identity(cell, "token_ln", {"ablate.search": "optuna", "ablate.norm": "x"})
    assert more["ablate.search"] == "optuna" and more["ablate.norm"] == "x"


class _Recorder:
    """Stands in for the Tracker: remembers what each started cell run was called and tagged."""

    def __init__(self) -> None:
        self.started: list[tuple[str, str, dict[str, str]]] = []

    def start_cell(self, parent: str, cell_id: str, run_name: str, params: Any, tags: dict[str, str]) -> str:
        self.started.append((cell_id, run_name, dict(tags)))
        return f"run-{len(self.started)}"


def _sweep_identity(cell: CellSpec) -> tuple[str, dict[str, str]]:
    """The name and tags the sweep's MLflow writer (the Tune callback) gives ``cell``'s run."""
    pytest.importorskip("ray")
    from ablate.tune._callback import SweepCallback

    recorder = _Recorder()
    callback = SweepCallback(recorder, "parent", {cell.id: cell.to_config()}, Path("unused"))
    callback.on_trial_start(0, [], SimpleNamespace(trial_id="t0", config={"cell_id": cell.id}))
    [(cell_id, name, tags)] = recorder.started
    assert cell_id == cell.id
    return name, tags


def test_train_and_sweep_name_a_cell_run_alike(tmp_path: Path, request: pytest.FixtureRequest,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow import MlflowClient

    from ablate.cli import main
    from ablate.testing.synthetic import prepared_store

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    (tmp_path / "one.yaml").write_text(CELL)
    cache = getattr(request.config, "cache", None)
    uri = prepared_store(tmp_path / "state", cache.mkdir("ablate-mlflow") if cache else tmp_path / "template")
    result = CliRunner().invoke(main, ["train", "one.yaml", "--steps", "2", "--tracking-uri", uri,
                                       "--state-dir", str(tmp_path / "state")])
    assert result.exit_code == 0, result.output
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("identity")
    [run] = [r for r in client.search_runs([exp.experiment_id]) if "ablate.cell" in r.data.tags]

    cell = expand(load_experiment(tmp_path / "one.yaml"))[0]
    cell = dataclasses.replace(cell, train=dataclasses.replace(cell.train, steps=2))  # what --steps 2 trains
    assert run.data.tags["ablate.cell"] == cell.id
    name, tags = _sweep_identity(cell)
    assert run.info.run_name == name == f"global_ln+rescale·{cell.backbone.label()}·sr-x2·s3"
    assert {k: run.data.tags[k] for k in tags} == tags
