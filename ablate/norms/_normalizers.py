"""The built-in normalizers. Each works on a (B, L, C) map of full images (L = H·W).

How they compute (each class's ``kernel`` names it): on torch's fused normalization kernels
(``layer_norm``, ``group_norm``, ``batch_norm``); layer_norm *without* its affine, then ``y * γ + β``
(with rescale, inside the small node that also returns σ with its gradient, ``_LayerNormSigma``).
Why without: PyTorch's CUDA γ/β-gradient kernel of layer_norm is pathological for small C at
≤ 65,536 rows (2 thread blocks for C = 60, 210 µs per call on an H200), while a multiply-add's
backward is two plain reductions. And why ``y * γ + β`` rather than ``addcmul(β, y, γ)``: addcmul's
backward multiplies both factors by its ``value`` (one more full-size kernel), so it dispatches more
operators for the same result. Every dispatched operator costs 10-20 µs of CPU launch time on a GPU in
eager mode, so the count is what these choices minimise (tests/norms/test_norm_equality.py checks
that the results equal the previous hand-written ones, tests/norms/_reference.py).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from ablate.errors import SpecError
from ablate.params import Param
from ablate.registry import NORMS

from ._base import Normalizer

_LOW_PRECISION = (torch.float16, torch.bfloat16)


def _acc(x: Tensor) -> Tensor:
    """Statistics are accumulated in float32 for half/bfloat16 maps, as torch's own LayerNorm does.

    Otherwise a variance of features around 300 already overflows float16 (65504), an artifact of
    the implementation rather than of the method; the residual stream itself stays in low precision,
    so genuinely huge features still overflow, which is what the fp16 evaluation measures.
    """
    return x.float() if x.dtype in _LOW_PRECISION else x


def _out(y: Tensor, sigma: Tensor | None, like: Tensor) -> tuple[Tensor, Tensor | None]:
    if like.dtype in _LOW_PRECISION:
        return y.to(like.dtype), (sigma.to(like.dtype) if sigma is not None else None)
    return y, sigma


class _LayerNormSigma(torch.autograd.Function):
    """``(γ ⊙ x̂ + β, σ)``: LayerNorm over the trailing dims ``shape`` of a (B, L, C) map, σ with its gradient.

    ``x̂ = (x − μ) / σ`` and ``σ = sqrt(var + ε)`` over the M = prod(shape) values of each row (token
    LN: ``shape = (C,)``, σ (B, L, 1); Global LN: ``(L, C)``, σ (B, 1, 1)); γ, β per channel. Rescale
    variants need σ live (i-LN's ``x + σ · f(LN(x))`` must not detach it), and torch's layer_norm
    returns its statistics without a gradient; rebuilding σ with one (var, add, sqrt and their
    backwards) would cost ~10 more operators per call. So this node runs torch's kernels and adds
    only the missing terms: forward = ``native_layer_norm`` without affine (σ = 1/rstd of that call)
    and one addcmul; backward = ``native_layer_norm_backward`` of ``g_y ⊙ γ`` (input gradient only:
    no γ/β-gradient kernel), plus ``∂σ/∂x = x̂ / M`` times σ's gradient, ``∂γ = Σ g_y ⊙ x̂`` and
    ``∂β = Σ g_y`` over (B, L). Applying γ, β inside the node saves the 5 operators autograd spends on
    a separate multiply-add's backward — i-LN's margin over token LN (tests/norms/test_norm_equality.py).
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, bias: Tensor, shape: tuple[int, ...],
                eps: float) -> tuple[Tensor, Tensor]:
        xhat, mean, rstd = torch.native_layer_norm(x, shape, None, None, eps)
        ctx.save_for_backward(x, xhat, weight, mean, rstd)
        ctx.shape = shape
        return torch.addcmul(bias, xhat, weight), rstd.reciprocal()

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, gy: Tensor, gsigma: Tensor) -> tuple[Tensor | None, ...]:
        x, xhat, weight, mean, rstd = ctx.saved_tensors
        gx = torch.ops.aten.native_layer_norm_backward(gy * weight, x, ctx.shape, mean, rstd, None, None,
                                                       [True, False, False])[0]
        gx.addcmul_(xhat, gsigma, value=1.0 / math.prod(ctx.shape))
        gw = (gy * xhat).sum(dim=(0, 1)).to(weight.dtype) if ctx.needs_input_grad[1] else None
        gb = gy.sum(dim=(0, 1)).to(weight.dtype) if ctx.needs_input_grad[2] else None
        return gx, gw, gb, None, None


