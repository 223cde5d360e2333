"""Mixed precision (``train.amp``): float32 statistics in every built-in norm under autocast, and the
trainer's fp16 (with its gradient scaler, part of the checkpoint) and bf16 on the CPU.

CPU autocast runs both float16 and bfloat16 (torch 2.13), and ``torch.amp.GradScaler("cpu")`` works,
so everything here runs without a GPU.
"""

from __future__ import annotations

import copy
import math
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
from test_engine import Recorder, tiny_cell
from torch.utils._python_dispatch import TorchDispatchMode

from ablate.norms import resolve_norm
from ablate.registry import NORMS
from ablate.train import Trainer, TrainState, load_checkpoint, run_cell, save_checkpoint

BUILT_IN_NORMS = sorted(k for k in NORMS.keys() if NORMS.entry(k).source == "ablate")
LOW = {"fp16": torch.float16, "bf16": torch.bfloat16}
# reductions whose accumulation type is their input's; the fused layer_norm kernel accumulates in
# float32 whatever its input (the overflow test below is what checks it)
_REDUCTIONS = {"mean", "sum", "linalg_vector_norm", "var_mean", "var", "std", "norm", "native_batch_norm",
               "native_group_norm"}


class _Reductions(TorchDispatchMode):
    """Records the input dtype of every reduction that runs (after autocast has cast the inputs)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, torch.dtype]] = []

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        name = func.overloadpacket.__name__
        if name in _REDUCTIONS and args and isinstance(args[0], torch.Tensor):
            self.seen.append((name, args[0].dtype))
        return func(*args, **(kwargs or {}))


def _norms(name: str) -> list[torch.nn.Module]:
    """The norm's residual-site layer, with and without rescale where it has a σ to rescale by."""
    variant = resolve_norm(name)
    if name not in NORMS.keys() or variant.normalizer.sigma is None or name == "i_ln":  # i_ln fixes rescale
        return [variant(8, site="attn")]
    return [resolve_norm(name, rescale)(8, site="attn") for rescale in (False, True)]


def _big_features(dtype: torch.dtype) -> torch.Tensor:
    """(2, 64, 8) features of std ≈ 400: a variance ≈ 1.6e5 that float16 (max 65504) cannot hold."""
    gen = torch.Generator().manual_seed(0)
    return (torch.randn(2, 64, 8, generator=gen) * 400 + 50).to(dtype)


@pytest.mark.parametrize("amp", sorted(LOW))
@pytest.mark.parametrize("name", BUILT_IN_NORMS)
def test_every_built_in_norm_reduces_in_float32_under_autocast(name: str, amp: str):
    dtype = LOW[amp]
    for norm in _norms(name):
        for x_dtype in (dtype, torch.float32):  # the residual stream in low precision, or promoted
            x = _big_features(x_dtype).requires_grad_(True)
            with torch.autocast("cpu", dtype=dtype), _Reductions() as forward:
                y, sigma = norm.normalize(x)
            with _Reductions() as backward:
                torch.autograd.grad((y.float() * 1e-3).sum(), x)
            low = [(op, str(t)) for op, t in forward.seen + backward.seen if t != torch.float32]
            assert not low, f"{norm}: reductions in {x_dtype} under {amp} autocast: {low}"


@pytest.mark.parametrize("amp", sorted(LOW))
@pytest.mark.parametrize("name", BUILT_IN_NORMS)
def test_every_built_in_norm_normalizes_features_whose_variance_overflows_half(name: str, amp: str):
    dtype = LOW[amp]
    for norm in _norms(name):
        reference = copy.deepcopy(norm)  # batch_norm updates its running statistics
        x = _big_features(dtype)
        with torch.autocast("cpu", dtype=dtype):
            y, sigma = norm.normalize(x)
        y_ref, sigma_ref = reference.normalize(x.float())
        assert torch.isfinite(y).all(), f"{norm} under {amp}: non-finite output"
        # equal to the float32 computation up to rounding the output to the low-precision type
        torch.testing.assert_close(y.float(), y_ref.to(dtype).float(), rtol=2e-2, atol=2e-2)
        if sigma is not None:
            assert sigma_ref is not None and torch.isfinite(sigma).all()
            torch.testing.assert_close(sigma.float(), sigma_ref.to(dtype).float(), rtol=2e-2, atol=0.0)


# --- the trainer under fp16 and bf16 ------------------------------------------------------------------


