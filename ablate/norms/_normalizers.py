"""The built-in normalizers. Each works on a (B, L, C) map of full images (L = H·W)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ablate.errors import SpecError
from ablate.registry import NORMS

from ._base import Normalizer


class _Affine(nn.Module):
    """Per-channel γ (ones) and β (zeros)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))


@NORMS.register("token_ln")
class TokenLayerNorm(Normalizer):
    """Per-token LayerNorm over C (the standard transformer LN); σ per token."""

    sigma = "token"
    params = {"eps": (float, 1e-5)}

    def __init__(self, dim: int, *, rescale: bool = False, eps: float = 1e-5) -> None:
        super().__init__(dim, rescale=rescale)
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def normalize(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        if not self.rescale:  # the fused kernel; σ is not needed
            return F.layer_norm(x, (self.dim,), self.weight, self.bias, self.eps), None
        var, mean = torch.var_mean(x, dim=-1, keepdim=True, correction=0)
        rstd = torch.rsqrt(var + self.eps)
        y = torch.addcmul(self.bias, (x - mean) * rstd, self.weight)
        return y, 1.0 / rstd


@NORMS.register("global_ln")
class GlobalLayerNorm(Normalizer):
    """Global LN (LN*): one mean and biased variance per image over H·W·C; per-channel γ, β.

    ``LN*(x) = γ ⊙ (x − μ) / sqrt(σ² + ε) + β`` with ε = 1e-4 on the variance. No batch statistics:
    train and eval are identical. One reduction pass (``var_mean``) and one fused affine pass.
    """

    sigma = "sample"
    params = {"eps": (float, 1e-4)}

    def __init__(self, dim: int, *, rescale: bool = False, eps: float = 1e-4) -> None:
        super().__init__(dim, rescale=rescale)
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def normalize(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        var, mean = torch.var_mean(x, dim=(1, 2), keepdim=True, correction=0)  # (B, 1, 1)
        rstd = torch.rsqrt(var + self.eps)
        scale = rstd * self.weight  # (B, 1, C)
        shift = torch.addcmul(self.bias, mean, scale, value=-1.0)  # β − μ·γ/σ
        y = torch.addcmul(shift, x, scale)
        return y, (1.0 / rstd if self.rescale else None)


@NORMS.register("rms_norm")
class RMSNorm(Normalizer):
    """RMSNorm per token over C (no centering); σ = the token's RMS."""

    sigma = "token"
    params = {"eps": (float, 1e-6)}

    def __init__(self, dim: int, *, rescale: bool = False, eps: float = 1e-6) -> None:
        super().__init__(dim, rescale=rescale)
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def normalize(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        rstd = torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + self.eps)
        return x * rstd * self.weight, (1.0 / rstd if self.rescale else None)


@NORMS.register("batch_norm")
class BatchNorm(Normalizer):
    """BatchNorm per channel over B·H·W, with running statistics.

    ``eval_stats: running`` (default) evaluates with the running averages; ``batch`` keeps using the
    statistics of the evaluated batch (the paper's "BN, train-mode statistics" row).
    """

    sigma = "channel"
    batch_dependent = True
    train_eval_differ = True
    params = {"eps": (float, 1e-5), "momentum": (float, 0.1), "eval_stats": (("running", "batch"), "running")}

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
        if use_batch:
            var, mean = torch.var_mean(x, dim=(0, 1), correction=0)  # (C,)
            if self.training:
                with torch.no_grad():
                    n = x.shape[0] * x.shape[1]
                    unbiased = var * (n / max(n - 1, 1))
                    self.running_mean.lerp_(mean, self.momentum)
                    self.running_var.lerp_(unbiased, self.momentum)
        else:
            var, mean = self.running_var, self.running_mean
        rstd = torch.rsqrt(var + self.eps)
        scale = rstd * self.weight
        shift = torch.addcmul(self.bias, mean, scale, value=-1.0)
        return torch.addcmul(shift, x, scale), (1.0 / rstd if self.rescale else None)


@NORMS.register("instance_norm")
class InstanceNorm(Normalizer):
    """InstanceNorm: per image and channel over H·W; σ of shape (B, 1, C)."""

    sigma = "sample_channel"
    params = {"eps": (float, 1e-5)}

    def __init__(self, dim: int, *, rescale: bool = False, eps: float = 1e-5) -> None:
        super().__init__(dim, rescale=rescale)
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def normalize(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        var, mean = torch.var_mean(x, dim=1, keepdim=True, correction=0)  # (B, 1, C)
        rstd = torch.rsqrt(var + self.eps)
        scale = rstd * self.weight
        shift = torch.addcmul(self.bias, mean, scale, value=-1.0)
        return torch.addcmul(shift, x, scale), (1.0 / rstd if self.rescale else None)


@NORMS.register("group_norm")
class GroupNorm(Normalizer):
    """GroupNorm: per image and group of channels over H·W·(C/G); σ broadcast per channel (B, 1, C)."""

    sigma = "sample_channel"
    params = {"eps": (float, 1e-5), "groups": (int, 4)}

    def __init__(self, dim: int, *, rescale: bool = False, eps: float = 1e-5, groups: int = 4) -> None:
        super().__init__(dim, rescale=rescale)
        if groups < 1 or dim % groups:
            raise SpecError("groups", f"a positive divisor of the channel count {dim}", groups)
        self.eps, self.groups = eps, groups
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def normalize(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        b, n, c = x.shape
        xg = x.reshape(b, n, self.groups, c // self.groups)
        var, mean = torch.var_mean(xg, dim=(1, 3), keepdim=True, correction=0)  # (B, 1, G, 1)
        rstd = torch.rsqrt(var + self.eps)
        y = ((xg - mean) * rstd).reshape(b, n, c)
        y = torch.addcmul(self.bias, y, self.weight)
        sigma = None
        if self.rescale:
            sigma = (1.0 / rstd).expand(b, 1, self.groups, c // self.groups).reshape(b, 1, c)
        return y, sigma


@NORMS.register("dyt")
class DynamicTanh(Normalizer):
    """Dynamic Tanh: γ·tanh(αx) + β with a learnable scalar α; normalizes by no statistic."""

    params = {"alpha": (float, 0.5)}

    def __init__(self, dim: int, *, rescale: bool = False, alpha: float = 0.5) -> None:
        super().__init__(dim, rescale=rescale)
        self.alpha = nn.Parameter(torch.tensor(float(alpha)))
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def normalize(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        return torch.addcmul(self.bias, torch.tanh(self.alpha * x), self.weight), None


@NORMS.register("affine")
class Affine(Normalizer):
    """Affine only: γx + β, no normalization (i-LN's embedding and final norms)."""

    def __init__(self, dim: int, *, rescale: bool = False) -> None:
        super().__init__(dim, rescale=rescale)
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim))

    def normalize(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        return torch.addcmul(self.bias, x, self.weight), None


@NORMS.register("none")
class Identity(Normalizer):
    """No normalization at all (identity)."""

    def normalize(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        return x, None


@NORMS.register("layer_scale")
class LayerScale(TokenLayerNorm):
    """Per-token LN plus LayerScale: each residual branch multiplied by a learnable per-channel γ (init 1e-4)."""

    params = {"eps": (float, 1e-5), "init": (float, 1e-4)}

    def __init__(self, dim: int, *, rescale: bool = False, eps: float = 1e-5, init: float = 1e-4) -> None:
        super().__init__(dim, rescale=rescale, eps=eps)
        self.scale = nn.Parameter(torch.full((dim,), float(init)))

    def gate(self, out: Tensor) -> Tensor:
        return out * self.scale


@NORMS.register("rezero")
class ReZero(Normalizer):
    """ReZero: no normalization; each residual branch multiplied by a learnable scalar α initialised to 0."""

    params = {"init": (float, 0.0)}

    def __init__(self, dim: int, *, rescale: bool = False, init: float = 0.0) -> None:
        super().__init__(dim, rescale=rescale)
        self.alpha = nn.Parameter(torch.tensor(float(init)))

    def normalize(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        return x, None

    def gate(self, out: Tensor) -> Tensor:
        return out * self.alpha
