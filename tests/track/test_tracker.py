"""The single MLflow writer against a real SQLite store: layout, batching, resume, read-back."""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ablate.track import RunStore, Tracker, git_commit

PLAN = [{"cell": "c1", "norm": "token_ln", "seed": 0, "train": {"steps": 20}},
        {"cell": "c2", "norm": "i_ln", "seed": 0}]


def _spy_batches(tracker: Tracker, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Record the number of metrics in each log_batch request (the real call still happens)."""
    sizes: list[int] = []
    real = tracker.client.log_batch

    def spy(run_id: str, metrics: Any = (), params: Any = (), tags: Any = (), **kw: Any) -> Any:
        if metrics:
            sizes.append(len(metrics))
        return real(run_id, metrics=metrics, params=params, tags=tags, **kw)

    monkeypatch.setattr(tracker.client, "log_batch", spy)
    return sizes


def test_sweep_run_layout(tracker: Tracker, state_dir: Path, tmp_path: Path,
                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # not a git repository: no commit tag
    parent = tracker.start_sweep("layout", "abc123", "name: layout\ngrid: {}\n", PLAN, tags={"ablate.search": "x"})
    run = tracker.client.get_run(parent)
    tags = run.data.tags
    assert tags["ablate.sweep"] == "1" and tags["ablate.spec_hash"] == "abc123"
    assert tags["ablate.version"] and tags["ablate.search"] == "x" and tags["ablate.status"] == "running"
    assert "ablate.git_commit" not in tags
    exp = tracker.client.get_experiment(run.info.experiment_id)
    assert exp.name == "layout"
    assert exp.artifact_location == (state_dir.resolve() / "mlartifacts" / "layout").as_uri()
    files = {a.path for folder in ("spec", "plan") for a in tracker.client.list_artifacts(parent, folder)}
    assert files == {"spec/experiment.yaml", "plan/plan.json", "plan/plan.csv"}
    local = Path(tracker.client.download_artifacts(parent, "plan", str(tmp_path)))
    assert json.loads((local / "plan.json").read_text()) == PLAN
    csv_lines = (local / "plan.csv").read_text().splitlines()
    assert csv_lines[0] == "cell,norm,seed,train" and csv_lines[1].startswith('c1,token_ln,0,"{')
    tracker.end_sweep(parent, "FINISHED")
    done = tracker.client.get_run(parent)
    assert done.info.status == "FINISHED" and done.data.tags["ablate.status"] == "finished"


def test_git_commit_tag_inside_a_repository(tracker: Tracker, monkeypatch: pytest.MonkeyPatch) -> None:
    repo = Path(__file__).resolve().parents[2]
    commit = git_commit(repo)
    if commit is None:
        pytest.skip("the tests do not run inside a git checkout (or git is missing)")
    monkeypatch.chdir(repo)
    parent = tracker.start_sweep("git", "h", "", [])
    assert tracker.client.get_run(parent).data.tags["ablate.git_commit"] == commit


def test_cell_run_params_tags_and_truncation(tracker: Tracker) -> None:
    parent = tracker.start_sweep("cells", "h", "", PLAN)
    params = {"norm": "token_ln", "rescale": False, "seed": 3, "train.optimizer.lr": 2e-4,
              "train.optimizer.betas": [0.9, 0.99], "grad_clip": None, "long": "x" * 7000}
    tags = {"ablate.norm": "token_ln", "ablate.pairing": "pk1", "ablate.source.norm": "ablate 0.1.0"}
    rid = tracker.start_cell(parent, "cell-a", "token_ln·s3", params, tags)
    run = tracker.client.get_run(rid)
    assert run.info.status == "RUNNING" and run.info.run_name == "token_ln·s3"
    assert run.data.tags["mlflow.parentRunId"] == parent
    assert run.data.tags["ablate.cell"] == "cell-a" and run.data.tags["ablate.status"] == "running"
    assert run.data.tags["ablate.pairing"] == "pk1" and run.data.tags["ablate.source.norm"] == "ablate 0.1.0"
    p = run.data.params
    assert p["rescale"] == "False" and p["seed"] == "3" and p["train.optimizer.lr"] == "0.0002"
    assert p["train.optimizer.betas"] == "[0.9, 0.99]" and p["grad_clip"] == "None"
    assert len(p["long"]) == 6000 and p["long"].endswith("...")


def test_metrics_are_buffered_and_sent_in_batches_of_at_most_1000(tracker: Tracker,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    parent = tracker.start_sweep("batches", "h", "", [])
    rid = tracker.start_cell(parent, "cell-b", "b", {}, {})
    sizes = _spy_batches(tracker, monkeypatch)
    tracker.buffer.flush_every = 10_000
    keys = [f"feat/g{i // 10}.b{i % 10}/msq" for i in range(50)]
    for step in range(50):
        tracker.log(rid, {k: step + j / 100 for j, k in enumerate(keys)}, step)
    assert sizes == []  # nothing written yet
    assert tracker.client.get_metric_history(rid, keys[0]) == []
    tracker.flush()
    assert sizes == [1000, 1000, 500]
    hist = tracker.client.get_metric_history(rid, keys[7])
    assert [m.step for m in sorted(hist, key=lambda m: m.step)] == list(range(50))
    assert sorted(hist, key=lambda m: m.step)[4].value == pytest.approx(4.07)


def test_auto_flush_when_the_buffer_fills(tracker: Tracker, monkeypatch: pytest.MonkeyPatch) -> None:
    parent = tracker.start_sweep("autoflush", "h", "", [])
    rid = tracker.start_cell(parent, "cell-c", "c", {}, {})
    sizes = _spy_batches(tracker, monkeypatch)
    tracker.buffer.flush_every = 30
    for step in range(20):
        tracker.log(rid, {"train/loss": 1.0 / (step + 1), "val/psnr": 30.0 + step, "x": None}, step)
    assert sizes == [30]  # flushed once at 30 buffered metrics; None values are skipped
    tracker.flush()
    assert sizes == [30, 10]


def test_a_metric_waits_at_most_flush_s_in_the_buffer(tracker: Tracker, monkeypatch: pytest.MonkeyPatch) -> None:
    """A driver that is killed loses what it buffered: at most ``flush_s`` seconds of metrics."""
    parent = tracker.start_sweep("aged", "h", "", [])
    rid = tracker.start_cell(parent, "cell-d", "d", {}, {})
    sizes = _spy_batches(tracker, monkeypatch)
    tracker.buffer.flush_s = 0.5
    tracker.log(rid, {"train/loss": 1.0}, 1)
    assert sizes == []
    time.sleep(0.6)
    tracker.log(rid, {"train/loss": 0.5}, 2)
    assert sizes == [2]
    tracker.log(rid, {"train/loss": 0.4}, 3)  # the clock starts again with the next metric
    assert sizes == [2]


def test_buffered_metrics_are_written_once_they_are_flush_s_old(tracker: Tracker,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    parent = tracker.start_sweep("timed", "h", "", [])
    rid = tracker.start_cell(parent, "cell-t", "t", {}, {})
    sizes = _spy_batches(tracker, monkeypatch)
    clock = [100.0]
    monkeypatch.setattr(tracker.buffer, "_clock", lambda: clock[0])
    tracker.buffer.flush_s = 5.0
    tracker.log(rid, {"train/loss": 0.5}, 5)
    clock[0] += 4.9
    tracker.log(rid, {"train/loss": 0.4}, 10)
    assert sizes == []  # the oldest point is 4.9 s old
    clock[0] += 0.1
    tracker.log(rid, {"train/loss": 0.3}, 15)
    assert sizes == [3]  # 5 s: everything buffered goes
    clock[0] += 1.0
    tracker.log(rid, {"train/loss": 0.2}, 20)
    assert sizes == [3]  # the clock starts again with the next buffered point


def test_points_attempts_and_failure_class_of_a_cell_run(tracker: Tracker) -> None:
    parent = tracker.start_sweep("points", "h", "", [])
    rid = tracker.start_cell(parent, "cell-p", "p", {}, {})
    assert tracker.points(rid) == {}
    tracker.log(rid, {"train/loss": 0.5, "feat/final/msq": 1.0}, 5)
    tracker.log(rid, {"train/loss": 0.4}, 10)
    tracker.flush()
    assert tracker.points(rid) == {"train/loss": {5, 10}, "feat/final/msq": {5}}
    assert RunStore(tracker.tracking_uri, use_sql=False).points(rid) == tracker.points(rid)  # both readers
    assert tracker.new_attempt(rid, {"ablate.failure": "preempted"}) == 2  # a retry after its worker died
    tags = tracker.client.get_run(rid).data.tags
    assert tags["ablate.attempt"] == "2" and tags["ablate.failure"] == "preempted"
    tracker.end_cell(rid, "failed", "oom: out of memory", failure="oom")
    tags = tracker.client.get_run(rid).data.tags
    assert tags["ablate.failure"] == "oom" and tags["ablate.reason"] == "oom: out of memory"
    again = tracker.start_cell(parent, "cell-p", "p", {}, {})  # a later sweep reuses the failed run
    assert again == rid and tracker.client.get_run(rid).data.tags["ablate.attempt"] == "3"
    assert tracker.new_attempt(rid) == 4


@pytest.mark.parametrize(("status", "state"), [("finished", "FINISHED"), ("diverged", "FINISHED"),
                                               ("failed", "FAILED"), ("pruned", "KILLED"), ("killed", "KILLED")])
def test_end_cell_sets_status_reason_summary(tracker: Tracker, status: str, state: str) -> None:
    parent = tracker.start_sweep("ends", "h", "", [])
    rid = tracker.start_cell(parent, f"cell-{status}", status, {}, {})
    tracker.log(rid, {"train/loss": 0.1}, 40)
    tracker.log(rid, {"train/loss": math.nan, "feat/g1.b3/msq": math.inf}, 50)
    tracker.end_cell(rid, status, reason=f"because {status}", summary={"final/psnr": 31.5, "skip": None})
    run = tracker.client.get_run(rid)
    assert run.info.status == state and run.info.end_time is not None
    assert run.data.tags["ablate.status"] == status and run.data.tags["ablate.reason"] == f"because {status}"
    assert run.data.metrics["final/psnr"] == 31.5 and "skip" not in run.data.metrics
    (summary,) = tracker.client.get_metric_history(rid, "final/psnr")
    assert summary.step == 50  # at the cell's last step, so it is the "latest" value
    assert math.isnan(run.data.metrics["train/loss"])


def test_bad_status_is_rejected(tracker: Tracker) -> None:
    parent = tracker.start_sweep("bad", "h", "", [])
    rid = tracker.start_cell(parent, "cell-x", "x", {}, {})
    with pytest.raises(ValueError, match="finished, diverged, failed, pruned, killed"):
        tracker.end_cell(rid, "exploded")
    with pytest.raises(ValueError, match="got 'running'"):  # a cell ends with an ended status
        tracker.end_cell(rid, "running")


def test_resume_reuses_the_unfinished_run_and_finished_cells(tracker: Tracker) -> None:
    p1 = tracker.start_sweep("resume", "h", "", [])
    params = {"norm": "token_ln", "seed": 0}
    r1 = tracker.start_cell(p1, "cell-r", "r", params, {"ablate.norm": "token_ln"})
    tracker.log(r1, {"train/loss": 0.5, "final/psnr": 20.0}, 80)  # its driver logged a summary, then died
    tracker.end_cell(r1, "killed", "interrupted")
    d1 = tracker.start_cell(p1, "cell-d", "d", params, {})
    tracker.end_cell(d1, "diverged", "msq > 1e12")
    f1 = tracker.start_cell(p1, "cell-f", "f", params, {})
    tracker.end_cell(f1, "failed", "boom")
    tracker.end_sweep(p1, "killed")
    assert tracker.finished_cells("resume") == {"cell-d": d1}

    p2 = tracker.start_sweep("resume", "h", "", [])
    r2 = tracker.start_cell(p2, "cell-r", "r", {**params, "new": 1}, {"ablate.norm": "token_ln"})
    assert r2 == r1  # one run per cell across attempts
    run = tracker.client.get_run(r2)
    assert run.info.status == "RUNNING" and run.data.tags["ablate.attempt"] == "2"
    assert run.data.tags["mlflow.parentRunId"] == p2 and run.data.tags["ablate.previous_parent"] == p1
    assert run.data.params["new"] == "1" and run.data.params["seed"] == "0"
    tracker.log(r2, {"train/loss": 0.4}, 60)  # resumed from an earlier checkpoint than step 80
    tracker.log(r2, {"train/loss": 0.3}, 80)  # held already: not logged again
    tracker.end_cell(r2, "finished", summary={"final/psnr": 33.0, "final/ssim": 0.9})
    # the summary lands at the highest step the run reached (MLflow's latest value is the one there), once:
    # the summary the earlier attempt logged stays
    assert [(m.step, m.value) for m in tracker.client.get_metric_history(r2, "final/ssim")] == [(80, 0.9)]
    assert [(m.step, m.value) for m in tracker.client.get_metric_history(r2, "final/psnr")] == [(80, 20.0)]
    assert sorted((m.step, m.value) for m in tracker.client.get_metric_history(r2, "train/loss")) == [(60, 0.4),
                                                                                                      (80, 0.5)]
    assert tracker.finished_cells("resume") == {"cell-d": d1, "cell-r": r1}
    r3 = tracker.start_cell(p2, "cell-r", "r", params, {})  # finished: a forced rerun gets a new run
    assert r3 != r1
    assert tracker.finished_cells("resume")["cell-r"] == r1  # the finished run still counts
    assert tracker.finished_cells("missing-experiment") == {}


def test_cell_runs_and_both_readers_agree(tracker: Tracker) -> None:
    parent = tracker.start_sweep("read", "h", "", [])
    ids = []
    for i, status in enumerate(("finished", "diverged")):
        rid = tracker.start_cell(parent, f"cell-{i}", f"n{i}", {"seed": i, "norm": "token_ln"},
                                 {"ablate.norm": "token_ln", "ablate.pairing": f"p{i}"})
        for step in range(0, 30, 3):
            tracker.log(rid, {"val/psnr": 30 + step / 10, "feat/g0.b0/msq": 2.0 ** step,
                              "feat/g0.b0/entropy": 3.0 - step / 100}, step)
        tracker.log(rid, {"val/psnr": 99.0}, 9, again=True)  # step 9 logged twice: the later value wins
        tracker.log(rid, {"feat/g0.b0/msq": math.inf if status == "diverged" else 1.0}, 30)
        tracker.end_cell(rid, status, "", {"final/psnr": 32.0 + i})
        ids.append(rid)
    runs = tracker.cell_runs("read")
    assert [r["cell"] for r in runs] == ["cell-0", "cell-1"]
    assert runs[1]["status"] == "diverged" and runs[1]["norm"] == "token_ln" and runs[1]["pairing"] == "p1"
    assert runs[0]["params"] == {"seed": "0", "norm": "token_ln"} and runs[0]["metrics"]["final/psnr"] == 32.0
    assert runs[1]["metrics"]["feat/g0.b0/msq"] == math.inf

    fast, slow = RunStore(tracker.tracking_uri), RunStore(tracker.tracking_uri, use_sql=False)
    assert fast.backend == "sqlite" and slow.backend == "client"
    a, b = fast.runs("read", kind="all"), slow.runs("read", kind="all")
    assert len(a) == len(b) == 3 and sum(r["is_sweep"] for r in a) == 1
    for x, y in zip(a, b):
        assert {k: v for k, v in x.items() if k != "metrics"} == {k: v for k, v in y.items() if k != "metrics"}
        assert x["metrics"].keys() == y["metrics"].keys()
        assert np.allclose(list(x["metrics"].values()), [y["metrics"][k] for k in x["metrics"]], equal_nan=True)
    ha = fast.histories(ids, patterns=["feat/*/msq", "val/psnr"])
    hb = slow.histories(ids, patterns=["feat/*/msq", "val/psnr"])
    assert set(ha[ids[0]]) == {"feat/g0.b0/msq", "val/psnr"}
    for rid in ids:
        for key in ha[rid]:
            assert np.array_equal(ha[rid][key][0], hb[rid][key][0])
            assert np.array_equal(ha[rid][key][1], hb[rid][key][1], equal_nan=True)
    steps, values = ha[ids[0]]["val/psnr"]
    assert list(steps) == list(range(0, 30, 3)) and values[3] == 99.0
    assert ha[ids[1]]["feat/g0.b0/msq"][1][-1] == math.inf
    assert fast.max_step(ids[0]) == 30


def test_log_time_counts_time_inside_mlflow(tracker: Tracker) -> None:
    before, calls = tracker.log_time, tracker.calls
    parent = tracker.start_sweep("timing", "h", "", [])
    rid = tracker.start_cell(parent, "cell-t", "t", {"a": 1}, {})
    assert tracker.calls > calls and tracker.log_time > before
    calls, before = tracker.calls, tracker.log_time
    tracker.log(rid, {"train/loss": 1.0}, 1)
    assert (tracker.calls, tracker.log_time) == (calls, before)  # buffered: logging made no call
    tracker.end_cell(rid, "finished")
    assert tracker.log_time > before and tracker.calls >= calls + 3  # batch, tags, terminate


def test_env_is_prepared(state_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_RUN_ID", "0123456789abcdef")
    monkeypatch.delenv("MLFLOW_DISABLE_TELEMETRY", raising=False)
    tracker = Tracker(None, state_dir)
    assert "MLFLOW_RUN_ID" not in os.environ  # it would redirect fluent logging in Ray workers
    assert os.environ["MLFLOW_DISABLE_TELEMETRY"] == "true"
    assert tracker.tracking_uri == f"sqlite:///{state_dir.resolve()}/mlflow.db"


def test_file_store_works_with_its_opt_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    tracker = Tracker(str(tmp_path / "mlruns"), tmp_path / "state")
    assert tracker.tracking_uri == (tmp_path / "mlruns").resolve().as_uri()
    assert os.environ["MLFLOW_ALLOW_FILE_STORE"] == "true"
    parent = tracker.start_sweep("files", "h", "", [])
    rid = tracker.start_cell(parent, "cell-1", "one", {"seed": 0}, {"ablate.norm": "i_ln"})
    tracker.log(rid, {"val/psnr": 30.0}, 5)
    tracker.end_cell(rid, "finished", summary={"final/psnr": 31.0})
    runs = tracker.cell_runs("files")
    assert RunStore(tracker.tracking_uri).backend == "client"
    assert runs[0]["status"] == "finished" and runs[0]["metrics"]["final/psnr"] == 31.0


def test_experiments_are_marked_as_model_training(tracker: Tracker) -> None:
    kind = "mlflow.experimentKind"
    tracker.start_sweep("fresh", "h", "", [])
    assert tracker.client.get_experiment_by_name("fresh").tags[kind] == "custom_model_development"
    old = tracker.client.create_experiment("older")  # made before ablate set the kind
    chosen = tracker.client.create_experiment("chosen", tags={kind: "genai_development"})
    assert tracker.experiment_id("older", create=False) == old  # reading marks nothing
    assert kind not in tracker.client.get_experiment(old).tags
    tracker.start_sweep("older", "h", "", [])
    tracker.start_sweep("chosen", "h", "", [])
    assert tracker.client.get_experiment(old).tags[kind] == "custom_model_development"
    assert tracker.client.get_experiment(chosen).tags[kind] == "genai_development"  # a kind someone chose stays


def _note(tracker: Tracker, run_id: str) -> str:
    note: str = tracker.client.get_run(run_id).data.tags["mlflow.note.content"]
    return note


def test_sweep_and_cell_runs_describe_themselves(tracker: Tracker) -> None:
    plan = [{"id": "cell-a", "norm": "token_ln", "rescale": False, "backbone": "swinir-tiny", "task": "sr-x2",
             "seed": 0},
            {"id": "cell-b", "norm": "global_ln", "rescale": True, "backbone": "swinir-tiny", "task": "sr-x2",
             "seed": 0},
            {"id": "cell-c", "norm": "batch_norm", "rescale": False, "backbone": "swinir-tiny", "task": "sr-x2",
             "seed": 0}]
    parent = tracker.start_sweep("described", "h", "name: described\n", plan)
    assert "### Plan of `described`" in _note(tracker, parent)
    assert "| `cell-b` | `global_ln` | True | `swinir-tiny` | `sr-x2` | 0 |" in _note(tracker, parent)
    params = {"norm": "global_ln", "rescale": True, "backbone": "swinir-tiny", "task": "sr-x2", "seed": 0,
              "data": "skimage"}
    rb = tracker.start_cell(parent, "cell-b", "global_ln+rescale·swinir-tiny·sr-x2·s0", params,
                            {"ablate.norm": "global_ln+rescale"})
    running = _note(tracker, rb)
    assert running.startswith("| cell | `cell-b` |") and "| status | running |" in running
    assert "| variant | `global_ln+rescale` |" in running and "| data | `skimage` |" in running
    tracker.end_cell(rb, "diverged", "probe msq at g1.b3 exceeded train.max_msq", {"final/max_msq": 2e13})
    ended = _note(tracker, rb)
    assert "| status | **diverged** |" in ended and "| final max msq | 2e+13 |" in ended
    assert "| reason | probe msq at g1.b3 exceeded train.max\\_msq |" in ended
    ra = tracker.start_cell(parent, "cell-a", "token_ln·swinir-tiny·sr-x2·s0", {**params, "norm": "token_ln"},
                            {"ablate.norm": "token_ln"})
    tracker.end_cell(ra, "finished", "", {"final/psnr": 33.25, "final/ssim": 0.91})
    tracker.end_sweep(parent, "killed")
    results = _note(tracker, parent)
    assert "**3 cells** · 1 finished · 1 diverged · 1 not run · sweep killed" in results
    rows = [line for line in results.splitlines() if line.startswith("| `cell-")]
    assert [row.split(" | ")[0] for row in rows] == ["| `cell-a`", "| `cell-b`", "| `cell-c`"]  # the plan's order
    assert rows[0].endswith("| finished | 33.25 | 0.9100 | – | – |")
    assert tracker.client.get_run(parent).data.tags["ablate.status"] == "killed"

    # a Tracker that did not start them (another process) still describes what it ends
    other = Tracker(tracker.tracking_uri, tracker.state_dir)
    p2 = tracker.start_sweep("described", "h", "", plan)
    rc = tracker.start_cell(p2, "cell-c", "c", {"norm": "batch_norm", "seed": 0}, {"ablate.norm": "batch_norm"})
    other.end_cell(rc, "failed", "boom")
    assert "| status | **failed** |" in _note(other, rc) and "| norm | `batch_norm` |" in _note(other, rc)
    other.end_sweep(p2, "failed")
    assert "**3 cells** · 1 finished · 1 diverged · 1 failed · sweep failed" in _note(other, p2)


def test_the_dataset_is_an_input_of_the_run_logged_once(tracker: Tracker, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real = tracker.client.log_inputs

    def spy(run_id: str, datasets: Any = None, models: Any = None) -> None:
        calls.append(run_id)
        real(run_id, datasets=datasets, models=models)

    monkeypatch.setattr(tracker.client, "log_inputs", spy)
    p1 = tracker.start_sweep("inputs", "h", "", [])
    folder = {"data.name": "folder", "data.path": str(tmp_path / "hr"), "seed": 0}
    r1 = tracker.start_cell(p1, "cell-i", "i", folder, {})
    (entry,) = tracker.client.get_run(r1).inputs.dataset_inputs
    assert entry.dataset.name == str(tmp_path / "hr") and entry.dataset.source_type == "local"
    assert json.loads(entry.dataset.source) == {"uri": str(tmp_path / "hr")}
    assert [(t.key, t.value) for t in entry.tags] == [("mlflow.data.context", "training")]
    tracker.end_cell(r1, "killed", "interrupted")
    p2 = tracker.start_sweep("inputs", "h", "", [])
    assert tracker.start_cell(p2, "cell-i", "i", folder, {}) == r1  # resumed: the same run…
    assert calls == [r1] and len(tracker.client.get_run(r1).inputs.dataset_inputs) == 1  # …and no second input
    r2 = tracker.start_cell(p2, "cell-j", "j", {"data": "skimage"}, {})
    r3 = tracker.start_cell(p2, "cell-k", "k", {"data": "skimage", "seed": 1}, {})
    d2, d3 = (tracker.client.get_run(r).inputs.dataset_inputs[0].dataset for r in (r2, r3))
    assert d2.name == d3.name == "skimage" and d2.digest == d3.digest and d2.source_type == "code"
    assert tracker.start_cell(p2, "cell-n", "n", {"seed": 0}, {}) and calls == [r1, r2, r3]  # no data, no input
