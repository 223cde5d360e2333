"""Norm variants = normalizer × rescale (× per-site policy).

    from ablate.norms import resolve_norm
    variant = resolve_norm("global_ln", rescale=True)      # i-LN without the site policy
    norm = variant(96, site="attn")                          # a Normalizer module
    x = norm.residual(x, lambda y: attn(y))                 # x + σ(x) · attn(LN*(x))

Built-ins: token_ln, global_ln, rms_norm, batch_norm, instance_norm, group_norm, layer_scale,
rezero, dyt, affine, none, and the preset i_ln (global_ln + rescale + affine embed/final norms).
"""

from __future__ import annotations

from . import _normalizers  # noqa: F401  (registers the built-ins)
from ._base import RESIDUAL_SITES, SIGMA_SHAPES, SITES, Normalizer, NormPreset, NormVariant
from ._resolve import resolve_norm

__all__ = [
    "RESIDUAL_SITES",
    "SIGMA_SHAPES",
    "SITES",
    "NormPreset",
    "NormVariant",
    "Normalizer",
    "resolve_norm",
]
