"""Norm variants = normalizer × rescale (× per-site policy).

    from ablate.norms import resolve_norm
    variant = resolve_norm("global_ln", rescale=True)      # i-LN without the site policy
    norm = variant(96, site="attn")                          # a Normalizer module
    x = norm.residual(x, lambda y: attn(y))                 # x + σ(x) · attn(LN*(x))

Built-ins: token_ln, global_ln, rms_norm, batch_norm, instance_norm, group_norm, layer_scale,
rezero, dyt, affine, none, and the preset i_ln (global_ln + rescale + affine embed/final norms).

Importing this package imports no torch: the built-ins are declared (``_builtins``) and
:func:`check_norm` validates a spec against the declarations; the classes (``Normalizer``,
``NormVariant``, the normalizers) load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import _builtins  # noqa: F401  (declares the built-ins)
from ._info import RESIDUAL_SITES, SIGMA_SHAPES, SITES, NormInfo, NormPreset
from ._resolve import NormChoice, check_norm, resolve_norm

if TYPE_CHECKING:
    from ._base import Normalizer, NormVariant

_LAZY = {"Normalizer": "._base", "NormVariant": "._base"}  # torch: imported on first use (PEP 562)

__all__ = [
    "RESIDUAL_SITES",
    "SIGMA_SHAPES",
    "SITES",
    "NormChoice",
    "NormInfo",
    "NormPreset",
    "NormVariant",
    "Normalizer",
    "check_norm",
    "resolve_norm",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
