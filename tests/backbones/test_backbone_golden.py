"""Whole models against the implementation before the fused kernels (commit 2d8e800), in float64.

    .venv/bin/python -m pytest tests/backbones/test_backbone_golden.py -q

The numbers below were computed by that implementation (roll + window partition, per-call masks, the
hand-written Global LN backward) from the same seeds: the output (weighted by a fixed random map), the
gradient norm of the first conv and the sum of every squared parameter gradient. Both attention paths
of today's code — the explicit product (the CPU's) and the fused layout (what CUDA runs: head dim
zero-padded, bias and shift mask as an additive mask, SDPA) — must reproduce them to float64 rounding.
"""

from __future__ import annotations

import pytest
import torch

from ablate.backbones import build_backbone
from ablate.backbones._common import attention_path
from ablate.norms import resolve_norm

GOLDEN = {
    "swinir-tiny/token_ln": (1303.1926956605364, 503.22959485155485, 78202402.40680835),
    "swinir-tiny/i_ln": (1316.3382532556384, 225.18874102929115, 13077639.836839762),
    "hat-tiny/token_ln": (1323.6754926409317, 143.44333128748806, 18062068.35913551),
    "hat-tiny/i_ln": (1421.3896237144454, 70.97338796595973, 6472403.645023133),
    "drct-tiny/token_ln": (1322.292317568864, 105.10053888135081, 8654665.206277026),
    "drct-tiny/i_ln": (1325.783310169119, 41.57262031993846, 4971479.519707765),
}


def _measure(family: str, norm: str) -> tuple[float, float, float]:
    torch.manual_seed(0)
    model = build_backbone(family, resolve_norm(norm), scale=2).double().train()
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(2, 3, 13, 21, generator=gen, dtype=torch.float64)  # padded to the window inside
    y = model(x)
    weight = torch.rand(y.shape, generator=gen, dtype=torch.float64)
    objective = (y * weight).sum()
    objective.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert model.conv_first.weight.grad is not None
    return (float(objective.detach()), float(model.conv_first.weight.grad.norm()),
            float(sum(g.square().sum() for g in grads)))


@pytest.mark.parametrize("path", ["math", "fused"])
@pytest.mark.parametrize("key", sorted(GOLDEN))
def test_models_compute_what_the_previous_implementation_did(key: str, path: str) -> None:
    family, norm = key.split("/")
    with attention_path(path):
        got = _measure(family, norm)
    for value, expected in zip(got, GOLDEN[key]):
        assert value == pytest.approx(expected, rel=1e-10), (key, path, got, GOLDEN[key])


@pytest.mark.parametrize("family", ["swinir-tiny", "hat-tiny", "drct-tiny"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_a_low_precision_model_evaluates_in_its_dtype(family: str, dtype: torch.dtype) -> None:
    """``train.lowprec_eval`` copies the model to fp16/bf16: the float32 shift mask must follow its dtype."""
    model = build_backbone(family, resolve_norm("i_ln"), scale=2).to(dtype).eval()
    with torch.no_grad():
        assert model(torch.rand(1, 3, 20, 20, dtype=dtype)).dtype == dtype
