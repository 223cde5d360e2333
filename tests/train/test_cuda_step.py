"""On a GPU only: a training step between guard checks never makes the host wait for the device (no
``.item()``, no pageable copy, no Python ``if`` on a device tensor), in every precision, with the
fused optimizer, the EMA, gradient clipping and batches degraded on the GPU."""

from __future__ import annotations

import pytest
import torch
from test_engine import tiny_cell

from ablate.train import Trainer

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.parametrize("amp,tf32", [("none", False), ("none", True), ("bf16", False), ("fp16", False)])
def test_a_training_step_does_not_sync_the_host(amp: str, tf32: bool):
    trainer = Trainer(tiny_cell(**{"task": "sr-x2", "train.device": "cuda", "train.amp": amp, "train.tf32": tf32,
                                   "train.ema": 0.9, "train.grad_clip": 1.0, "train.steps": 40,
                                   "probes.every": 0}))
    assert trainer.provenance() == {"precision": {"none": "tf32" if tf32 else "fp32"}.get(amp, amp),
                                    "optimizer_impl": "fused", "degrade_on": "cuda"}
    trainer.step(1)  # the CUDA context, library handles, the optimizer's state
    torch.cuda.synchronize()
    assert trainer.guard_every > 3
    torch.cuda.set_sync_debug_mode("error")
    try:
        for step in range(2, trainer.guard_every):  # the guard's step reads the loss: that one syncs
            trainer.step(step)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert torch.isfinite(trainer.state.loss_sum)
