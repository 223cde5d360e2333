"""``run_eval`` on cells trained into a real MLflow store: what lands on the runs, and what a rerun redoes.

The test set is the cells' own validation folder, scored whole with the trainer's seed, so the
numbers ``ablate eval`` logs must be the trainer's final numbers to the last digit — the check that
the weights (EMA included), the protocol and the images are the same — and the bicubic baseline must
be the trainer's ``ref/psnr_input``.
"""

from __future__ import annotations

import dataclasses
import io
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from ablate.errors import AblateError
from ablate.evaluate import EvalOptions, EvalSummary, LocalRunner, build_model, checkpoint_dir, run_eval
from ablate.train import CHECKPOINT_FILE, load_checkpoint, save_checkpoint

Trained = Any  # tests/evaluate/conftest.py's Trained: the store, its spec and its runs


def _eval(trained: Trained, spec: Any = None, runner: Any = None, **kw: Any) -> tuple[EvalSummary, str]:
    buf = io.StringIO()
    summary = run_eval(spec or trained.spec, EvalOptions(state_dir=trained.state, stream=buf, **kw), runner)
    return summary, buf.getvalue()


def _runs(trained: Trained) -> dict[str, dict[str, Any]]:
    from ablate.track import Tracker

    return {r["cell"]: r for r in Tracker(None, trained.state).cell_runs(trained.spec.name, latest=True)}


def _history(trained: Trained, run_id: str, key: str) -> int:
    from ablate.track import Tracker

    return len(Tracker(None, trained.state).client.get_metric_history(run_id, key))


def test_checkpoint_dir_is_where_the_sweep_writes() -> None:
    from ablate.tune._storage import CheckpointStore

    assert checkpoint_dir(Path("/s"), "my exp/v2", "abc") == Path(CheckpointStore.open(None, Path("/s"), "my exp/v2")
                                                                  .cell_path("abc"))


def test_metrics_are_the_trainers_final_numbers(trained: Trained, tmp_path: Path) -> None:
    t = trained.copy(tmp_path / "state")
    summary, out = _eval(t)
    assert summary.ok and sorted(summary.evaluated) == sorted(t.runs), out
    assert "bicubic · sr-x2" in out and "[3/3]" in out and "small" in out
    for cell_id, run in _runs(t).items():
        m = run["metrics"]
        assert m["eval/small/psnr"] == pytest.approx(m["final/psnr"], abs=1e-9), cell_id
        assert m["eval/small/ssim"] == pytest.approx(m["final/ssim"], abs=1e-9)
        assert m["eval/small/psnr_fp16"] == pytest.approx(m["final/psnr_fp16"], abs=1e-9)
        assert "eval/small/ssim_fp16" in m and "eval/small/psnr_bf16" not in m
        # the bicubic baseline on the same images is the trainer's ref/psnr_input
        assert m["eval/small/psnr_input"] == pytest.approx(m["ref/psnr_input"], abs=1e-12)
        info = json.loads(run["tags"]["ablate.eval.small"])
        assert info["images"] == 3 and info["task"] == "sr-x2" and info["baseline"] == "bicubic"
        assert info["self_ensemble"] is False and info["seed"] == 1234 and info["index"] == 0
    # the EMA cell was scored with its EMA weights: its model weights score differently
    ema_cell = next(c for c in _cells(t) if c.train.ema > 0)
    state = load_checkpoint(checkpoint_dir(t.state, t.spec.name, ema_cell.id))
    ema_model, weights = build_model(ema_cell, state)
    raw_model, raw = build_model(ema_cell, {**state, "ema": None})
    assert (weights, raw) == ("ema", "model")
    assert any((a - b).abs().max() > 0 for a, b in zip(ema_model.parameters(), raw_model.parameters()))


def _cells(t: Trained) -> list[Any]:
    from ablate.spec import expand

    return expand(t.spec)


def test_a_rerun_evaluates_only_what_is_missing(trained: Trained, tmp_path: Path) -> None:
    t = trained.copy(tmp_path / "state")
    _eval(t)
    again, out = _eval(t)
    assert again.evaluated == [] and sorted(again.up_to_date) == sorted(t.runs)
    assert "3 of 3 cells already evaluated" in out and "PSNR" not in out
    # a new precision: only it runs; the fp32 numbers are not logged a second time
    ev = t.spec.eval
    more = dataclasses.replace(t.spec, eval=dataclasses.replace(ev, precisions=("fp32", "fp16", "bf16")))
    third, out = _eval(t, more)
    assert sorted(third.evaluated) == sorted(t.runs)
    assert "PSNR bf16" in out and "PSNR fp16" not in out and "bicubic" not in out
    run_id = next(iter(t.runs.values()))
    assert _runs(t)[next(iter(t.runs))]["metrics"]["eval/small/psnr_bf16"] > 0
    assert _history(t, run_id, "eval/small/psnr") == 1
    # --force redoes everything, the baseline included
    _, out = _eval(t, more, force=True)
    assert "PSNR fp16" in out and "bicubic · sr-x2" in out
    assert _history(t, run_id, "eval/small/psnr") == 2 and _history(t, run_id, "eval/small/psnr_input") == 2


