"""On a GPU: the fused attention path (memory-efficient SDPA, head dim zero-padded) is what runs, no shape
falls back, and it computes what the explicit product does, forward and backward, in fp32 and bf16.

    .venv/bin/python -m pytest tests/backbones/test_backbone_cuda.py -q     # skipped without CUDA
"""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F

from ablate.backbones import attention_kernel, attention_path, build_backbone
from ablate.norms import resolve_norm

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

# the paper models at their real widths (head dims 10, 30 and DRCT's 30/53/122/46/77), shortened
MODELS = {"swinir-light": {"name": "swinir-light", "depths": [2]},
          "hat-mini": {"name": "hat-mini", "depths": [2]},
          "drct": {"name": "drct", "depths": [5]}}


def _loss_and_grads(model: torch.nn.Module, x: torch.Tensor, gt: torch.Tensor, amp: torch.dtype | None
                    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
    for p in model.parameters():
        p.grad = None
    with torch.autocast("cuda", dtype=amp or torch.float32, enabled=amp is not None):
        loss = F.l1_loss(model(x).float(), gt)
    loss.backward()
    return loss.detach(), [p.grad.detach().clone() for p in model.parameters() if p.grad is not None]


@pytest.mark.parametrize("amp", [None, torch.bfloat16])
@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("norm", ["token_ln", "i_ln"])
def test_fused_attention_runs_and_matches_the_explicit_product(name: str, norm: str, amp: torch.dtype | None
                                                               ) -> None:
    device = torch.device("cuda")
    assert attention_kernel(device) == "fused"
    torch.manual_seed(0)
    model = build_backbone(MODELS[name], resolve_norm(norm), scale=2).to(device).train()
    x = torch.rand(2, 3, 40, 56, device=device)  # not a multiple of HAT's 16: padded inside
    gt = torch.rand(2, 3, 80, 112, device=device)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a shape the fused kernel refuses warns: fail on it
        loss_f, grads_f = _loss_and_grads(model, x, gt, amp)
    with attention_path("math"):
        loss_m, grads_m = _loss_and_grads(model, x, gt, amp)
    tol = {"rtol": 1e-4, "atol": 1e-5} if amp is None else {"rtol": 2e-2, "atol": 2e-3}
    torch.testing.assert_close(loss_f, loss_m, **tol)
    scale = max(g.abs().max() for g in grads_m)
    for gf, gm in zip(grads_f, grads_m):
        torch.testing.assert_close(gf / scale, gm / scale, **tol)
