"""What the spec layer knows about norms without importing torch: sites, σ shapes, presets, declarations.

    from ablate.norms import NormInfo
    from ablate.params import Param
from ablate.registry import Registration, Unreadable
    NormInfo("GroupNorm", "sample_channel", {"groups": Param(4, int, "channel groups")})

``ablate validate`` and ``ablate plan`` check every norm of a grid against these declarations
(:func:`ablate.norms.check_norm`); the normalizer classes (``_normalizers``, torch) are imported only
when a model is built.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ablate.params import Param
from ablate.registry import Registration, Unreadable

# What a normalizer's σ is computed over, hence how it broadcasts onto a (B, L, C) branch output.
SIGMA_SHAPES = {
    "token": "(B, L, 1): one σ per token, over its C channels",
    "channel": "(1, 1, C): one σ per channel, over B·H·W",
    "sample": "(B, 1, 1): one σ per image, over H·W·C",
    "sample_channel": "(B, 1, C): one σ per image and channel (or channel group), over H·W",
}

# Norm sites a backbone names. Residual sites wrap a branch (x + f(norm(x))); the others do not.
RESIDUAL_SITES = ("attn", "ffn")
SITES = ("embed", "attn", "ffn", "final")


@dataclass(frozen=True)
class NormInfo:
    """What a normalizer class states about itself (its name and its class attributes ``sigma`` and
    ``PARAMS``), so that a spec is validated without importing the class."""

    name: str  # the class name, for messages
    sigma: str | None  # a key of SIGMA_SHAPES, or None: `rescale` is then refused
    params: Mapping[str, Param] = field(default_factory=dict)

    @classmethod
    def of(cls, normalizer: Any) -> NormInfo:
        """The info of a normalizer class (a plugin's, or a built-in once imported)."""
        return cls(normalizer.__name__, normalizer.sigma, dict(normalizer.PARAMS))

    @classmethod
    def read(cls, found: Registration) -> NormInfo | None:
        """The info of a built-in normalizer as its source states it, without importing it (torch):
        ``sigma`` and ``PARAMS`` from the class body, else from its bases in the same module, else
        ``Normalizer``'s (None and {}). None when the source does not state them as plain values
        (``Param(...)`` calls and literals): validating that norm then imports its class.
        tests/registry/test_declared.py checks that every built-in is read and equals :meth:`of`."""
        try:
            sigma = found.class_attribute("sigma", _SOURCE_NAMES, {"Normalizer": None})
            params = found.class_attribute("PARAMS", _SOURCE_NAMES, {"Normalizer": {}})
        except Unreadable:
            return None
        if (sigma is not None and sigma not in SIGMA_SHAPES) or not isinstance(params, dict):
            return None
        return cls(found.qualname, sigma, params)


# What a normalizer's source may name in ``sigma`` and ``PARAMS`` for NormInfo.read to read it.
_SOURCE_NAMES: dict[str, Any] = {"Param": Param, "float": float, "int": int, "str": str, "bool": bool,
                                 "list": list, "object": object}


@dataclass(frozen=True)
class NormPreset:
    """A named norm variant: a normalizer, its rescale flag and per-site overrides."""

    normalizer: str
    rescale: bool = False
    params: Mapping[str, Any] = field(default_factory=dict)
    sites: Mapping[str, str] = field(default_factory=dict)  # site -> normalizer key
    description: str = ""
