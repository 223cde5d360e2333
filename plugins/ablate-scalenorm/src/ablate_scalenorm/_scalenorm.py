"""The ScaleNorm normalizer (Nguyen & Salazar, "Transformers without Tears", 2019).

    from ablate.norms import resolve_norm
    norm = resolve_norm("scale_norm", rescale=True)(96, site="attn")
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ablate.norms import Normalizer
from ablate.params import Param


class ScaleNorm(Normalizer):
    """ScaleNorm per token: g · x / ‖x‖₂ with one learnable scalar g (init √C); σ = ‖x‖₂ / √C.

    At init ``g = √C``, so the output is x divided by the token's RMS, like RMSNorm without the
    per-channel gain. σ is that RMS (the norm over √C), so ``rescale: true`` multiplies a branch by
    the scale the token was divided by — one σ per token, shape (B, L, 1).
    """

    sigma = "token"
    PARAMS = {"eps": Param(1e-5, float, "floor of the token norm (a zero token maps to zero)")}

    def __init__(self, dim: int, *, rescale: bool = False, eps: float = 1e-5) -> None:
        super().__init__(dim, rescale=rescale)
        self.eps = eps
        self.g = nn.Parameter(torch.tensor(math.sqrt(dim)))

    def normalize(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        # clamp, as in the paper's code: a zero token maps to zero instead of NaN
        norm = torch.linalg.vector_norm(x, dim=-1, keepdim=True).clamp_min(self.eps)
        y = x * (self.g / norm)
        return y, (norm / math.sqrt(self.dim) if self.rescale else None)

    def extra_repr(self) -> str:
        return f"{self.dim}, rescale={self.rescale}, eps={self.eps}"
