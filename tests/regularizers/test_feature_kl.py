"""``feature_kl``: the KL term against its closed form, its hooks, and the regularizer registry.

    pytest tests/regularizers/test_feature_kl.py
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from ablate.backbones import build_backbone
from ablate.errors import RegistryError, SpecError
from ablate.norms import resolve_norm
from ablate.probes import Probe
from ablate.registry import REGULARIZERS
from ablate.regularizers import (
    FeatureKL,
    NoRegularizer,
    build_regularizer,
    feature_kl,
    gaussian_kl,
    resolve_regularizer,
)
from ablate.testing import check_regularizer

TINY = {"name": "swinir-tiny", "embed_dim": 16, "depths": [1, 1], "num_heads": 2, "window_size": 4}


def _standardize(x: Tensor, dims: tuple[int, ...]) -> Tensor:
    """``x`` with mean exactly 0 and (biased) variance exactly 1 over ``dims`` (float64)."""
    x = x - x.mean(dim=dims, keepdim=True)
    return x / x.pow(2).mean(dim=dims, keepdim=True).sqrt()


def _standardized(shape: tuple[int, ...], dims: tuple[int, ...], seed: int = 0) -> Tensor:
    return _standardize(torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64),
                        dims)


# --- the term ------------------------------------------------------------------------------------

def test_gaussian_kl_matches_its_closed_form() -> None:
    mean = torch.tensor([0.0, 1.0, 0.0, -2.0, 3.0], dtype=torch.float64)
    var = torch.tensor([1.0, 1.0, math.e, 0.25, 4.0], dtype=torch.float64)
    expected = [0.0, 0.5, 0.5 * (math.e - 2), 0.5 * (0.25 + 4 - 1 - math.log(0.25)), 0.5 * (4 + 9 - 1 - math.log(4))]
    assert gaussian_kl(mean, var).tolist() == pytest.approx(expected, abs=1e-12)


def test_the_kl_is_zero_for_standard_normal_features_and_positive_otherwise() -> None:
    x = _standardized((3, 40, 8), dims=(1, 2))
    assert feature_kl(x).abs().max() < 1e-12
    for scale, shift in ((2.0, 0.0), (0.5, 0.0), (1.0, 0.3), (10.0, -1.0)):
        kl = feature_kl(x * scale + shift)
        closed = 0.5 * (scale**2 + shift**2 - 1 - math.log(scale**2))  # μ = shift, σ² = scale²
        assert kl.tolist() == pytest.approx([closed] * 3, rel=1e-9) and closed > 0


def test_per_sample_and_per_token_statistics_differ_as_documented() -> None:
    # standardized per image, but tokens of very different scales: standard per sample, not per token
    x = _standardized((2, 30, 8), dims=(1, 2)) * torch.linspace(0.2, 3.0, 30, dtype=torch.float64).view(1, 30, 1)
    x = _standardize(x, dims=(1, 2))
    assert feature_kl(x, "sample").shape == (2,) and feature_kl(x, "sample").abs().max() < 1e-12
    per_token = feature_kl(x, "token")
    assert per_token.shape == (2, 30) and per_token.mean() > 0.1
    # standard per token implies standard per sample
    tokens = _standardized((2, 30, 8), dims=(2,))
    assert feature_kl(tokens, "token").abs().max() < 1e-12 and feature_kl(tokens, "sample").abs().max() < 1e-12


def test_half_precision_maps_are_reduced_in_float32_and_a_constant_map_stays_finite() -> None:
    x = 20.0 * torch.randn(2, 64, 8)  # σ² ≈ 400: its square sum overflows float16
    low = feature_kl(x.half())
    assert low.dtype == torch.float32 and torch.isfinite(low).all()
    assert low.tolist() == pytest.approx(feature_kl(x.half().float()).tolist(), rel=1e-6)
    assert torch.isfinite(feature_kl(torch.ones(1, 4, 4))).all()  # σ² = 0: large, not inf
    with pytest.raises(ValueError, match=r"\(B, L, C\)"):
        feature_kl(torch.zeros(4, 4))


def test_gradients_flow_from_the_term_to_the_features() -> None:
    x = (3.0 * torch.randn(2, 10, 4)).requires_grad_()
    feature_kl(x).mean().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


# --- the regularizer on a model --------------------------------------------------------------------

def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_backbone(TINY, resolve_norm("token_ln"), 2)


def test_feature_kl_hooks_the_block_sites_and_passes_gradients_to_the_model() -> None:
    model = _model().train()
    reg = FeatureKL(weight=1e-3)
    reg.attach(model)
    blocks = [m for name, m in model.probe_sites().items() if name != "final"]
    assert all(len(m._forward_hooks) == 1 for m in blocks)
    assert len(model.probe_sites()["final"]._forward_hooks) == 0
    lq = torch.rand(2, 3, 8, 8)
    captured: list[Tensor] = []
    handles = [m.register_forward_hook(lambda _m, _i, out: captured.append(out.detach())) for m in blocks]
    model(lq)
    for h in handles:
        h.remove()
    value = reg.value()
    expected = torch.stack([feature_kl(out).mean() for out in captured]).mean()  # over blocks and samples
    assert value.dim() == 0 and value.item() == pytest.approx(expected.item(), rel=1e-6)
    value.backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert all(torch.isfinite(g).all() for g in grads.values())
    # from the shallowest layer through the last block; nothing after the blocks is involved
    for name in ("conv_first.weight", "groups.0.blocks.0.mlp.fc2.weight", "groups.1.blocks.0.attn.qkv.weight"):
        assert grads[name].abs().sum() > 0, name
    assert "head.0.weight" not in grads and "final_norm.weight" not in grads
    reg.detach()
    assert all(len(m._forward_hooks) == 0 for m in blocks)


def test_probes_and_validation_passes_are_not_counted() -> None:
    model = _model().train()
    reg = FeatureKL()
    reg.attach(model)
    Probe(model, torch.rand(1, 3, 8, 8)).measure()  # eval mode, no_grad
    with pytest.raises(RuntimeError, match="no training forward pass"):
        reg.value()
    model(torch.rand(1, 3, 8, 8))
    assert torch.isfinite(reg.value())


def test_weight_zero_measures_on_detached_features() -> None:
    model = _model().train()
    reg = FeatureKL(weight=0.0)
    reg.attach(model)
    model(torch.rand(1, 3, 8, 8))
    value = reg.value()
    assert not value.requires_grad and torch.isfinite(value)


def test_a_model_without_block_sites_is_refused() -> None:
    with pytest.raises(Exception, match="probe_sites"):
        FeatureKL().attach(torch.nn.Linear(2, 2))


# --- registry and resolution -----------------------------------------------------------------------

def test_builtins_are_registered_and_none_builds_nothing() -> None:
    assert {"none", "feature_kl"} <= set(REGULARIZERS.keys())
    assert REGULARIZERS.entry("feature_kl").source == "ablate"
    assert build_regularizer("none") is None
    reg = build_regularizer({"name": "feature_kl", "weight": 0, "stat": "token"})
    assert isinstance(reg, FeatureKL) and reg.weight == 0.0 and isinstance(reg.weight, float) and reg.stat == "token"
    assert resolve_regularizer("feature_kl") == (FeatureKL, {})  # defaults are not written in
    assert resolve_regularizer("none") == (NoRegularizer, {})


def test_an_unknown_name_says_did_you_mean() -> None:
    with pytest.raises(RegistryError, match=r"did you mean 'feature_kl'\?.*valid: feature_kl, none"):
        REGULARIZERS.get("feture_kl")
    with pytest.raises(SpecError) as info:
        resolve_regularizer({"name": "feture_kl", "weight": 1e-4})
    assert info.value.path == "train.regularizer.name" and "did you mean 'feature_kl'?" in str(info.value)


def test_parameters_are_validated_by_their_declarations() -> None:
    with pytest.raises(SpecError, match=r"train.regularizer.weight: expected a number ≥ 0, got -1"):
        resolve_regularizer({"name": "feature_kl", "weight": -1})
    with pytest.raises(SpecError, match=r"train.regularizer.wieght: .*did you mean 'weight'"):
        resolve_regularizer({"name": "feature_kl", "wieght": 1})
    with pytest.raises(SpecError, match=r"train.regularizer.stat: expected one of sample, token"):
        resolve_regularizer({"name": "feature_kl", "stat": "channel"})
    with pytest.raises(SpecError, match=r"train.regularizer.weight: expected no parameters for regularizer 'none'"):
        resolve_regularizer({"name": "none", "weight": 1e-4})


@pytest.mark.parametrize("key", REGULARIZERS.keys())
def test_every_registered_regularizer_keeps_the_contract(key: str) -> None:
    check_regularizer(key)
    if key != "none":
        check_regularizer(key, params={"weight": 0.0})
        check_regularizer(key, model=_model())  # on a real backbone's probe sites too
