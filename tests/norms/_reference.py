"""A frozen copy of the built-in normalizers as they were before they moved to fused kernels (issue 17).

tests/norms/test_norm_equality.py checks that the shipped normalizers compute what these did: forward,
σ and every gradient. Not registered and not part of the package; do not edit to follow the package —
it is the numerical reference. Copied from ablate/norms/_normalizers.py at commit 2d8e800.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from ablate.errors import SpecError
from ablate.norms._base import Normalizer
from ablate.params import Param

_LOW_PRECISION = (torch.float16, torch.bfloat16)


def _var_mean(x: Tensor, dim: int | tuple[int, ...]) -> tuple[Tensor, Tensor]:
    """Biased variance and mean over ``dim`` (kept), as a mean plus the norm of the centred values.

    Same result as ``torch.var_mean(..., correction=0)``; on CPU its Welford reduction is several
    times slower than these two plain passes (measured in benchmarks/bench_norms.py).
    """
    dims = (dim,) if isinstance(dim, int) else dim
    n = 1
    for d in dims:
        n *= x.shape[d]
    mean = x.mean(dim=dims, keepdim=True)
    var = torch.linalg.vector_norm(x - mean, dim=dims, keepdim=True).square() / n
    return var, mean


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


class TokenLayerNorm(Normalizer):
    """Per-token LayerNorm over C (the standard transformer LN); σ per token."""

    sigma = "token"
    PARAMS = {"eps": Param(1e-5, float, "added to the variance")}

    def __init__(self, dim: int, *, rescale: bool = False, eps: float = 1e-5) -> None:
        super().__init__(dim, rescale=rescale)
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def normalize(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        y = F.layer_norm(x, (self.dim,), self.weight, self.bias, self.eps)  # the fused kernel
        if not self.rescale:
            return y, None
        # σ on the side (the fused kernel does not return it with a gradient): a mean and the norm of
        # the centred tokens, ~1.5× faster per training step on CPU than torch.var_mean's reduction
        xs = _acc(x)
        xc = xs - xs.mean(dim=-1, keepdim=True)
        var = torch.linalg.vector_norm(xc, dim=-1, keepdim=True).square() / self.dim
        return _out(y, torch.sqrt(var + self.eps), x)


class _GlobalLayerNormFn(torch.autograd.Function):
    """Global LN in one autograd node: ``(x, γ, β, ε) -> (y, σ)`` with an analytic backward.

    Per sample, over all M = L·C values: μ = mean(x), x_c = x − μ, σ = sqrt(mean(x_c²) + ε),
    y = γ ⊙ x_c / σ + β. Why not autograd over ``torch.var_mean``: on CPU var_mean's Welford
    reduction is ~9× slower than a plain mean plus a vector norm of x_c, and autograd then adds
    several more passes over the map; this node saves x_c once and does the backward in four passes.
    σ is an output with its own gradient (i-LN's rescale must not detach it).

    Backward, with g_x̂ = g_y ⊙ γ, x̂ = x_c / σ, means over the M values of one sample:
    ``∂x = (g_x̂ − mean(g_x̂) − x̂ · mean(g_x̂ ⊙ x̂)) / σ + g_σ · x̂ / M``.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, bias: Tensor, eps: float) -> tuple[Tensor, Tensor]:
        m = x.shape[1] * x.shape[2]
        mean = x.mean(dim=(1, 2), keepdim=True)  # (B, 1, 1)
        xc = x - mean
        var = torch.linalg.vector_norm(xc, dim=(1, 2), keepdim=True).square_().div_(m)
        rstd = var.add_(eps).rsqrt_()
        y = torch.addcmul(bias, xc, rstd * weight)
        ctx.save_for_backward(xc, weight, rstd)
        return y, rstd.reciprocal()

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, gy: Tensor, gsigma: Tensor) -> tuple[Tensor, Tensor, Tensor, None]:
        xc, weight, rstd = ctx.saved_tensors
        m = xc.shape[1] * xc.shape[2]
        s1 = gy.sum(dim=1, keepdim=True)  # Σ_l g_y: (B, 1, C)
        sxh = (gy * xc).sum(dim=1, keepdim=True).mul_(rstd)  # Σ_l g_y ⊙ x̂: (B, 1, C)
        mean_g = (s1 * weight).sum(dim=-1, keepdim=True).div_(m)  # mean(g_x̂): (B, 1, 1)
        mean_gx = (sxh * weight).sum(dim=-1, keepdim=True).div_(m)  # mean(g_x̂ ⊙ x̂)
        coef = rstd * (rstd * mean_gx - gsigma / m)  # multiplies x_c
        gx = torch.addcmul(-rstd * mean_g, xc, -coef)
        gx.addcmul_(gy, rstd * weight)
        return gx, sxh.sum(dim=(0, 1)), s1.sum(dim=(0, 1)), None


