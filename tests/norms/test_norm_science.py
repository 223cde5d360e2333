"""The normalizers compute what the paper and torch say they compute.

    pytest tests/norms/test_norm_science.py
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ablate.errors import SpecError
from ablate.norms import NormVariant, resolve_norm
from ablate.norms._normalizers import (
    Affine,
    BatchNorm,
    GlobalLayerNorm,
    GroupNorm,
    InstanceNorm,
    RMSNorm,
    TokenLayerNorm,
    _LayerNormSigma,
)

B, H, W, C = 3, 5, 6, 8


def _map(seed: int = 0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(B, H·W, C) with uneven per-token, per-channel and per-sample scales and offsets."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, H * W, C, generator=g, dtype=torch.float64)
    x = x * torch.exp(torch.randn(B, H * W, 1, generator=g, dtype=torch.float64))
    x = x * torch.exp(torch.randn(B, 1, 1, generator=g, dtype=torch.float64)) + torch.randn(
        B, 1, C, generator=g, dtype=torch.float64)
    return x.to(dtype)


def _randomize(*modules: nn.Module, seed: int = 1) -> None:
    """Give every affine γ, β the same random values across the compared modules."""
    g = torch.Generator().manual_seed(seed)
    weight, bias = 1 + 0.5 * torch.randn(C, generator=g), torch.randn(C, generator=g)
    with torch.no_grad():
        for m in modules:
            m.weight.copy_(weight)
            if getattr(m, "bias", None) is not None:
                m.bias.copy_(bias)


def _image(x: torch.Tensor) -> torch.Tensor:
    """(B, H·W, C) token map → (B, C, H, W) image view."""
    return x.transpose(1, 2).reshape(B, C, H, W)


@pytest.mark.parametrize("rescale", [False, True])
def test_token_ln_is_torch_layer_norm_over_channels(rescale: bool) -> None:
    ours, ref = TokenLayerNorm(C, rescale=rescale), nn.LayerNorm(C, eps=1e-5)
    _randomize(ours, ref)
    x = _map()
    y, sigma = ours.normalize(x)
    torch.testing.assert_close(y, ref(x))
    if rescale:
        torch.testing.assert_close(sigma, torch.sqrt(x.var(-1, keepdim=True, correction=0) + 1e-5))


def test_global_ln_is_group_norm_with_one_group() -> None:
    ours, ref = GlobalLayerNorm(C), nn.GroupNorm(1, C, eps=1e-4)
    _randomize(ours, ref)
    x = _map()
    torch.testing.assert_close(_image(ours(x)), ref(_image(x)))


def test_global_ln_sigma_is_the_per_image_std_over_all_tokens_and_channels() -> None:
    x = _map()
    _, sigma = GlobalLayerNorm(C, rescale=True).normalize(x)
    want = torch.sqrt(x.reshape(B, -1).var(dim=1, correction=0) + 1e-4).reshape(B, 1, 1)
    torch.testing.assert_close(sigma, want)


def test_global_ln_is_a_homothety_and_token_ln_is_not() -> None:
    """With γ = 1, β = 0: LN*(x)_l − LN*(x)_k = (x_l − x_k)/σ for every token pair (l, k)."""
    x = _map(dtype=torch.float64)
    glob = GlobalLayerNorm(C, rescale=True).double()
    y, sigma = glob.normalize(x)
    pair_y = y[:, :, None, :] - y[:, None, :, :]  # (B, L, L, C): all token pairs
    pair_x = (x[:, :, None, :] - x[:, None, :, :]) / sigma[..., None]
    torch.testing.assert_close(pair_y, pair_x, rtol=1e-10, atol=1e-10)
    # per-token LN breaks the spatial relations: no single σ per image maps x's differences to y's
    tok = TokenLayerNorm(C).double()
    yt = tok(x)
    pair_t = yt[:, :, None, :] - yt[:, None, :, :]
    ratio = (pair_t.norm(dim=-1) / (x[:, :, None, :] - x[:, None, :, :]).norm(dim=-1).clamp_min(1e-12))
    off_diag = ~torch.eye(H * W, dtype=torch.bool)
    spread = ratio[:, off_diag].max(dim=1).values / ratio[:, off_diag].min(dim=1).values
    assert (spread > 1.5).all(), spread


def test_i_ln_output_for_one_sample_ignores_the_rest_of_the_batch() -> None:
    norm = resolve_norm("i_ln")(C, site="attn")
    _randomize(norm)
    branch = nn.Linear(C, C)
    x = _map(0)
    other = x.clone()
    other[1:] = _map(5)[1:] * 10
    for mode in (True, False):
        norm.train(mode)
        torch.testing.assert_close(norm(x)[0], norm(other)[0])
        torch.testing.assert_close(norm.residual(x, branch)[0], norm.residual(other, branch)[0])
    # … whereas batch norm's does depend on it
    bn = resolve_norm("batch_norm")(C, site="attn")
    assert not torch.allclose(bn(x)[0], bn(other)[0])


def test_instance_norm_is_torch_instance_norm() -> None:
    ours, ref = InstanceNorm(C), nn.InstanceNorm2d(C, eps=1e-5, affine=True)
    _randomize(ours, ref)
    x = _map()
    torch.testing.assert_close(_image(ours(x)), ref(_image(x)))


def test_group_norm_is_torch_group_norm() -> None:
    ours, ref = GroupNorm(C, groups=4), nn.GroupNorm(4, C, eps=1e-5)
    _randomize(ours, ref)
    x = _map()
    torch.testing.assert_close(_image(ours(x)), ref(_image(x)))


def test_rms_norm_is_torch_rms_norm() -> None:
    ours, ref = RMSNorm(C), nn.RMSNorm(C, eps=1e-6)
    _randomize(ours, ref)
    x = _map()
    torch.testing.assert_close(ours(x), ref(x))


def test_batch_norm_train_mode_is_torch_batch_norm_and_updates_running_stats() -> None:
    ours, ref = BatchNorm(C, momentum=0.1), nn.BatchNorm1d(C, eps=1e-5, momentum=0.1)
    _randomize(ours, ref)
    for seed in range(3):  # several steps: the running averages must track torch's
        x = _map(seed)
        torch.testing.assert_close(ours(x), ref(x.reshape(-1, C)).reshape(x.shape))
    torch.testing.assert_close(ours.running_mean, ref.running_mean)
    torch.testing.assert_close(ours.running_var, ref.running_var)
    assert not torch.allclose(ours.running_mean, torch.zeros(C))
    ours.eval(), ref.eval()
    x = _map(7)
    torch.testing.assert_close(ours(x), ref(x.reshape(-1, C)).reshape(x.shape))
    # eval_stats=batch keeps using the evaluated batch's statistics in eval mode
    batch_stats = BatchNorm(C, eval_stats="batch").eval()
    _randomize(batch_stats)
    ref.train()
    torch.testing.assert_close(batch_stats(x), ref(x.reshape(-1, C)).reshape(x.shape))


@pytest.mark.parametrize("key", ["dyt", "affine", "none", "rezero"])
def test_rescale_without_sigma_is_refused(key: str) -> None:
    with pytest.raises(SpecError, match=r"rescale: expected false for norm '\w+': it divides by no σ"):
        resolve_norm(key, rescale=True)
    with pytest.raises(SpecError, match="rescale"):
        resolve_norm({"name": key, "rescale": True})


def test_rescale_on_a_normalizer_class_without_sigma_is_refused() -> None:
    with pytest.raises(SpecError, match="Affine, which divides by no σ"):
        Affine(C, rescale=True)


def test_i_ln_preset_sites() -> None:
    variant = resolve_norm("i_ln")
    assert isinstance(variant, NormVariant) and variant.rescale
    for site in ("embed", "final"):
        layer = variant(C, site)
        assert type(layer) is Affine and not layer.rescale
    for site in ("attn", "ffn"):
        layer = variant(C, site)
        assert type(layer) is GlobalLayerNorm and layer.rescale
    assert not variant.batch_dependent and not variant.train_eval_differ


def test_i_ln_fixed_rescale_conflicts() -> None:
    with pytest.raises(SpecError, match="preset 'i_ln', which fixes it"):
        resolve_norm("i_ln", rescale=False)
    with pytest.raises(SpecError, match="use 'global_ln' to choose rescale freely"):
        resolve_norm({"name": "i_ln", "rescale": False})
    assert resolve_norm("i_ln", rescale=True).rescale


# --- the σ node of the rescale variants ------------------------------------------------------------

def _reference_ln(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, dims: tuple[int, ...],
                  eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The textbook formula over ``dims``, left to autograd: (γ ⊙ x̂ + β, σ)."""
    mean = x.mean(dim=dims, keepdim=True)
    var = ((x - mean) ** 2).mean(dim=dims, keepdim=True)
    sigma = torch.sqrt(var + eps)
    return (x - mean) / sigma * weight + bias, sigma


