"""``feature_kl``: KL regularization of feature statistics, one of the stabilizers the i-LN paper compares.

    train: {regularizer: {name: feature_kl, weight: 1.0e-4}}

Each block output (the residual stream at the probe sites ``g{i}.b{j}``, ``final`` left out) is read
as a Gaussian with the mean μ and (biased) variance σ² of its features, and penalized by its
divergence from a standard normal, KL(N(μ, σ²) ‖ N(0, 1)) = ½(σ² + μ² − 1 − ln σ²). The term grows
with the feature magnitude (mean square = σ² + μ²) that per-token LayerNorm lets diverge, and with a
collapse of the variance towards 0.

Statistics are per sample by default: μ and σ² over all H·W tokens and C channels of one image, as
Global LN (i-LN) computes them, so the penalty bounds each image's feature scale without dictating
how that scale is shared between tokens (our reading; the paper does not give the formula).
``stat: token`` takes them per token over its C channels instead, which pushes every token towards
zero mean and unit variance — a soft per-token LayerNorm, the constraint the paper argues against;
it is there to be compared, not as the default.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from ablate.errors import AblateError
from ablate.params import Param
from ablate.registry import REGULARIZERS

from ._base import WEIGHT_DOC, Regularizer

STATS = ("sample", "token")


def gaussian_kl(mean: Tensor, var: Tensor) -> Tensor:
    """KL(N(mean, var) ‖ N(0, 1)) = ½(var + mean² − 1 − ln var), elementwise, in nats.

    ≥ 0, and 0 exactly at mean = 0, var = 1. ``var`` is clamped to the dtype's smallest normal number
    inside the log, so a constant feature map gives a large finite value, not inf.
    """
    return 0.5 * (var + mean.square() - 1.0 - torch.log(var.clamp_min(torch.finfo(var.dtype).tiny)))


def feature_kl(x: Tensor, stat: str = "sample") -> Tensor:
    """The KL from N(0, 1) of the statistics of a (B, L, C) token map: (B,) per sample, (B, L) per token.

    ``stat="sample"``: μ and the biased σ² of each image over its L tokens and C channels;
    ``stat="token"``: of each token over its C channels. Half-precision maps are reduced in float32
    (a variance of features ≈ 300 overflows float16); gradients flow to ``x``.
    """
    if x.dim() != 3:
        raise ValueError(f"feature_kl expects a (B, L, C) token map, got shape {tuple(x.shape)}")
    if stat not in STATS:
        raise ValueError(f"feature_kl: stat must be one of {', '.join(STATS)}, got {stat!r}")
    if x.dtype in (torch.float16, torch.bfloat16):
        x = x.float()
    dims = (1, 2) if stat == "sample" else (2,)
    mean = x.mean(dim=dims, keepdim=True)
    var = (x - mean).square().mean(dim=dims)  # two passes: exact where μ² ≫ σ², unlike E[x²] − μ²
    return gaussian_kl(mean.reshape(var.shape), var)


@REGULARIZERS.register("feature_kl")
class FeatureKL(Regularizer):
    """KL divergence of each block output's mean and variance from a standard normal, averaged over blocks and samples.

    Hooks on the model's block probe sites (``probe_sites()`` without ``final``) collect, during each
    training forward pass, :func:`feature_kl` of every block output; :meth:`value` is their mean over
    blocks and samples (and tokens with ``stat: token``). With weight 0 the statistics are taken on
    detached outputs: the cell trains exactly as without a regularizer and only reports ``train/reg``.
    """

    PARAMS: ClassVar[dict[str, Param]] = {
        "weight": Param(1e-4, float, WEIGHT_DOC, lo=0.0),
        "stat": Param("sample", str, "μ, σ² per sample (over H·W·C) or per token (over C)", choices=STATS),
    }

    def __init__(self, weight: float = 1e-4, stat: str = "sample") -> None:
        super().__init__(weight)
        self.stat = stat
        self._terms: list[Tensor] = []
        self._handles: list[RemovableHandle] = []

    def attach(self, model: nn.Module) -> None:
        sites = getattr(model, "probe_sites", None)
        blocks = [m for name, m in sites().items() if name != "final"] if callable(sites) else []
        if not blocks:
            raise AblateError(f"regularizer feature_kl: the model ({type(model).__name__}) names no block "
                              "outputs in probe_sites(); feature_kl hooks those")
        self.detach()
        self._handles = [m.register_forward_hook(self._collect) for m in blocks]

    def _collect(self, module: nn.Module, inputs: Any, out: Tensor) -> None:
        # probes and validation run the model in eval mode under no_grad: only training passes count
        if not (module.training and torch.is_grad_enabled()):
            return
        self._terms.append(feature_kl(out if self.weight else out.detach(), self.stat).mean())

    def value(self) -> Tensor:
        terms, self._terms = self._terms, []
        if not terms:
            raise RuntimeError("feature_kl: no training forward pass since the last value() (attach it first)")
        return torch.stack(terms).mean()

    def detach(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles, self._terms = [], []
