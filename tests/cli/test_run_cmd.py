"""`ablate run` on a real local Ray and a real SQLite MLflow store.

    .venv/bin/python -m pytest tests/cli/test_run_cmd.py

The sweep runs as a user runs it: the ``ablate`` command in a subprocess (with the real stdout),
attached through ``RAY_ADDRESS`` to the module's Ray so no second Ray starts. In-process runs
through click's CliRunner fail today (see ``test_run_in_process_under_clirunner``).

One sweep of three tiny cells covers the three ways a cell ends: one finishes, one diverges (its
divergence guard ``train.max_msq`` is tiny) and one fails inside its Ray worker (its only training
image is a truncated PNG). The sweep goes on past the bad cells, records each status with a reason
and exits 1. A bad YAML stops before anything runs: exit 2, one line, nothing written.
"""

from __future__ import annotations

import io
import math
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from PIL import Image

from ablate.cli import main
from ablate.spec import expand, load_experiment

NAME = "cli-mixed"
CELLS = """\
backbone: {name: swinir-tiny, embed_dim: 16, depths: [1, 1], num_heads: 2, window_size: 4}
task: sr-x2
train: {steps: 20, batch_size: 2, patch_size: 16, val_size: 32, eval_every: 10, lowprec_eval: false}
probes: {every: 5, patch_size: 16}
"""
# No grid: the file is exactly its included cells. The failing cell's data is a folder holding one
# truncated PNG. Why this failure: validation (`ablate validate`, and `ablate run` before it starts
# Ray) reads only image headers, which are intact, so the file passes; the pixels are first decoded
# in the Ray worker, where reading the image raises DataError — a real, deterministic failure inside
# the trial, the kind a corrupt file in a user's dataset causes. (Registering a failing norm in this
# process would not reach the workers, and an image smaller than the patch is the kind of mistake
# validation may learn to catch up front.)
MIXED = f"""\
name: {NAME}
norm: token_ln
include:
  - {{seed: 0}}
  - {{seed: 0, train.max_msq: 1.0e-9}}
  - {{seed: 0, data: {{name: folder, path: broken, val_fraction: 0}}}}
resources: {{max_concurrent: 1}}  # one trial worker, which each cell's end leaves to the next
{CELLS}"""


@pytest.fixture(scope="module")
def no_tracking_env() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)  # would outrank --state-dir's SQLite store
        mp.delenv("RAY_ADDRESS", raising=False)
        mp.delenv("ABLATE_STATE_DIR", raising=False)
        yield


def _empty_store(request: pytest.FixtureRequest, base: Path) -> Path:
    """``base/state`` with an empty MLflow SQLite store, copied from a cached one (the schema takes
    7–20 s to create)."""
    from ablate.testing.synthetic import prepared_store

    cache = getattr(request.config, "cache", None)
    template = cache.mkdir("ablate-mlflow") if cache is not None else base / "template"
    prepared_store(base / "state", template)
    return base / "state"


def _truncated_png(path: Path) -> None:
    from skimage import data

    buf = io.BytesIO()
    Image.fromarray(data.astronaut()[100:164, 150:214]).save(buf, format="PNG")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])  # header intact, pixels cut off


def _ablate(ray_address: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the ``ablate`` command line in a subprocess, attached to the module's Ray."""
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "ABLATE_STATE_DIR")}
    env["RAY_ADDRESS"] = ray_address
    return subprocess.run([sys.executable, "-c", "from ablate.cli import main; main()", *args], env=env,
                          capture_output=True, text=True, timeout=300)