# token LN normalizes over C, Global LN over (L, C)
KINDS = {"token": lambda x: ((x.shape[2],), (-1,)), "global": lambda x: ((x.shape[1], x.shape[2]), (1, 2))}


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_layer_norm_sigma_node_passes_gradcheck(kind: str) -> None:
    g = torch.Generator().manual_seed(0)
    x = (3 * torch.randn(2, 6, 5, generator=g, dtype=torch.float64) + 2).requires_grad_()
    weight = torch.randn(5, generator=g, dtype=torch.float64).requires_grad_()
    bias = torch.randn(5, generator=g, dtype=torch.float64).requires_grad_()
    shape, _ = KINDS[kind](x)
    # both outputs (y and σ) get random upstream gradients, so the σ path is checked too
    assert torch.autograd.gradcheck(lambda *a: _LayerNormSigma.apply(*a, shape, 1e-4), (x, weight, bias))


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_layer_norm_sigma_node_matches_autograd_reference(kind: str) -> None:
    g = torch.Generator().manual_seed(1)
    x = (torch.randn(3, 40, 12, generator=g) * 4 - 1).requires_grad_()
    weight = (1 + torch.randn(12, generator=g)).requires_grad_()
    bias = torch.randn(12, generator=g).requires_grad_()
    shape, dims = KINDS[kind](x)
    gy = torch.randn(3, 40, 12, generator=g)
    gs = torch.randn(3, 40 if kind == "token" else 1, 1, generator=g)
    outs = []
    for fn in (lambda *a: _LayerNormSigma.apply(*a, shape, 1e-4), lambda *a: _reference_ln(*a, dims, 1e-4)):
        y, sigma = fn(x, weight, bias)
        grads = torch.autograd.grad((y * gy).sum() + (sigma * gs).sum(), (x, weight, bias))
        outs.append((y, sigma, *grads))
    for got, want in zip(*outs):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_layer_norm_sigma_node_refuses_double_backward() -> None:
    # its backward is first-order only: a second derivative must fail loudly, not come out wrong
    x = torch.randn(2, 4, 3, requires_grad=True)
    norm = GlobalLayerNorm(3, rescale=True)
    (gx,) = torch.autograd.grad((norm.residual(x, lambda y: y) * torch.randn(2, 4, 3)).sum(), x, create_graph=True)
    with pytest.raises(RuntimeError):
        gx.sum().backward()


def test_global_ln_without_rescale_has_second_derivatives() -> None:
    # torch's own layer_norm: double backward works where the hand-written node refused it
    x = torch.randn(2, 4, 3, dtype=torch.float64, requires_grad=True)
    norm = GlobalLayerNorm(3).double()
    assert torch.autograd.gradgradcheck(lambda x: norm(x), (x,))