def _std(x: Tensor, dim: int | tuple[int, ...], eps: float, keepdim: bool = True) -> Tensor:
    """``sqrt(var + ε)`` over ``dim`` (biased variance), with its gradient: a rescale's σ."""
    return torch.sqrt(torch.var(x, dim=dim, correction=0, keepdim=keepdim) + eps)


@NORMS.register("token_ln")
class TokenLayerNorm(Normalizer):
    """Per-token LayerNorm over C (the standard transformer LN); σ per token."""

    sigma = "token"
    kernel = "layer_norm(C) no affine, then γ, β (rescale: + σ node)"
    PARAMS = {"eps": Param(1e-5, float, "added to the variance")}

    def __init__(self, dim: int, *, rescale: bool = False, eps: float = 1e-5) -> None:
        super().__init__(dim, rescale=rescale)
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def normalize(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        if self.rescale:  # σ from the same layer_norm call, with its gradient
            y, sigma = _LayerNormSigma.apply(_acc(x), self.weight, self.bias, (self.dim,), self.eps)
            return _out(y, sigma, x)
        y = F.layer_norm(x, (self.dim,), None, None, self.eps)
        # layer_norm's output dtype (a half model's, autocast's), as when it applied γ and β itself
        return (y * self.weight + self.bias).to(y.dtype), None


@NORMS.register("global_ln")
class GlobalLayerNorm(Normalizer):
    """Global LN (LN*): one mean and biased variance per image over H·W·C; per-channel γ, β.

    ``LN*(x) = γ ⊙ (x − μ) / sqrt(σ² + ε) + β`` with ε = 1e-4 on the variance. No batch statistics:
    train and eval are identical. Computed as torch's layer_norm over the (L, C) map of each image
    (no affine: γ, β are per channel, not per value), then ``y * γ + β``.
    """

    sigma = "sample"
    kernel = "layer_norm(L,C) no affine, then γ, β (rescale: + σ node)"
    PARAMS = {"eps": Param(1e-4, float, "added to the variance")}

    def __init__(self, dim: int, *, rescale: bool = False, eps: float = 1e-4) -> None:
        super().__init__(dim, rescale=rescale)
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def normalize(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        xs = _acc(x)
        shape = (xs.shape[1], xs.shape[2])
        if self.rescale:  # σ (B, 1, 1) from the same layer_norm call, with its gradient
            y, sigma = _LayerNormSigma.apply(xs, self.weight, self.bias, shape, self.eps)
            return _out(y, sigma, x)
        y = F.layer_norm(xs, shape, None, None, self.eps)
        return _out(y * self.weight + self.bias, None, x)


@NORMS.register("rms_norm")
class RMSNorm(Normalizer):
    """RMSNorm per token over C (no centering); σ = the token's RMS."""

    sigma = "token"
    kernel = "rms_norm(C) no affine, y*γ"
    PARAMS = {"eps": Param(1e-6, float, "added to the mean square")}

    def __init__(self, dim: int, *, rescale: bool = False, eps: float = 1e-6) -> None:
        super().__init__(dim, rescale=rescale)
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def normalize(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        xs = _acc(x)
        if self.rescale:  # σ with its gradient; x / σ dispatches fewer operators than x · rsqrt and 1/rstd
            sigma = torch.sqrt(xs.square().mean(dim=-1, keepdim=True) + self.eps)
            return _out(xs / sigma * self.weight, sigma, x)
        # torch's rms_norm: the fused kernel on a GPU where torch has one, its decomposition elsewhere;
        # without γ, which would take the same small-C γ-gradient kernel as layer_norm's
        return _out(F.rms_norm(xs, (self.dim,), None, self.eps) * self.weight, None, x)


@NORMS.register("batch_norm")
class BatchNorm(Normalizer):
    """BatchNorm per channel over B·H·W, with running statistics.

    ``eval_stats: running`` (default) evaluates with the running averages; ``batch`` keeps using the
    statistics of the evaluated batch (the paper's "BN, train-mode statistics" row).
    """

    sigma = "channel"
    kernel = "batch_norm((B·L, C)) with affine"
    batch_dependent = True
    train_eval_differ = True
    running_mean: Tensor  # buffers, typed for mypy (nn.Module.__getattr__ says Tensor | Module)
    running_var: Tensor
    PARAMS = {
        "eps": Param(1e-5, float, "added to the variance"),
        "momentum": Param(0.1, float, "running-statistics update rate"),
        "eval_stats": Param("running", str, "statistics used in eval mode", choices=("running", "batch")),
    }

    def __init__(self, dim: int, *, rescale: bool = False, eps: float = 1e-5, momentum: float = 0.1,
                 eval_stats: str = "running") -> None:
        super().__init__(dim, rescale=rescale)
        self.eps, self.momentum, self.eval_stats = eps, momentum, eval_stats
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))
        self.register_buffer("running_mean", torch.zeros(dim))
        self.register_buffer("running_var", torch.ones(dim))

    def normalize(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        use_batch = self.training or self.eval_stats == "batch"
        xs = _acc(x)
        rows = xs.reshape(-1, self.dim)  # (B·L, C): BatchNorm1d's layout, the map's own memory order
        n = rows.shape[0]
        # the kernel updates the running averages in place (momentum, unbiased variance) when handed them
        track = self.training and n > 1
        mean, var = self.running_mean, self.running_var
        # statistics are float32 for a bfloat16/half module; its buffers are not: work on float copies
        half = mean.dtype != xs.dtype
        if half:
            mean, var = mean.to(xs.dtype), var.to(xs.dtype)
        weight, bias = self.weight.to(xs.dtype), self.bias.to(xs.dtype)
        # torch.batch_norm, not F.batch_norm: that one refuses the single row a 1×1 batch of 1 gives
        y = torch.batch_norm(rows, weight, bias, mean if track or not use_batch else None,
                             var if track or not use_batch else None, use_batch, self.momentum, self.eps,
                             torch.backends.cudnn.enabled)
        if self.training:
            with torch.no_grad():
                if n == 1:  # one value per channel: its mean is itself and its variance 0
                    mean.lerp_(rows[0].detach().to(mean.dtype), self.momentum)
                    var.mul_(1.0 - self.momentum)
                if half:
                    self.running_mean.copy_(mean)
                    self.running_var.copy_(var)
        sigma = None
        if self.rescale:
            sigma = _std(rows, 0, self.eps, keepdim=False) if use_batch else torch.sqrt(var + self.eps)
        return _out(y.view(x.shape), sigma, x)


def _group_norm(xs: Tensor, groups: int, weight: Tensor, bias: Tensor, eps: float) -> Tensor:
    """torch's group_norm (γ, β fused: its γ/β gradient reduces per image and channel first, no small-C
    pathology) on the (B, C, L) layout it needs, and back to (B, L, C)."""
    return F.group_norm(xs.transpose(1, 2), groups, weight.to(xs.dtype), bias.to(xs.dtype), eps).transpose(1, 2)


@NORMS.register("instance_norm")
class InstanceNorm(Normalizer):
    """InstanceNorm: per image and channel over H·W; σ of shape (B, 1, C)."""

    sigma = "sample_channel"
    kernel = "group_norm(C groups) on (B, C, L)"
    PARAMS = {"eps": Param(1e-5, float, "added to the variance")}

    def __init__(self, dim: int, *, rescale: bool = False, eps: float = 1e-5) -> None:
        super().__init__(dim, rescale=rescale)
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def normalize(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        xs = _acc(x)
        y = _group_norm(xs, self.dim, self.weight, self.bias, self.eps)
        return _out(y, _std(xs, 1, self.eps) if self.rescale else None, x)


@NORMS.register("group_norm")
class GroupNorm(Normalizer):
    """GroupNorm: per image and group of channels over H·W·(C/G); σ broadcast per channel (B, 1, C)."""

    sigma = "sample_channel"
    kernel = "group_norm on (B, C, L)"
    PARAMS = {"eps": Param(1e-5, float, "added to the variance"), "groups": Param(4, int, "channel groups")}

    def __init__(self, dim: int, *, rescale: bool = False, eps: float = 1e-5, groups: int = 4) -> None:
        super().__init__(dim, rescale=rescale)
        if groups < 1 or dim % groups:
            raise SpecError("groups", f"a positive divisor of the channel count {dim}", groups)
        self.eps, self.groups = eps, groups
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def normalize(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        xs = _acc(x)
        y = _group_norm(xs, self.groups, self.weight, self.bias, self.eps)
        sigma = None
        if self.rescale:
            b, n, c = x.shape
            sigma = _std(xs.view(b, n, self.groups, c // self.groups), (1, 3), self.eps)  # (B, 1, G, 1)
            sigma = sigma.expand(b, 1, self.groups, c // self.groups).reshape(b, 1, c)
        return _out(y, sigma, x)


@NORMS.register("dyt")
class DynamicTanh(Normalizer):
    """Dynamic Tanh: γ·tanh(αx) + β with a learnable scalar α; normalizes by no statistic."""

    kernel = "tanh(αx)*γ+β"
    PARAMS = {"alpha": Param(0.5, float, "initial α (tanh input scale)")}

    def __init__(self, dim: int, *, rescale: bool = False, alpha: float = 0.5) -> None:
        super().__init__(dim, rescale=rescale)
        self.alpha = nn.Parameter(torch.tensor(float(alpha)))
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def normalize(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        return torch.tanh(self.alpha * x) * self.weight + self.bias, None


@NORMS.register("affine")
class Affine(Normalizer):
    """Affine only: γx + β, no normalization (i-LN's embedding and final norms)."""

    kernel = "x*γ+β"

    def __init__(self, dim: int, *, rescale: bool = False) -> None:
        super().__init__(dim, rescale=rescale)
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def normalize(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        return x * self.weight + self.bias, None


@NORMS.register("none")
class Identity(Normalizer):
    """No normalization at all (identity)."""

    kernel = "identity"

    def normalize(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        return x, None


@NORMS.register("layer_scale")
class LayerScale(TokenLayerNorm):
    """Per-token LN plus LayerScale: each residual branch multiplied by a learnable per-channel γ (init 1e-4)."""

    kernel = f"{TokenLayerNorm.kernel}; branch*γ"
    PARAMS = {"eps": Param(1e-5, float, "added to the variance"), "init": Param(1e-4, float, "initial per-channel branch gate γ")}

    def __init__(self, dim: int, *, rescale: bool = False, eps: float = 1e-5, init: float = 1e-4) -> None:
        super().__init__(dim, rescale=rescale, eps=eps)
        self.scale = nn.Parameter(torch.full((dim,), float(init)))

    def gate(self, out: Tensor) -> Tensor:
        return out * self.scale

    @classmethod
    def at_site(cls, site: str, params: Mapping[str, Any]) -> tuple[type[Normalizer], Mapping[str, Any]]:
        return TokenLayerNorm, {k: v for k, v in params.items() if k == "eps"}


@NORMS.register("rezero")
class ReZero(Normalizer):
    """ReZero: no normalization; each residual branch multiplied by a learnable scalar α initialised to 0."""

    kernel = "identity; branch*α"
    PARAMS = {"init": Param(0.0, float, "initial branch gate α")}

    def __init__(self, dim: int, *, rescale: bool = False, init: float = 0.0) -> None:
        super().__init__(dim, rescale=rescale)
        self.alpha = nn.Parameter(torch.tensor(float(init)))

    def normalize(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        return x, None

    def gate(self, out: Tensor) -> Tensor:
        return out * self.alpha

    @classmethod
    def at_site(cls, site: str, params: Mapping[str, Any]) -> tuple[type[Normalizer], Mapping[str, Any]]:
        return Identity, {}
