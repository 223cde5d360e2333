from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from ablate.spec import CellSpec
from ablate.train import CellResult, run_cell
from ablate.train._engine import Cell, load_checkpoint

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
    straight = run_cell(spec, Recorder(), checkpoint_dir=tmp_path / "a")

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
    assert [h["train/loss"] for h in a["history"]] == [h["train/loss"] for h in b["history"]]


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
    assert result.step == 12
    assert [h["step"] for h in result.history if "val/psnr" in h] == [6, 12]


def test_prefetched_batches_are_the_samplers_batches():
    from ablate.train._engine import _Prefetcher

    cell = Cell(tiny_cell())
    pre = _Prefetcher(cell.sampler, last=5, depth=2, pin=False)
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
