"""``train.compile``: the training step through ``torch.compile``, and the one-line fallback where it fails.

The failures are forced by replacing ``torch.compile`` (monkeypatch): the real ones (no C++ compiler,
an unsupported Python or operator) depend on the machine. Inductor on this CPU takes minutes for a
first call, so the real compile test uses the ``aot_eager`` backend: Dynamo's tracing and
AOTAutograd's compiled backward, without inductor's code generation.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from test_engine import Recorder, tiny_cell
from torch import nn

from ablate.train import Trainer, load_checkpoint, run_cell
from ablate.train._compile import StepModel


class _Broken(nn.Module):
    """What ``torch.compile`` returns where it cannot work: raises at its first call, after ``before``."""

    def __init__(self, model: nn.Module, before: Callable[[nn.Module], Any] = lambda m: None) -> None:
        super().__init__()
        self.model, self.before = model, before

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.before(self.model)
        raise RuntimeError("backend='inductor' raised:\nInvalidCxxCompiler: No working C++ compiler found")


def _one_warning(err: str) -> None:
    lines = [line for line in err.splitlines() if "train.compile" in line]
    assert lines == ["warning: train.compile: torch.compile failed (RuntimeError: backend='inductor' raised:); "
                     "training uncompiled"], err
    assert "InvalidCxxCompiler" not in err  # one line, not the compiler's whole story


def test_a_compile_that_fails_at_the_first_step_warns_once_and_trains_the_same_cell_uncompiled(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path):
    # batch_norm: the failed attempt runs the model first, so its running statistics must be put back
    spec = {"norm": "batch_norm", "probes.every": 0}
    plain = run_cell(tiny_cell(**spec), Recorder(), checkpoint_dir=tmp_path / "plain")
    capsys.readouterr()
    monkeypatch.setattr(torch, "compile", lambda model, **kw: _Broken(model, before=lambda m: m(torch.rand(2, 3, 8, 8))))
    trainer = Trainer(tiny_cell(**spec, **{"train.compile": True}), Recorder(), checkpoint_dir=tmp_path / "fell")
    result = trainer.run()
    _one_warning(capsys.readouterr().err)
    assert trainer.step_model.compiled is None
    assert result.status == "finished" and result.summary["final/psnr"] == plain.summary["final/psnr"]
    a, b = load_checkpoint(tmp_path / "plain")["model"], load_checkpoint(tmp_path / "fell")["model"]
    for name, tensor in a.items():
        assert torch.equal(tensor, b[name]), name  # running_mean/var included


def test_a_compile_that_fails_when_asked_for_warns_once_and_trains_uncompiled(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):
    def refuse(model: nn.Module, **options: Any) -> nn.Module:
        raise RuntimeError("backend='inductor' raised:\ntorch.compile is not supported on this Python")

    monkeypatch.setattr(torch, "compile", refuse)
    trainer = Trainer(tiny_cell(**{"train.compile": True, "probes.every": 0}))
    _one_warning(capsys.readouterr().err)
    trainer.step(1)
    assert trainer.step_model.compiled is None and trainer.state.loss_n == 1


def test_only_the_first_compiled_step_may_fall_back():
    calls: list[str] = []

    def failing_step(model: nn.Module) -> None:
        calls.append(type(model).__name__)
        raise ValueError("a later failure")

    step_model = StepModel(nn.Linear(2, 2), compile=False)
    step_model.compiled, step_model._untried = nn.Identity(), False  # a compiled step already ran
    with pytest.raises(ValueError, match="a later failure"):
        step_model.run(failing_step)
    assert calls == ["Identity"]  # not retried on the plain model


def test_compile_false_never_calls_torch_compile(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(torch, "compile", lambda model, **kw: pytest.fail("torch.compile called"))
    trainer = Trainer(tiny_cell(**{"probes.every": 0}))
    trainer.step(1)
    assert trainer.step_model.compiled is None


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Dynamo detected a call to a `functools.lru_cache`")  # position_bias's index
def test_a_compiled_step_trains_like_the_eager_one(monkeypatch: pytest.MonkeyPatch):
    real_compile = torch.compile
    monkeypatch.setattr(torch, "compile", lambda model, **kw: real_compile(model, **kw, backend="aot_eager"))
    over = {"probes.every": 2, "train.ema": 0.9}  # probes hook the plain model between compiled steps
    compiled = Trainer(tiny_cell(**over, **{"train.compile": True}))
    eager = Trainer(tiny_cell(**over))
    for step in (1, 2, 3):
        for trainer in (compiled, eager):
            trainer.step(step)
            trainer.probe(step)
    assert compiled.step_model.compiled is not None  # it really ran compiled
    torch.testing.assert_close(compiled.state.loss_sum, eager.state.loss_sum, rtol=1e-4, atol=0)
    for a, b in zip(compiled.state.model.parameters(), eager.state.model.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-5)
    # one model: the checkpoint of a compiled cell has the plain module's keys
    assert compiled.state.state_dict()["model"].keys() == eager.state.state_dict()["model"].keys()
