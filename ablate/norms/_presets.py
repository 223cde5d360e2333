"""The built-in norm presets: named norm variants (a normalizer, its rescale flag, per-site norms).

A preset is an object, not a class, so it is registered by a call rather than a decorator; this module
imports no torch, and ``NORMS.declare_package`` imports it to run the call (see ``ablate.registry``).
"""

from __future__ import annotations

from ablate.registry import NORMS

from ._info import NormPreset

NORMS.add(
    "i_ln",
    NormPreset(
        normalizer="global_ln",
        rescale=True,
        sites={"embed": "affine", "final": "affine"},
        description="i-LN preset: global_ln + input-adaptive rescale, affine-only embedding and final norms",
    ),
)
