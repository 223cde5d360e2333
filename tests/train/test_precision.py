"""``train.tf32`` and the precision a Trainer records: the flags a training step runs under, restored after;
evaluation in float32; ``Trainer.provenance``."""

from __future__ import annotations

import pytest
import torch
from test_engine import tiny_cell

from ablate.train import Trainer
from ablate.train._precision import precision_name, tf32_mode


def _flags() -> tuple[bool, bool]:
    return torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32


@pytest.fixture(autouse=True)
def _restore_flags():  # type: ignore[no-untyped-def]
    before = _flags()
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


@pytest.mark.parametrize("on", [True, False])
def test_tf32_mode_sets_both_flags_and_restores_them(on: bool):
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = (not on, True)
    with tf32_mode(on):
        assert _flags() == (on, on)  # cuDNN's default (TF32 on) is overridden for an fp32 cell too
    assert _flags() == (not on, True)
    with pytest.raises(KeyError), tf32_mode(on):
        raise KeyError  # restored on an error as well
    assert _flags() == (not on, True)


def test_precision_names():
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert [precision_name(amp, False, cuda) for amp in ("none", "bf16", "fp16")] == ["fp32", "bf16", "fp16"]
    assert [precision_name(amp, True, cuda) for amp in ("none", "bf16", "fp16")] == ["tf32", "bf16+tf32",
                                                                                      "fp16+tf32"]
    assert precision_name("none", True, cpu) == "fp32"  # TF32 has no effect on the CPU: not recorded as used


@pytest.mark.parametrize("tf32", [True, False])
def test_the_training_step_runs_under_the_cells_tf32_and_validation_in_float32(tf32: bool):
    trainer = Trainer(tiny_cell(**{"train.tf32": tf32, "probes.every": 0}))
    seen: dict[str, list[tuple[bool, bool]]] = {"forward": [], "backward": []}
    model = trainer.state.model
    model.register_forward_hook(lambda *_: seen["forward"].append(_flags()))
    next(model.parameters()).register_hook(lambda grad: seen["backward"].append(_flags()))
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = (not tf32, not tf32)
    trainer.step(1)
    assert seen == {"forward": [(tf32, tf32)], "backward": [(tf32, tf32)]}
    assert _flags() == (not tf32, not tf32)  # the process's settings are back after the step
    seen["forward"].clear()
    trainer.state.ema = None  # validation runs the trained model itself, whose hook records the flags
    trainer.evaluate(trainer.spec.train.eval_every)
    assert seen["forward"] and set(seen["forward"]) == {(False, False)}


def test_provenance_on_the_cpu():
    got = Trainer(tiny_cell()).provenance()
    assert {k: got[k] for k in ("precision", "optimizer_impl", "degrade_on", "attention", "compile",
                                "deterministic")} == {
        "precision": "fp32", "optimizer_impl": "foreach", "degrade_on": "cpu", "attention": "math",
        "compile": "off", "deterministic": "off"}
    assert got["norm"]  # the normalizer's kernel description
    assert Trainer(tiny_cell(**{"train.amp": "bf16", "train.tf32": True})).provenance()["precision"] == "bf16"