class Mixed:
    def __init__(self, folder: Path, state: Path, result: subprocess.CompletedProcess[str]) -> None:
        from mlflow import MlflowClient

        self.folder, self.state, self.result = folder, state, result
        self.client = MlflowClient(tracking_uri="sqlite:///" + (state / "mlflow.db").as_posix())
        cells = expand(load_experiment(folder / "mixed.yaml"))
        self.ok, self.diverging, self.broken = (c.id for c in cells)

    def run(self, cell_id: str) -> Any:
        exp = self.client.get_experiment_by_name(NAME)
        assert exp is not None, self.result.stdout + self.result.stderr
        runs = self.client.search_runs([exp.experiment_id], filter_string=f"tags.`ablate.cell` = '{cell_id}'")
        assert len(runs) == 1, (cell_id, len(runs), self.result.stdout + self.result.stderr)
        return runs[0]

    def history(self, run_id: str, key: str) -> list[tuple[int, float]]:
        return sorted((m.step, m.value) for m in self.client.get_metric_history(run_id, key))


@pytest.fixture(scope="module")
def mixed(ray_session: str, no_tracking_env: None, request: pytest.FixtureRequest,
          tmp_path_factory: pytest.TempPathFactory) -> Mixed:
    folder = tmp_path_factory.mktemp("mixed")
    _truncated_png(folder / "broken" / "astronaut.png")
    (folder / "mixed.yaml").write_text(MIXED)
    state = _empty_store(request, folder)
    result = _ablate(ray_session, "run", str(folder / "mixed.yaml"), "--state-dir", str(state))
    return Mixed(folder, state, result)


def test_the_broken_file_passes_validation(tmp_path: Path) -> None:
    """The premise of the failing cell: nothing before the Ray worker notices the truncated image."""
    _truncated_png(tmp_path / "broken" / "astronaut.png")
    (tmp_path / "mixed.yaml").write_text(MIXED)
    result = CliRunner().invoke(main, ["validate", str(tmp_path / "mixed.yaml")])
    assert result.exit_code == 0 and result.output.startswith("ok: 3 cells"), result.output


@pytest.mark.slow
def test_run_exits_1_and_reports_each_status(mixed: Mixed) -> None:
    out, err = mixed.result.stdout, mixed.result.stderr
    assert mixed.result.returncode == 1, out + err
    assert "Traceback" not in out + err
    assert f"{NAME}: 1 diverged, 1 failed, 1 finished in" in out
    assert f"cell {mixed.broken} failed: crash: " in out and f"cell {mixed.diverging} diverged: " in out
    # one line counts the failures by class and says where to look
    yaml = mixed.folder / "mixed.yaml"
    assert [line for line in out.splitlines() if "cells failed" in line] == [
        f"1 of 3 cells failed (1 crash); see `ablate status {yaml} --state-dir {mixed.state}`; "
        f"Ray's log: {_log_file(mixed.state)}"]
    assert f"results: MLflow sqlite:///{mixed.state.resolve() / 'mlflow.db'}" in out
    # the traces lead the end of the output: the one finished cell's deepest block, PSNR flagged as one seed
    signal = out.index("The deepest probed block g1.b0, step 0 → 20")
    assert signal < out.index("results: MLflow") and "one seed per variant is not a ranking" in out[signal:]
    assert "dashboard: " in out and "dashboard not built" not in out  # failed cells do not break it


def _log_file(state: Path) -> Path:
    logs = list((state / "logs").glob("*.log"))
    assert len(logs) == 1, logs
    return logs[0]


@pytest.mark.slow
def test_failing_cell_is_failed_with_reason_others_go_on(mixed: Mixed) -> None:
    run = mixed.run(mixed.broken)
    assert run.info.status == "FAILED"
    assert run.data.tags["ablate.status"] == "failed" and run.data.tags["ablate.failure"] == "crash"
    reason = run.data.tags["ablate.reason"]
    assert reason.startswith("crash: ") and "astronaut.png" in reason and "truncated" in reason, reason
    assert "ablate.attempt" not in run.data.tags  # an exception in code is not retried
    assert [a.path for a in mixed.client.list_artifacts(run.info.run_id, "errors")] == ["errors/traceback.txt"]
    assert "train/loss" not in run.data.metrics  # it never trained
    ok = mixed.run(mixed.ok)
    assert ok.data.tags["ablate.status"] == "finished" and ok.info.status == "FINISHED"
    assert math.isfinite(ok.data.metrics["final/psnr"])
    assert {a.path for a in mixed.client.list_artifacts(ok.info.run_id)} >= {"samples", "checkpoint", "plots"}