@pytest.mark.parametrize("amp", ["fp16", "bf16"])
def test_a_cell_trains_under_autocast_and_only_fp16_scales_the_loss(amp: str, tmp_path: Path):
    trainer = Trainer(tiny_cell(**{"train.amp": amp, "probes.every": 0}), checkpoint_dir=tmp_path)
    result = trainer.run()
    assert result.status == "finished" and math.isfinite(result.summary["final/psnr"])
    scaler = load_checkpoint(tmp_path)["scaler"]
    if amp == "fp16":
        assert trainer.state.scaler.is_enabled()
        assert scaler == trainer.state.scaler.state_dict() and scaler["_growth_tracker"] == 12  # no overflow
    else:
        assert not trainer.state.scaler.is_enabled() and scaler == {}


def test_fp16_clips_the_unscaled_gradients():
    norms = {}
    for amp in ("none", "fp16"):
        trainer = Trainer(tiny_cell(**{"train.amp": amp, "train.grad_clip": 1e6, "probes.every": 0}))
        norms[amp] = float(trainer.step(1))
    # the scaled gradients would be 65536× larger; fp16's forward changes the norm only by rounding
    assert norms["fp16"] == pytest.approx(norms["none"], rel=0.05), norms


def test_an_overflowing_fp16_step_is_skipped_and_the_scale_backs_off():
    trainer = Trainer(tiny_cell(**{"train.amp": "fp16", "probes.every": 0}))
    s = trainer.state
    s.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**100)  # every scaled gradient overflows
    before = [p.detach().clone() for p in s.model.parameters()]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "lr_scheduler.step() before optimizer.step()" warning
        trainer.step(1)
    assert all(torch.equal(a, b) for a, b in zip(before, s.model.parameters()))
    assert s.scaler.get_scale() == 2.0**99 and s.scheduler.last_epoch == 1  # the schedule follows the step
    assert math.isfinite(s.mean_loss())  # the loss itself was fine: no divergence


def test_fp16_stop_and_resume_restores_the_scaler_and_equals_an_uninterrupted_run(tmp_path: Path):
    spec = tiny_cell(**{"train.amp": "fp16", "train.checkpoint_every": 6, "train.ema": 0.9})
    straight = run_cell(spec, Recorder(), checkpoint_dir=tmp_path / "a")
    with pytest.raises(KeyboardInterrupt):
        run_cell(spec, Recorder(stop_at=6), checkpoint_dir=tmp_path / "b")
    halfway = load_checkpoint(tmp_path / "b")
    assert halfway["step"] == 6 and halfway["scaler"]["_growth_tracker"] == 6

    resumed_trainer = Trainer(spec, Recorder(), checkpoint_dir=tmp_path / "b")
    resumed_trainer.restore(tmp_path / "b")
    assert resumed_trainer.state.scaler.state_dict() == halfway["scaler"]
    resumed = resumed_trainer.run()
    assert resumed.status == straight.status == "finished"
    a, b = load_checkpoint(tmp_path / "a"), load_checkpoint(tmp_path / "b")
    assert a["scaler"] == b["scaler"] and b["scaler"]["_growth_tracker"] == 12
    for key in ("final/psnr", "final/ssim", "final/max_msq", "best/psnr"):
        assert resumed.summary[key] == straight.summary[key], key
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name


def test_the_scaler_round_trips_through_a_checkpoint(tmp_path: Path):
    trainer = Trainer(tiny_cell(**{"train.amp": "fp16"}))
    trainer.step(1)
    trainer.state.scaler.update(new_scale=1024.0)
    save_checkpoint(tmp_path, trainer.state.state_dict())
    fresh = Trainer(tiny_cell(**{"train.amp": "fp16"}))
    assert fresh.state.scaler.get_scale() == 65536.0
    fresh.restore(tmp_path)
    assert fresh.state.scaler.get_scale() == 1024.0


def test_a_checkpoint_from_before_the_scaler_still_resumes(tmp_path: Path):
    trainer = Trainer(tiny_cell())
    trainer.step(1)
    state = trainer.state.state_dict()
    del state["scaler"]  # what a checkpoint written before train.amp fp16 existed holds
    save_checkpoint(tmp_path, state)
    fresh = Trainer(tiny_cell())
    fresh.restore(tmp_path)
    assert fresh.state.step == 1 and "scaler" in TrainState.KEYS
