"""`ablate train`: one tiny cell in-process through click's CliRunner, optionally logged to SQLite MLflow.

    .venv/bin/python -m pytest tests/cli/test_train_cmd.py

No Ray here: the command trains in the calling process, so CliRunner sees everything it prints. The last
two tests run `ablate train --tracking-uri` as the user does, in processes of their own that get a real
SIGINT (Ctrl-C): a run interrupted twice and run again holds each (key, step) once; a second `ablate
train` of the experiment is refused while the first lives.
"""

from __future__ import annotations

import io
import math
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from PIL import Image

from ablate.cli import main
from ablate.spec import expand, load_experiment

CELL = """\
backbone: {name: swinir-tiny, embed_dim: 16, depths: [1, 1], num_heads: 2, window_size: 4}
task: sr-x2
train: {steps: 20, batch_size: 2, patch_size: 16, val_size: 32, eval_every: 10, lowprec_eval: false}
probes: {every: 5, patch_size: 16}
"""
SINGLE = f"name: train-one\nnorm: token_ln\n{CELL}"
ROOT = Path(__file__).resolve().parents[2]
# the `ablate` console script, with Ctrl-C's default Python handler whatever the test runner ignores
LAUNCH = ("import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
          "from ablate.cli import main; main(sys.argv[1:], prog_name='ablate')")
PAIR = f"name: train-pair\ngrid: {{norm: [token_ln, global_ln]}}\n{CELL}"


@pytest.fixture(autouse=True)
def _quiet_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Run in tmp_path (a default state folder must not land in the repository), with no
    MLFLOW_TRACKING_URI or ABLATE_STATE_DIR from the caller's shell."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("ABLATE_STATE_DIR", raising=False)


