"""Norm variants = normalizer × rescale (× per-site policy).

    from ablate.norms import resolve_norm
    variant = resolve_norm("global_ln", rescale=True)      # i-LN without the site policy
    norm = variant(96, site="attn")                          # a Normalizer module
    x = norm.residual(x, lambda y: attn(y))                 # x + σ(x) · attn(LN*(x))

Built-ins: token_ln, global_ln, rms_norm, batch_norm, instance_norm, group_norm, layer_scale,
rezero, dyt, affine, none, and the preset i_ln (global_ln + rescale + affine embed/final norms).

A built-in normalizer is added in one place, ``@NORMS.register("key")`` on its class in a module of
this package. Importing this package imports no torch: its modules' decorators, ``sigma`` and
``PARAMS`` are read from their source (``NORMS.declare_package``, ``NormInfo.read``) and
:func:`check_norm` validates a spec against them; the classes (``Normalizer``, ``NormVariant``, the
normalizers) load on first use. Presets are registered in ``_presets``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ablate.lazy import lazy_exports
from ablate.registry import NORMS

from ._info import RESIDUAL_SITES, SIGMA_SHAPES, SITES, NormInfo, NormPreset
from ._resolve import NormChoice, check_norm, resolve_norm

if TYPE_CHECKING:
    from ._base import Normalizer, NormVariant

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

# torch: imported on first use
__getattr__, __dir__ = lazy_exports(__name__, {"Normalizer": "._base", "NormVariant": "._base"})
NORMS.declare_package(__name__, info=NormInfo.read)
