from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from ablate.errors import AblateError
from ablate.spec import CellSpec
from ablate.status import CellStatus
from ablate.train import (
    CHECKPOINT_FILE,
    CellResult,
    Trainer,
    TrainState,
    flatten_traces,
    load_checkpoint,
    run_cell,
    save_checkpoint,
)
from ablate.train._cell import Cell
from ablate.train._trainer import Diverged

TINY = {"name": "swinir-tiny", "embed_dim": 16, "depths": [1, 1], "num_heads": 2, "window_size": 4}


def tiny_cell(**over: object) -> CellSpec:
    cfg: dict = {
        "norm": "token_ln", "rescale": False, "backbone": TINY, "task": "dn-s25", "seed": 0,
        "train": {"steps": 12, "batch_size": 2, "patch_size": 16, "eval_every": 6, "val_size": 32,
                  "optimizer": {"lr": 1e-3}, "lowprec_eval": False},
        "probes": {"every": 4, "batch": 1, "patch_size": 16},
    }
    for key, value in over.items():
        node = cfg
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return CellSpec.from_config(cfg)


class Recorder:
    def __init__(self, stop_at: int | None = None) -> None:
        self.reports: list[tuple[int, dict, dict | None, Path | None]] = []
        self.stop_at = stop_at

    def report(self, step, metrics, traces=None, checkpoint=None):  # noqa: ANN001
        self.reports.append((step, dict(metrics), traces, checkpoint))
        if self.stop_at is not None and checkpoint is not None and step >= self.stop_at:
            raise KeyboardInterrupt  # what a stopped Ray trial looks like from inside


@pytest.mark.slow
def test_swinir_tiny_denoising_30_steps_lowers_the_loss():
    spec = CellSpec.from_config({
        "norm": "token_ln", "backbone": "swinir-tiny", "task": "dn-s25", "seed": 0,
        "train": {"steps": 30, "batch_size": 2, "patch_size": 32, "eval_every": 30, "val_size": 32,
                  "optimizer": {"lr": 1e-3}, "lowprec_eval": False},
        "probes": {"every": 0},
    })
    rec = Recorder()
    result = run_cell(spec, rec)
    losses = [m["train/loss"] for _, m, _, _ in rec.reports if "train/loss" in m]
    assert result.status == "finished"
    assert len(losses) >= 3
    assert losses[-1] < 0.7 * losses[0], losses
    assert math.isfinite(result.summary["final/psnr"])


def test_stop_and_resume_equals_an_uninterrupted_run(tmp_path: Path):
    spec = tiny_cell(**{"train.checkpoint_every": 6, "train.ema": 0.9})
    straight_rec = Recorder()
    straight = run_cell(spec, straight_rec, checkpoint_dir=tmp_path / "a")

    with pytest.raises(KeyboardInterrupt):
        run_cell(spec, Recorder(stop_at=6), checkpoint_dir=tmp_path / "b")
    assert load_checkpoint(tmp_path / "b")["step"] == 6
    resumed_rec = Recorder()
    resumed = run_cell(spec, resumed_rec, checkpoint_dir=tmp_path / "b", resume_from=tmp_path / "b")

    assert resumed_rec.reports[0][0] > 6  # it really continued rather than starting over
    assert resumed.status == straight.status == "finished"
    for key in ("final/psnr", "final/ssim", "final/max_msq", "best/psnr"):
        assert resumed.summary[key] == straight.summary[key], key
    a = load_checkpoint(tmp_path / "a")
    b = load_checkpoint(tmp_path / "b")
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name
    # the history is every point reported: step 0's reference PSNR and trace, then losses, evaluations
    # and traces; the resumed run's equals the uninterrupted one's, so replaying it restores MLflow
    assert _nan_as_text(a["history"]) == _nan_as_text(b["history"])
    assert a["history"][0]["step"] == 0 and "ref/psnr_input" in a["history"][0]
    assert "feat/final/msq" in a["history"][0]
    reported = [(step, {**m, **flatten_traces(t)}) for step, m, t, _ in straight_rec.reports if m or t]
    assert _nan_as_text([(h["step"], {k: v for k, v in h.items() if k != "step"}) for h in a["history"]]) == \
        _nan_as_text(reported)


