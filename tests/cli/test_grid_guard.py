"""A grid of more than 500 cells (a search: trials) asks before it starts: `--yes`, or a terminal's yes.

    .venv/bin/python -m pytest tests/cli/test_grid_guard.py

The sweep itself is replaced by a stub: what is tested is the question, not the run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from ablate.cli import main

CELLS = """\
norm: token_ln
backbone: {name: swinir-tiny, embed_dim: 16, depths: [1, 1], num_heads: 2, window_size: 4}
task: sr-x2
train: {steps: 20, batch_size: 2, patch_size: 16, val_size: 32}
"""
SEEDS = ", ".join(str(s) for s in range(501))
BIG = f"name: big\ngrid: {{seed: [{SEEDS}]}}\n{CELLS}"
SMALL = f"name: small\ngrid: {{seed: [0, 1]}}\n{CELLS}"
# 30 base cells × 20 trials: 600 trials
SEARCH = ("name: wide\ngrid: {seed: [" + ", ".join(str(s) for s in range(30)) + "]}\n" + CELLS
          + "search: {num_samples: 20, space: {train.optimizer.lr: {type: loguniform, low: 1.0e-4, high: 1.0e-2}}}\n")


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("ABLATE_STATE_DIR", raising=False)
    for name, text in (("big", BIG), ("small", SMALL), ("wide", SEARCH)):
        (tmp_path / f"{name}.yaml").write_text(text)
    return tmp_path


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Stubs for run_sweep and run_search; the list names the experiments they were called for."""
    import ablate.tune
    from ablate.tune import SweepSummary

    calls: list[str] = []

    def fake(spec: Any, opts: Any = None) -> SweepSummary:
        calls.append(spec.name)
        return SweepSummary(spec.name, "", "sqlite:///x.db")

    monkeypatch.setattr(ablate.tune, "run_sweep", fake)
    monkeypatch.setattr(ablate.tune, "run_search", fake)
    return calls


@pytest.mark.parametrize("command", ["run", "resume"])
def test_a_large_grid_is_refused_in_one_line_without_yes(folder: Path, started: list[str], command: str) -> None:
    result = CliRunner().invoke(main, [command, "big.yaml", "--state-dir", "state"])
    assert result.exit_code == 2, result.output
    assert result.output.splitlines() == ["error: big.yaml: 501 cells, 10,020 training steps; that is more than "
                                          "500: pass --yes to start it"]
    assert started == [] and sorted(p.name for p in folder.iterdir()) == ["big.yaml", "small.yaml", "wide.yaml"]


@pytest.mark.parametrize("command", ["run", "resume"])
def test_yes_starts_it_and_small_grids_never_ask(folder: Path, started: list[str], command: str) -> None:
    for args in (["big.yaml", "--yes"], ["big.yaml", "-y"], ["small.yaml"]):
        result = CliRunner().invoke(main, [command, *args, "--state-dir", "state"])
        assert result.exit_code == 0, result.output
    assert started == ["big", "big", "small"]


def test_a_search_counts_its_trials(folder: Path, started: list[str]) -> None:
    result = CliRunner().invoke(main, ["search", "wide.yaml", "--state-dir", "state"])
    assert result.exit_code == 2 and started == []
    assert "wide.yaml: 30 base cells × 20 trials = 600 trials, 12,000 training steps;" in result.output
    assert CliRunner().invoke(main, ["search", "wide.yaml", "--state-dir", "state", "--yes"]).exit_code == 0
    assert started == ["wide"]


def test_a_terminal_is_asked(folder: Path, started: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("ablate.cli._options._interactive", lambda: True)
    no = CliRunner().invoke(main, ["run", "big.yaml", "--state-dir", "state"], input="n\n")
    assert no.exit_code == 1 and started == []
    assert no.output.startswith("big.yaml: 501 cells, 10,020 training steps\nstart it? [y/N]: n\n"), no.output
    yes = CliRunner().invoke(main, ["run", "big.yaml", "--state-dir", "state"], input="y\n")
    assert yes.exit_code == 0 and started == ["big"], yes.output


def test_the_time_is_estimated_from_cells_that_finished(folder: Path, started: list[str],
                                                         request: pytest.FixtureRequest) -> None:
    from ablate.testing.synthetic import prepared_store
    from ablate.track import Tracker

    cache = getattr(request.config, "cache", None)
    prepared_store(folder / "state", cache.mkdir("ablate-mlflow") if cache is not None else folder / "template")
    with Tracker(None, folder / "state") as tracker:
        parent = tracker.start_sweep("big", "h", "", [])
        run = tracker.start_cell(parent, "c0", "c0", {})
        tracker.end_cell(run, "finished", summary={"time/total_s": 30.0, "steps": 20})  # 1.5 s a step
        tracker.end_sweep(parent, "finished")
    result = CliRunner().invoke(main, ["run", "big.yaml", "--state-dir", "state"])
    assert result.exit_code == 2
    assert ("501 cells, 10,020 training steps (≈ 4.2 h of trial time at 1.5 s/step, measured on 1 finished "
            "cell); that is more than 500") in result.output