class GlobalLayerNorm(Normalizer):
    """Global LN (LN*): one mean and biased variance per image over H·W·C; per-channel γ, β.

    ``LN*(x) = γ ⊙ (x − μ) / sqrt(σ² + ε) + β`` with ε = 1e-4 on the variance. No batch statistics:
    train and eval are identical. Computed by one fused autograd node (``_GlobalLayerNormFn``).
    """

    sigma = "sample"
    PARAMS = {"eps": Param(1e-4, float, "added to the variance")}

    def __init__(self, dim: int, *, rescale: bool = False, eps: float = 1e-4) -> None:
        super().__init__(dim, rescale=rescale)
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def normalize(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        xs = _acc(x)
        y, sigma = _GlobalLayerNormFn.apply(xs, self.weight.to(xs.dtype), self.bias.to(xs.dtype), self.eps)
        return _out(y, sigma if self.rescale else None, x)


class RMSNorm(Normalizer):
    """RMSNorm per token over C (no centering); σ = the token's RMS."""

    sigma = "token"
    PARAMS = {"eps": Param(1e-6, float, "added to the mean square")}

    def __init__(self, dim: int, *, rescale: bool = False, eps: float = 1e-6) -> None:
        super().__init__(dim, rescale=rescale)
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def normalize(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        xs = _acc(x)
        rstd = torch.rsqrt(xs.pow(2).mean(dim=-1, keepdim=True) + self.eps)
        return _out(xs * rstd * self.weight, 1.0 / rstd if self.rescale else None, x)


class BatchNorm(Normalizer):
    """BatchNorm per channel over B·H·W, with running statistics.

    ``eval_stats: running`` (default) evaluates with the running averages; ``batch`` keeps using the
    statistics of the evaluated batch (the paper's "BN, train-mode statistics" row).
    """

    sigma = "channel"
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
        if use_batch:
            var, mean = (t.flatten() for t in _var_mean(xs, (0, 1)))  # (C,)
            if self.training:
                with torch.no_grad():
                    n = x.shape[0] * x.shape[1]
                    unbiased = var * (n / max(n - 1, 1))
                    # statistics are float32 for a bfloat16/half module; its buffers are not
                    self.running_mean.lerp_(mean.to(self.running_mean.dtype), self.momentum)
                    self.running_var.lerp_(unbiased.to(self.running_var.dtype), self.momentum)
        else:
            var, mean = self.running_var.to(xs.dtype), self.running_mean.to(xs.dtype)
        rstd = torch.rsqrt(var + self.eps)
        scale = rstd * self.weight
        shift = torch.addcmul(self.bias, mean, scale, value=-1.0)
        return _out(torch.addcmul(shift, xs, scale), 1.0 / rstd if self.rescale else None, x)


class InstanceNorm(Normalizer):
    """InstanceNorm: per image and channel over H·W; σ of shape (B, 1, C)."""

    sigma = "sample_channel"
    PARAMS = {"eps": Param(1e-5, float, "added to the variance")}

    def __init__(self, dim: int, *, rescale: bool = False, eps: float = 1e-5) -> None:
        super().__init__(dim, rescale=rescale)
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def normalize(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        xs = _acc(x)
        var, mean = _var_mean(xs, 1)  # (B, 1, C)
        rstd = torch.rsqrt(var + self.eps)
        scale = rstd * self.weight
        shift = torch.addcmul(self.bias, mean, scale, value=-1.0)
        return _out(torch.addcmul(shift, xs, scale), 1.0 / rstd if self.rescale else None, x)


class GroupNorm(Normalizer):
    """GroupNorm: per image and group of channels over H·W·(C/G); σ broadcast per channel (B, 1, C)."""

    sigma = "sample_channel"
    PARAMS = {"eps": Param(1e-5, float, "added to the variance"), "groups": Param(4, int, "channel groups")}

    def __init__(self, dim: int, *, rescale: bool = False, eps: float = 1e-5, groups: int = 4) -> None:
        super().__init__(dim, rescale=rescale)
        if groups < 1 or dim % groups:
            raise SpecError("groups", f"a positive divisor of the channel count {dim}", groups)
        self.eps, self.groups = eps, groups
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def normalize(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        b, n, c = x.shape
        xg = _acc(x).reshape(b, n, self.groups, c // self.groups)
        var, mean = _var_mean(xg, (1, 3))  # (B, 1, G, 1)
        rstd = torch.rsqrt(var + self.eps)
        y = ((xg - mean) * rstd).reshape(b, n, c)
        y = torch.addcmul(self.bias, y, self.weight)
        sigma = None
        if self.rescale:
            sigma = (1.0 / rstd).expand(b, 1, self.groups, c // self.groups).reshape(b, 1, c)
        return _out(y, sigma, x)


class DynamicTanh(Normalizer):
    """Dynamic Tanh: γ·tanh(αx) + β with a learnable scalar α; normalizes by no statistic."""

    PARAMS = {"alpha": Param(0.5, float, "initial α (tanh input scale)")}

    def __init__(self, dim: int, *, rescale: bool = False, alpha: float = 0.5) -> None:
        super().__init__(dim, rescale=rescale)
        self.alpha = nn.Parameter(torch.tensor(float(alpha)))
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def normalize(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        return torch.addcmul(self.bias, torch.tanh(self.alpha * x), self.weight), None


class Affine(Normalizer):
    """Affine only: γx + β, no normalization (i-LN's embedding and final norms)."""

    def __init__(self, dim: int, *, rescale: bool = False) -> None:
        super().__init__(dim, rescale=rescale)
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def normalize(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        return torch.addcmul(self.bias, x, self.weight), None


class Identity(Normalizer):
    """No normalization at all (identity)."""

    def normalize(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        return x, None


class LayerScale(TokenLayerNorm):
    """Per-token LN plus LayerScale: each residual branch multiplied by a learnable per-channel γ (init 1e-4)."""

    PARAMS = {"eps": Param(1e-5, float, "added to the variance"), "init": Param(1e-4, float, "initial per-channel branch gate γ")}

    def __init__(self, dim: int, *, rescale: bool = False, eps: float = 1e-5, init: float = 1e-4) -> None:
        super().__init__(dim, rescale=rescale, eps=eps)
        self.scale = nn.Parameter(torch.full((dim,), float(init)))

    def gate(self, out: Tensor) -> Tensor:
        return out * self.scale

    @classmethod
    def at_site(cls, site: str, params: Mapping[str, Any]) -> tuple[type[Normalizer], Mapping[str, Any]]:
        return TokenLayerNorm, {k: v for k, v in params.items() if k == "eps"}


class ReZero(Normalizer):
    """ReZero: no normalization; each residual branch multiplied by a learnable scalar α initialised to 0."""

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