def _store(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty MLflow SQLite store under tmp_path/state (copied from a cached one: the schema takes
    7–20 s to create); returns its URI."""
    from ablate.testing.synthetic import prepared_store

    cache = getattr(request.config, "cache", None)
    template = cache.mkdir("ablate-mlflow") if cache is not None else tmp_path / "template"
    return prepared_store(tmp_path / "state", template)


def _train(*args: str) -> Result:
    return CliRunner().invoke(main, ["train", *args])


def _one_line_error(result: Result) -> str:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert "Traceback" not in result.output
    return lines[0]


def _summary_rows(output: str) -> dict[str, str]:
    """The ``  key  value`` lines after ``status: …``."""
    rows = {}
    after = output.split("\nstatus: ", 1)[1]
    for line in after.splitlines()[1:]:
        if line.startswith("  ") and line.split():
            key, value = line.split()
            rows[key] = value
    return rows


def test_train_one_cell_prints_the_summary(tmp_path: Path) -> None:
    (tmp_path / "one.yaml").write_text(SINGLE)
    cell = expand(load_experiment(tmp_path / "one.yaml"))[0]
    result = _train(str(tmp_path / "one.yaml"), "--cell", cell.id, "--steps", "5")
    assert result.exit_code == 0, result.output
    header = result.output.splitlines()[0]
    assert header.startswith("cell ") and "token_ln" in header and header.endswith(" 5 steps"), header
    assert "\nstatus: finished\n" in result.output
    rows = _summary_rows(result.output)
    for key in ("final/psnr", "final/ssim", "best/psnr", "final/max_msq", "ref/psnr_input", "steps"):
        assert key in rows, (key, result.output)
    assert rows["steps"] == "5"
    assert 5 < float(rows["final/psnr"]) < 60 and 0 < float(rows["final/ssim"]) <= 1
    assert not any(k.startswith("time/") for k in rows)
    assert "logged to" not in result.output
    # without --tracking-uri nothing is written: no state folder, no MLflow store
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one.yaml"]


def test_train_with_tracking_uri_logs_the_run(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    from mlflow import MlflowClient

    (tmp_path / "one.yaml").write_text(SINGLE)
    uri = _store(request, tmp_path)
    cell = expand(load_experiment(tmp_path / "one.yaml"))[0]
    result = _train(str(tmp_path / "one.yaml"), "--cell", cell.id[:6], "--steps", "5", "--tracking-uri", uri,
                    "--state-dir", str(tmp_path / "state"))
    assert result.exit_code == 0, result.output
    assert f"logged to {uri} (run " in result.output
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("train-one")
    assert exp is not None
    runs = client.search_runs([exp.experiment_id])
    children = [r for r in runs if "ablate.cell" in r.data.tags]
    parents = [r for r in runs if r.data.tags.get("ablate.sweep") == "1"]
    assert len(children) == 1 and len(parents) == 1
    child, parent = children[0], parents[0]
    assert child.info.run_id in result.output
    assert parent.data.tags["ablate.mode"] == "train" and parent.info.status == "FINISHED"
    assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert child.data.tags["ablate.status"] == "finished" and child.info.status == "FINISHED"
    assert child.data.tags["ablate.norm"] == "token_ln"
    # a 5-step run of the cell is its own cell (another id): it must not pass for the 20-step one
    assert child.data.params["train.steps"] == "5" and child.data.tags["ablate.cell"] != cell.id
    assert child.data.tags["ablate.cell"] in result.output.splitlines()[0]

    def steps(key: str) -> list[int]:
        return sorted(m.step for m in client.get_metric_history(child.info.run_id, key))

    assert steps("train/loss") == [5] and steps("val/psnr") == [5]
    assert steps("feat/final/msq") == [0, 5] and steps("feat/g0.b0/entropy") == [0, 5]
    metrics = child.data.metrics
    assert math.isfinite(metrics["final/psnr"])
    assert f"{metrics['final/psnr']:.4g}" == _summary_rows(result.output)["final/psnr"]


def test_train_unknown_cell_lists_the_ids(tmp_path: Path) -> None:
    (tmp_path / "pair.yaml").write_text(PAIR)
    ids = [c.id for c in expand(load_experiment(tmp_path / "pair.yaml"))]
    line = _one_line_error(_train(str(tmp_path / "pair.yaml"), "--cell", "nope"))
    assert "--cell 'nope'" in line and "no cell" in line
    assert all(cid in line for cid in ids), line
    # several cells and no --cell: which one is ambiguous, so it says how to pick
    line = _one_line_error(_train(str(tmp_path / "pair.yaml")))
    assert "has 2 cells" in line and "--cell ID" in line and all(cid in line for cid in ids), line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pair.yaml"]


def test_train_cell_that_raises_does_not_leave_a_running_run(tmp_path: Path,
                                                             request: pytest.FixtureRequest) -> None:
    from mlflow import MlflowClient
    from skimage import data

    # a folder whose only image is a truncated PNG: its header passes validation, decoding fails
    (tmp_path / "broken").mkdir()
    buf = io.BytesIO()
    Image.fromarray(data.astronaut()[100:164, 150:214]).save(buf, format="PNG")
    (tmp_path / "broken" / "a.png").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    (tmp_path / "bad.yaml").write_text(SINGLE.replace("name: train-one", "name: train-bad")
                                       + "data: {name: folder, path: broken, val_fraction: 0}\n")
    uri = _store(request, tmp_path)
    result = _train(str(tmp_path / "bad.yaml"), "--tracking-uri", uri, "--state-dir", str(tmp_path / "state"))
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    last = result.output.strip().splitlines()[-1]  # after the "cell …" header line
    assert last.startswith("error: ") and "a.png" in last and "truncated" in last, result.output
    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("train-bad").experiment_id])
    assert runs and all(r.info.status != "RUNNING" for r in runs), [r.info.status for r in runs]
    child = next(r for r in runs if "ablate.cell" in r.data.tags)
    assert child.data.tags["ablate.status"] == "failed" and "truncated" in child.data.tags["ablate.reason"]


# as the user runs it, in a process of its own -----------------------------------------------------
class Driver:
    """``ablate train ARGS`` in a subprocess; its output read line by line (a line per validation)."""

    def __init__(self, cwd: Path, *args: str) -> None:
        env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "ABLATE_STATE_DIR")}
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
        self.proc = subprocess.Popen([sys.executable, "-c", LAUNCH, "train", *args], cwd=cwd, env=env, text=True,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.lines: list[str] = []

    def wait_for(self, text: str) -> None:
        """Read its output until a line holds ``text``."""
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            if text in line:
                return
        raise AssertionError(f"no line with {text!r}; it printed:\n{''.join(self.lines)}")

    def interrupt(self) -> int:
        """Ctrl-C; the rest of its output; its exit status."""
        self.proc.send_signal(signal.SIGINT)
        return self.finish()

    def finish(self) -> int:
        out, _ = self.proc.communicate(timeout=300)
        self.lines.append(out)
        return self.proc.returncode

    @property
    def output(self) -> str:
        return "".join(self.lines)


@pytest.fixture
def drivers() -> Iterator[list[Driver]]:
    """The drivers a test starts; any still running at its end is killed."""
    started: list[Driver] = []
    yield started
    for d in started:
        if d.proc.poll() is None:
            d.proc.kill()
            d.proc.wait()


class _Points:
    """Records the (key, step) points a cell reports: what its MLflow run must hold."""

    def __init__(self) -> None:
        self.points: set[tuple[str, int]] = set()

    def report(self, step: int, metrics: dict[str, float], traces: Any = None, checkpoint: Any = None) -> None:
        from ablate.train import flatten_traces

        self.points |= {(key, step) for key in {**metrics, **flatten_traces(traces)}}


@pytest.mark.slow
def test_train_interrupted_twice_then_run_again_logs_every_point_once(tmp_path: Path, request: pytest.FixtureRequest,
                                                                      drivers: list[Driver]) -> None:
    """Ctrl-C after the first report, again after the third on a rerun (which reuses the run and starts over
    from step 0: `ablate train` keeps no checkpoint), then a rerun to the end: the run holds every point of
    an uninterrupted run of the cell, each once, and the summary at the last step."""
    from mlflow import MlflowClient

    from ablate.train import run_cell

    (tmp_path / "one.yaml").write_text(SINGLE.replace("eval_every: 10", "eval_every: 5"))  # a line per report
    uri = _store(request, tmp_path)
    args = ("one.yaml", "--tracking-uri", uri, "--state-dir", str(tmp_path / "state"))
    for stop in ("5/20", "15/20"):
        driver = Driver(tmp_path, *args)
        drivers.append(driver)
        driver.wait_for(stop)
        assert driver.interrupt() == 130, driver.output
        assert driver.output.rstrip().endswith("interrupted"), driver.output
    last = Driver(tmp_path, *args)
    drivers.append(last)
    assert last.finish() == 0, last.output

    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("train-one").experiment_id])
    sweeps = sorted((r for r in runs if r.data.tags.get("ablate.sweep") == "1"), key=lambda r: r.info.start_time)
    assert [r.info.status for r in sweeps] == ["KILLED", "KILLED", "FINISHED"]
    (cell_run,) = [r for r in runs if "ablate.cell" in r.data.tags]  # one run, reused by every attempt
    assert cell_run.data.tags["ablate.attempt"] == "3" and cell_run.data.tags["ablate.status"] == "finished"
    held: dict[tuple[str, int], int] = {}
    for key in cell_run.data.metrics:
        for m in client.get_metric_history(cell_run.info.run_id, key):
            held[(key, m.step)] = held.get((key, m.step), 0) + 1
    twice = sorted(p for p, n in held.items() if n > 1)
    assert twice == [], f"{len(twice)} points logged more than once, e.g. {twice[:5]}"

    reference = _Points()  # the same cell, uninterrupted, in this process
    summary = run_cell(expand(load_experiment(tmp_path / "one.yaml"))[0], reference).summary
    expected = reference.points | {(key, 20) for key, value in summary.items() if value is not None}
    assert sorted(set(held) ^ expected) == []  # none missing, none extra
    assert {step for _, step in expected} == {0, 5, 10, 15, 20}


def test_a_second_train_of_the_experiment_is_refused_while_the_first_lives(
        tmp_path: Path, request: pytest.FixtureRequest, drivers: list[Driver]) -> None:
    from ablate.track import RunStore, Tracker

    (tmp_path / "one.yaml").write_text(SINGLE.replace("steps: 20", "steps: 2000").replace("eval_every: 10",
                                                                                         "eval_every: 2"))
    uri = _store(request, tmp_path)
    args = ("one.yaml", "--tracking-uri", uri, "--state-dir", str(tmp_path / "state"))
    first = Driver(tmp_path, *args)
    drivers.append(first)
    first.wait_for("2/2000")  # training: its claim is held
    before = {r["run_id"]: r["status"] for r in RunStore(uri).runs("train-one", kind="all")}

    second = _train(*args)
    assert second.exit_code == 2 and "Traceback" not in second.output, second.output
    line = second.output.strip().splitlines()[-1]
    assert line.startswith("error: experiment 'train-one' is being run by another driver (host "), line
    assert f"pid {first.proc.pid}, since " in line and line.endswith("then run `ablate train` again"), line
    assert {r["run_id"]: r["status"] for r in RunStore(uri).runs("train-one", kind="all")} == before  # untouched

    assert first.interrupt() == 130, first.output
    # Ctrl-C released the claim: the first's runs ended as killed by it, not by the next driver
    assert Tracker(uri, tmp_path / "state").claim("train-one") == []
    runs = RunStore(uri).runs("train-one", kind="all")
    assert sorted(r["status"] for r in runs) == ["killed", "killed"]
    assert all(not r["reason"].startswith("driver gone") for r in runs), runs