@pytest.mark.slow
def test_diverging_cell_is_diverged_and_keeps_its_metrics(mixed: Mixed) -> None:
    run = mixed.run(mixed.diverging)
    tags, metrics = run.data.tags, run.data.metrics
    assert tags["ablate.status"] == "diverged"
    assert run.info.status == "FINISHED"  # divergence is a result, not a crash
    reason = tags["ablate.reason"]
    assert "train.max_msq" in reason and "step 5" in reason, reason
    rid = run.info.run_id
    # what it measured up to the guard is kept: the loss at step 5 and the traces at steps 0 and 5
    loss = mixed.history(rid, "train/loss")
    assert [s for s, _ in loss] == [5] and loss[0][1] > 0
    msq = mixed.history(rid, "feat/final/msq")
    assert [s for s, _ in msq] == [0, 5]
    assert metrics["final/max_msq"] > 1e-9 and "ref/psnr_input" in metrics
    assert "final/psnr" not in metrics  # a diverged cell has no final evaluation
    assert [a.path for a in mixed.client.list_artifacts(rid, "plots")] == ["plots/divergence.png"]


@pytest.mark.slow
def test_status_after_mixed_run_shows_reasons(mixed: Mixed) -> None:
    result = CliRunner().invoke(main, ["status", str(mixed.folder / "mixed.yaml"), "--state-dir", str(mixed.state)])
    assert result.exit_code == 0, result.output
    lines = {line.split()[0]: line for line in result.output.splitlines() if line.strip()}
    assert " finished " in lines[mixed.ok] and " diverged " in lines[mixed.diverging]
    # the reason column (60 characters) leads with the failure class; the whole reason is the run's tag
    assert " failed " in lines[mixed.broken] and " crash: " in lines[mixed.broken]
    assert f"{NAME}: 1 diverged, 1 failed, 1 finished" in result.output


def test_run_bad_yaml_is_one_line_exit_2_and_writes_nothing(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"name: bad\ngrid: {{norm: [token_ln, toekn_ln]}}\n{CELLS}")
    state = tmp_path / "state"
    result = CliRunner().invoke(main, ["run", str(bad), "--state-dir", str(state)])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert str(bad) in lines[0] and "grid.norm[1]" in lines[0] and "token_ln" in lines[0]
    assert "Traceback" not in result.output
    # nothing was created: no state folder, no MLflow store, no mlruns in the working directory
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml"]


@pytest.mark.slow
def test_run_in_process_under_clirunner(ray_session: str, no_tracking_env: None, request: pytest.FixtureRequest,
                                        tmp_path: Path) -> None:
    (tmp_path / "one.yaml").write_text(f"name: cli-inproc\nnorm: token_ln\n{CELLS}".replace("steps: 20", "steps: 5"))
    state = _empty_store(request, tmp_path)
    result = CliRunner().invoke(main, ["run", str(tmp_path / "one.yaml"), "--state-dir", str(state),
                                       "--no-dashboard"])
    assert result.exit_code == 0, f"{result.output}{result.exception!r}"
    assert "cli-inproc: 1 finished" in result.output


def test_the_failure_line_counts_failed_cells_by_class() -> None:
    from ablate.cli.cmd_run import failure_line
    from ablate.tune import SweepSummary

    summary = SweepSummary("x", "p", "sqlite:///m.db", statuses={
        "a": "finished", "b": "failed", "c": "failed", "d": "diverged", "e": "failed", "f": "killed"},
        failures={"b": "oom", "c": "crash", "e": "crash"}, log_file=Path("s/logs/x-1.log"))
    assert failure_line(summary, "x.yaml", Path("s")) == (
        "3 of 6 cells failed (2 crash, 1 oom); see `ablate status x.yaml --state-dir s`; Ray's log: s/logs/x-1.log")
    summary.statuses = {"a": "finished", "d": "diverged"}
    assert failure_line(summary, "x.yaml", Path("s")) is None
