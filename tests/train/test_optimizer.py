"""The optimizer's implementations (fused, foreach, single-tensor) and the multi-tensor EMA: the same
math as the plain per-tensor path, bit-exact resume, and the implementation kept across a checkpoint.

The fused kernels exist on the CPU too, so the path a CUDA cell takes runs here for real.
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import pytest
import torch
from test_engine import Recorder, tiny_cell
from torch import nn

from ablate.train import Trainer, TrainState, _state, load_checkpoint, run_cell, save_checkpoint


class _Tiny(nn.Module):
    """Convolutions, a BatchNorm (float and integer buffers) and a linear head: a few kinds of tensor."""

    def __init__(self) -> None:
        super().__init__()
        # no bias before the BatchNorm: its gradient would be rounding noise, which Adam blows up to lr
        self.conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.bn(self.conv(x))).mean((-2, -1)))


def _states(optimizer: str, impls: tuple[str, ...], ema: float = 0.9) -> dict[str, TrainState]:
    spec = tiny_cell(**{"train.optimizer.name": optimizer, "train.optimizer.weight_decay": 0.01,
                        "train.ema": ema})
    torch.manual_seed(0)
    model = _Tiny()
    return {impl: TrainState.build(copy.deepcopy(model), spec, torch.device("cpu"), optimizer_impl=impl)
            for impl in impls}


def _train(state: TrainState, steps: int, decay: float = 0.9) -> None:
    gen = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x, y = torch.randn(4, 3, 8, 8, generator=gen), torch.randn(4, 3, generator=gen)
        state.optimizer.zero_grad(set_to_none=True)
        nn.functional.mse_loss(state.model(x), y).backward()
        state.optimizer.step()
        state.scheduler.step()
        state.update_ema(decay)


@pytest.mark.parametrize("optimizer", ["adam", "adamw"])
def test_fused_and_foreach_steps_equal_the_single_tensor_path(optimizer: str):
    states = _states(optimizer, ("single", "foreach", "fused"))
    init = copy.deepcopy(states["single"].model)
    for impl, state in states.items():
        assert state.optimizer_impl == impl
        group = state.optimizer.param_groups[0]
        assert (group["fused"], group["foreach"]) == (impl == "fused", impl == "foreach")
        _train(state, 20)
    ref = states["single"]
    for impl in ("foreach", "fused"):
        for (name, p), q, p0 in zip(ref.model.named_parameters(), states[impl].model.parameters(),
                                    init.parameters()):
            assert not torch.equal(p, p0), name  # trained: the updates themselves are compared
            torch.testing.assert_close(q, p, rtol=1e-5, atol=1e-6, msg=f"{impl} {name}")
        assert ref.ema is not None and states[impl].ema is not None
        for a, b in zip(ref.ema.state_dict().values(), states[impl].ema.state_dict().values()):
            torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)


def test_the_multi_tensor_ema_equals_a_loop_over_tensors():
    state = _states("adam", ("foreach",))["foreach"]
    assert state.ema is not None
    ref = copy.deepcopy(state.ema)
    for step in range(5):
        _train(state, 1, decay=0.9)
        with torch.no_grad():  # the per-tensor EMA the update replaces
            for e, p in zip(ref.parameters(), state.model.parameters()):
                e.lerp_(p, 1.0 - 0.9)
            for e, b in zip(ref.buffers(), state.model.buffers()):
                e.copy_(b)
        for (name, a), b in zip(ref.state_dict().items(), state.ema.state_dict().values()):
            assert torch.equal(a, b), (step, name)
    assert int(state.ema.bn.num_batches_tracked) == 5  # the integer buffer is copied too
    assert not torch.equal(state.ema.conv.weight, state.model.conv.weight)


def test_the_ema_copies_running_statistics_not_constants_or_later_buffers():
    state = _states("adam", ("foreach",))["foreach"]
    state.model.register_buffer("table", torch.zeros(4), persistent=False)  # a constant (mask, index)
    state.ema = copy.deepcopy(state.model).eval().requires_grad_(False)
    _train(state, 1)
    assert state._ema_lists is not None and len(state._ema_lists[2]) == 3  # BatchNorm's mean, var, count
    state.model.register_buffer("mask_17", torch.ones(17), persistent=False)  # e.g. cached for a new shape
    _train(state, 1)
    assert not hasattr(state.ema, "mask_17")
    assert torch.equal(state.ema.bn.running_mean, state.model.bn.running_mean)


def test_cpu_cells_step_with_foreach_and_cuda_cells_would_fuse():
    trainer = Trainer(tiny_cell())
    assert trainer.state.optimizer_impl == "foreach" and trainer.state.optimizer.param_groups[0]["foreach"]
    assert _state.preferred_impls(torch.device("cuda")) == ("fused", "foreach")
    assert trainer.provenance()["optimizer_impl"] == "foreach"
    with pytest.raises(ValueError, match="optimizer implementation 'apex'"):
        _states("adam", ("apex",))


@pytest.mark.parametrize("saved,resumed", [("foreach", "fused"), ("fused", "foreach"), ("single", "fused")])
def test_a_checkpoint_resumes_under_the_resuming_cells_implementation(saved: str, resumed: str, tmp_path: Path):
    states = _states("adam", (saved, resumed))
    _train(states[saved], 3)
    save_checkpoint(tmp_path, states[saved].state_dict())
    fresh = states[resumed]
    fresh.load_state_dict(load_checkpoint(tmp_path))
    group = fresh.optimizer.param_groups[0]
    assert (group["fused"], group["foreach"]) == (resumed == "fused", resumed == "foreach")
    step = fresh.optimizer.state[fresh.model.conv.weight]["step"]
    assert step.dtype == torch.float32 and float(step) == 3.0
    _train(fresh, 2)  # and steps: fused takes its step counts on the parameters' device
    assert float(fresh.optimizer.state[fresh.model.conv.weight]["step"]) == 5.0


def test_a_legacy_checkpoint_without_implementation_flags_resumes(tmp_path: Path):
    states = _states("adam", ("foreach", "fused"))
    _train(states["foreach"], 2)
    saved = states["foreach"].state_dict()
    for group in saved["optimizer"]["param_groups"]:
        group["foreach"] = group["fused"] = None  # what the optimizer's defaults saved before
    states["fused"].load_state_dict(saved)
    assert states["fused"].optimizer.param_groups[0]["fused"] is True
    _train(states["fused"], 1)


def test_fused_stop_and_resume_equals_an_uninterrupted_run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setattr(_state, "preferred_impls", lambda device: ("fused",))  # a CUDA cell's optimizer
    spec = tiny_cell(**{"train.checkpoint_every": 6, "train.ema": 0.9})
    straight = run_cell(spec, Recorder(), checkpoint_dir=tmp_path / "a")
    with pytest.raises(KeyboardInterrupt):
        run_cell(spec, Recorder(stop_at=6), checkpoint_dir=tmp_path / "b")
    resumed = run_cell(spec, Recorder(), checkpoint_dir=tmp_path / "b", resume_from=tmp_path / "b")
    a, b = load_checkpoint(tmp_path / "a"), load_checkpoint(tmp_path / "b")
    assert a["optimizer"]["param_groups"][0]["fused"] is True
    for key in ("final/psnr", "final/ssim", "best/psnr"):
        assert resumed.summary[key] == straight.summary[key], key
    for part in ("model", "ema"):
        for name, tensor in a[part].items():
            assert torch.equal(tensor, b[part][name]), (part, name)


def test_a_fused_fp16_step_that_overflows_is_skipped(monkeypatch: pytest.MonkeyPatch):
    # fused, the gradient scaler hands its inf check to the optimizer's kernel instead of reading it
    monkeypatch.setattr(_state, "preferred_impls", lambda device: ("fused",))
    trainer = Trainer(tiny_cell(**{"train.amp": "fp16", "probes.every": 0}))
    s = trainer.state
    s.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**100)
    before = [p.detach().clone() for p in s.model.parameters()]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        trainer.step(1)
    assert all(torch.equal(a, b) for a, b in zip(before, s.model.parameters()))
    assert s.scaler.get_scale() == 2.0**99
    assert float(s.optimizer.state[next(s.model.parameters())]["step"]) == 0.0  # the skipped step is not counted
    s.scaler.update(new_scale=1024.0)  # a scale the gradients fit: the next step applies
    trainer.step(2)
    assert any(not torch.equal(a, b) for a, b in zip(before, s.model.parameters()))