def test_self_ensemble_setting_change_reevaluates_the_set(trained: Trained, tmp_path: Path) -> None:
    t = trained.copy(tmp_path / "state")
    ev = dataclasses.replace(t.spec.eval, precisions=("fp32",))
    spec = dataclasses.replace(t.spec, eval=ev)
    _eval(t, spec)
    plain = {c: r["metrics"]["eval/small/psnr"] for c, r in _runs(t).items()}
    summary, out = _eval(t, dataclasses.replace(spec, eval=dataclasses.replace(ev, self_ensemble=True)))
    assert sorted(summary.evaluated) == sorted(t.runs) and "self-ensemble ×8" in out
    runs = _runs(t)
    for cell_id, run in runs.items():
        assert json.loads(run["tags"]["ablate.eval.small"])["self_ensemble"] is True
        assert run["metrics"]["eval/small/psnr"] != plain[cell_id]


def test_the_checkpoint_artifact_stands_in_for_a_missing_local_file(trained: Trained, tmp_path: Path) -> None:
    t = trained.copy(tmp_path / "state")
    # another machine: only the MLflow store is here (the copied store's artifact location is the
    # original state folder's, which the MLflow client downloads from like any artifact store)
    shutil.rmtree(t.state / "checkpoints")
    summary, out = _eval(t)
    assert summary.ok and sorted(summary.evaluated) == sorted(t.runs), out
    for run in _runs(t).values():
        assert (t.state / "eval" / t.spec.name / run["run_id"] / CHECKPOINT_FILE).is_file()
        assert run["metrics"]["eval/small/psnr"] == pytest.approx(run["metrics"]["final/psnr"], abs=1e-9)


def test_cells_without_a_usable_checkpoint(trained: Trained, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import ablate.track

    t = trained.copy(tmp_path / "state")
    # no artifacts either (the copied store still points at the original's artifact folder)
    monkeypatch.setattr(ablate.track, "download_artifact", lambda *a, **k: None)
    cells = _cells(t)
    a, b, c = cells
    # a: no checkpoint anywhere, and recorded diverged
    shutil.rmtree(checkpoint_dir(t.state, t.spec.name, a.id))
    from ablate.track import Tracker

    Tracker(None, t.state).set_tags(t.runs[a.id], {"ablate.status": "diverged"})
    # b: another cell's checkpoint in its folder; c: a checkpoint cut short of the last step
    shutil.copyfile(checkpoint_dir(t.state, t.spec.name, c.id) / CHECKPOINT_FILE,
                    checkpoint_dir(t.state, t.spec.name, b.id) / CHECKPOINT_FILE)
    state = load_checkpoint(checkpoint_dir(t.state, t.spec.name, c.id))
    save_checkpoint(checkpoint_dir(t.state, t.spec.name, c.id), {**state, "step": 2})
    summary, out = _eval(t)
    assert "checkpoint_every" in summary.skipped[a.id] and "no checkpoint" in summary.skipped[a.id]
    assert f"the checkpoint belongs to cell {c.id}, not {b.id}" in summary.failed[b.id]
    assert "is at step 2 but the cell's run ended at step 4" in summary.failed[c.id]
    assert summary.evaluated == [] and "Traceback" not in out
    # the baseline still landed on the cells that had a checkpoint file to try
    runs = _runs(t)
    assert "eval/small/psnr_input" in runs[b.id]["metrics"] and "eval/small/psnr_input" not in runs[a.id]["metrics"]


def test_an_experiment_without_finished_cells_is_one_line(trained: Trained, tmp_path: Path) -> None:
    t = trained.copy(tmp_path / "state")
    spec = dataclasses.replace(t.spec, name="never-run")
    with pytest.raises(AblateError, match="has no finished cell .* run `ablate run"):
        _eval(t, spec)


def test_local_runner_describes_itself() -> None:
    assert LocalRunner().description == "in this process"


@pytest.mark.slow
def test_ray_runner_gives_the_same_numbers(trained: Trained, tmp_path: Path, ray_session: str) -> None:
    from ablate.tune import RayEvalRunner

    t = trained.copy(tmp_path / "state")
    runner = RayEvalRunner.for_spec(t.spec, cpus=1)
    summary, out = _eval(t, runner=runner)
    assert summary.ok and sorted(summary.evaluated) == sorted(t.runs), out
    assert "on Ray (1 CPU per cell)" in out
    for run in _runs(t).values():
        assert run["metrics"]["eval/small/psnr"] == pytest.approx(run["metrics"]["final/psnr"], abs=1e-9)