def _nan_as_text(value: object) -> object:
    """``value`` with every NaN float replaced by "nan" (NaN != NaN would fail any equality)."""
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    if isinstance(value, dict):
        return {k: _nan_as_text(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_nan_as_text(v) for v in value]
    return value


def test_guard_stops_a_diverging_cell_and_keeps_its_metrics():
    rec = Recorder()
    result = run_cell(tiny_cell(**{"train.max_msq": 1e-3}), rec)
    assert result.status == "diverged"
    assert "above train.max_msq" in result.reason
    assert result.summary["final/max_msq"] > 1e-3  # what it saw is kept
    assert "final/psnr" not in result.summary


def test_guard_fires_on_a_non_finite_loss():
    result = run_cell(tiny_cell(**{"train.optimizer.lr": 1e12, "probes.every": 0}), Recorder())
    assert result.status == "diverged"
    assert "non-finite" in result.reason


def test_cells_that_differ_only_in_the_norm_share_init_and_batches():
    a, b = Cell(tiny_cell()), Cell(tiny_cell(norm="global_ln", rescale=True))
    sa, sb = a.model.state_dict(), b.model.state_dict()
    shared = [k for k in sa if k in sb and sa[k].shape == sb[k].shape]
    assert len(shared) > 10
    for k in shared:
        assert torch.equal(sa[k], sb[k]), k
    for step in (1, 5):
        la, ga = a.sampler.batch(step)
        lb, gb = b.sampler.batch(step)
        assert torch.equal(la, lb) and torch.equal(ga, gb)
    # and a different seed really is different
    c = Cell(tiny_cell(seed=1))
    assert not torch.equal(c.model.state_dict()["conv_first.weight"], sa["conv_first.weight"])


def test_probes_report_every_site_and_low_precision_psnr_is_its_own_metric():
    rec = Recorder()
    result = run_cell(tiny_cell(**{"train.lowprec_eval": True}), rec)
    traces = [t for _, _, t, _ in rec.reports if t]
    assert [s for s, *_ in rec.reports if _[1] is not None][:1] == [0]  # the untrained state is step 0
    assert len(traces) == 4  # steps 0, 4, 8, 12
    assert list(traces[0])[-1] == "final" and "g0.b0" in traces[0]
    assert set(traces[0]["g0.b0"]) == {"msq", "maxabs", "entropy", "top1"}
    for key in ("final/psnr_fp16", "final/psnr_bf16", "ref/psnr_input"):
        assert math.isfinite(result.summary[key]), key
    assert abs(result.summary["final/psnr_bf16"] - result.summary["final/psnr"]) < 3.0


def test_result_type_and_history():
    result = run_cell(tiny_cell(), None)
    assert isinstance(result, CellResult)
    assert result.status is CellStatus.FINISHED and result.status == "finished"
    assert result.step == 12
    assert [h["step"] for h in result.history if "val/psnr" in h] == [6, 12]


def test_prefetched_batches_are_the_samplers_batches():
    from ablate.train._prefetch import Prefetcher

    cell = Cell(tiny_cell())
    pre = Prefetcher(cell.sampler, last=5, depth=2, device=torch.device("cpu"))
    try:
        for step in range(1, 6):
            lq, gt = pre.get(step)
            ref_lq, ref_gt = cell.sampler.batch(step)
            assert torch.equal(lq, ref_lq) and torch.equal(gt, ref_gt)
        assert not pre.pending  # nothing prepared past the last step
    finally:
        pre.close()


def test_grad_clip_reports_the_norm_at_report_steps_only():
    plain, clipped = Recorder(), Recorder()
    run_cell(tiny_cell(**{"probes.every": 0}), plain)
    run_cell(tiny_cell(**{"probes.every": 0, "train.grad_clip": 0.01}), clipped)
    assert [s for s, *_ in clipped.reports] == [s for s, *_ in plain.reports]
    norms = [m["train/grad_norm"] for _, m, _, _ in clipped.reports if "train/grad_norm" in m]
    assert norms and all(math.isfinite(n) and n > 0 for n in norms)
    assert not any("train/grad_norm" in m for _, m, _, _ in plain.reports)


# --- TrainState: the checkpoint's contents ------------------------------------------------------------


def _advance(trainer: Trainer, step: int) -> None:
    """One iteration of the training loop, as ``Trainer.run`` does it."""
    grad_norm = trainer.step(step)
    traces = trainer.probe(step)
    trainer.end_step(step, trainer.evaluate(step), traces, grad_norm)


def _same(a: object, b: object) -> bool:
    """Deep equality where tensors compare exactly."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return isinstance(b, (list, tuple)) and len(a) == len(b) and all(map(_same, a, b))
    return a == b


def test_train_state_round_trips_through_a_checkpoint_under_its_one_list_of_keys(tmp_path: Path):
    import random

    import numpy as np

    spec = tiny_cell(**{"train.ema": 0.9, "probes.every": 2})
    trainer = Trainer(spec)
    for step in (1, 2):
        _advance(trainer, step)
    trainer.step(3)  # a loss left in the accumulator
    np.random.randn()  # numpy now holds a cached gaussian
    saved = trainer.state.state_dict()
    assert tuple(saved) == TrainState.KEYS
    save_checkpoint(tmp_path, saved)
    draws = (torch.rand(3), np.random.randn(3), random.random())

    fresh = Trainer(spec)
    fresh.restore(tmp_path)
    assert (torch.rand(3).tolist(), np.random.randn(3).tolist(), random.random()) == (
        draws[0].tolist(), draws[1].tolist(), draws[2])
    restored = fresh.state.state_dict()
    rng = restored.pop("rng"), saved.pop("rng")
    assert _same(restored, saved)
    assert restored["step"] == 3 and restored["loss_acc"][1] == 1 and restored["cell"] == spec.to_config()
    assert rng[0].keys() == rng[1].keys()


def test_train_state_refuses_a_checkpoint_that_lacks_keys(tmp_path: Path):
    trainer = Trainer(tiny_cell())
    state = trainer.state.state_dict()
    del state["scheduler"]
    with pytest.raises(AblateError, match="checkpoint: missing scheduler"):
        trainer.state.load_state_dict(state)


# --- Trainer, method by method ------------------------------------------------------------------------


def test_trainer_step_trains_on_the_batch_of_the_step_and_accumulates_its_loss():
    trainer = Trainer(tiny_cell(**{"train.ema": 0.9}))
    s = trainer.state
    before = [p.detach().clone() for p in s.model.parameters()]
    assert trainer.step(1) is None  # no grad_clip, no norm
    assert s.step == 1 and s.loss_n == 1 and s.loss_sum.item() > 0
    assert s.scheduler.last_epoch == 1
    assert any(not torch.equal(a, b) for a, b in zip(before, s.model.parameters()))
    assert s.ema is not None
    ema = list(s.ema.parameters())
    assert any(not torch.equal(e, b) and not torch.equal(e, p) for e, b, p in zip(ema, before, s.model.parameters()))


def test_trainer_step_returns_the_clipped_norm_and_guards_the_loss():
    clipped = Trainer(tiny_cell(**{"train.grad_clip": 0.01}))
    norm = clipped.step(1)
    assert norm is not None and math.isfinite(float(norm)) and float(norm) > 0
    wild = Trainer(tiny_cell(**{"train.optimizer.lr": 1e12, "probes.every": 0}))
    with pytest.raises(Diverged, match="non-finite loss by step 5"):  # checked every guard_every steps
        for step in range(1, wild.guard_every + 1):
            wild.step(step)


def test_trainer_probe_measures_when_due_and_stops_an_exploding_cell():
    trainer = Trainer(tiny_cell())
    assert trainer.probe(3) is None and trainer.state.last_trace == {}
    trace = trainer.probe(4)
    assert trace is not None and trainer.state.last_trace is trace and "final" in trace

    rec = Recorder()
    exploding = Trainer(tiny_cell(**{"train.max_msq": 1e-3}), rec)
    exploding.step(1)
    with pytest.raises(Diverged, match="above train.max_msq .* at step 4"):
        exploding.probe(4)
    assert [(s, list(m)) for s, m, t, _ in rec.reports if t] == [(4, ["train/loss"])]


def test_trainer_evaluate_when_due_and_at_the_last_step():
    trainer = Trainer(tiny_cell(**{"train.eval_every": 5}))
    assert trainer.evaluate(4) == {} and trainer.state.best_psnr == float("-inf")
    metrics = trainer.evaluate(5)
    assert list(metrics) == ["val/psnr", "val/ssim"]
    assert trainer.state.best_psnr == metrics["val/psnr"]
    assert list(trainer.evaluate(12)) == ["val/psnr", "val/ssim"]  # the last step, not a multiple of 5


def test_trainer_log_reports_the_mean_loss_and_checkpoints_on_the_cadence(tmp_path: Path):
    rec = Recorder()
    trainer = Trainer(tiny_cell(**{"train.checkpoint_every": 3, "probes.every": 0}), rec, tmp_path)
    s = trainer.state
    for step in (1, 2, 3):
        _advance(trainer, step)
    assert [(step, m, ckpt) for step, m, _, ckpt in rec.reports] == [(3, {}, tmp_path)]  # checkpoint only
    assert load_checkpoint(tmp_path)["step"] == 3 and s.loss_n == 3  # the loss keeps accumulating
    mean = s.mean_loss()
    for step in (4, 5):
        _advance(trainer, step)
    step, metrics, _, ckpt = rec.reports[-1]
    assert step == 5 and ckpt is None and list(metrics) == ["train/loss", "train/lr"]
    assert metrics["train/loss"] != mean and s.loss_n == 0 and s.loss_sum.item() == 0
    assert s.history == [{"step": 5, **metrics}]


def test_trainer_final_eval_and_summary():
    trainer = Trainer(tiny_cell(**{"train.lowprec_eval": True}))
    summary = trainer.summary({})
    assert list(summary) == ["ref/psnr_input", "steps", "time/train_s", "time/probe_s", "time/eval_s",
                             "time/total_s", "params"]
    final = trainer.final_eval()
    assert list(final) == ["final/psnr", "final/ssim", "final/psnr_fp16", "final/psnr_bf16"]
    trainer.probe(4)
    trainer.evaluate(6)
    summary = trainer.summary(final)
    assert list(summary)[:7] == ["ref/psnr_input", "steps", *final, "best/psnr"]
    assert {"final/max_msq", "final/deep_msq", "final/deep_entropy", "final/deep_top1"} <= set(summary)
    assert summary["params"] == sum(p.numel() for p in trainer.state.model.parameters())


def test_trainer_save_and_restore(tmp_path: Path):
    assert Trainer(tiny_cell()).save() is None  # no checkpoint_dir, no checkpoint
    trainer = Trainer(tiny_cell(), checkpoint_dir=tmp_path)
    trainer.step(1)
    assert trainer.save() == tmp_path
    assert tuple(load_checkpoint(tmp_path / CHECKPOINT_FILE)) == TrainState.KEYS
    fresh = Trainer(tiny_cell())
    fresh.restore(tmp_path / CHECKPOINT_FILE)
    assert fresh.state.step == 1
    (tmp_path / CHECKPOINT_FILE).write_bytes(b"not a checkpoint")
    with pytest.raises(AblateError, match="is unreadable"):
        fresh.restore(tmp_path)
