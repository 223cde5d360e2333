"""The registered backbone presets (swinir-tiny … drct-l), declared without importing torch.

    from ablate.registry import BACKBONES
    preset = BACKBONES.get("swinir-tiny")      # a BackbonePreset: its configuration, no model code
    preset.configure({"embed_dim": 64})        # the validated configuration
    model = preset(norm, scale=2)              # imports the family (torch) and builds it

A preset names its family class by import path: listing and validating presets (``ablate plugins``,
``ablate validate``) imports no model code.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ablate.registry import BACKBONES

from ._config import BackboneConfig, DRCTConfig, HATConfig

if TYPE_CHECKING:
    from ablate.norms import NormVariant

    from ._common import ResidualGroupModel


class BackbonePreset:
    """A registered backbone: a family class plus its default configuration.

    Calling it with ``(norm, scale, **params)`` validates ``params`` against the configuration and
    builds the model. Its docstring (the registry description) is the preset's one-line summary.
    """

    def __init__(self, key: str, family: str, config: BackboneConfig, doc: str) -> None:
        self.key, self.family_path, self.config = key, family, config  # family: "module:Class"
        self.__doc__ = doc

    @property
    def family(self) -> type[ResidualGroupModel]:
        """The model class (its module, and torch, imported on first use)."""
        module, name = self.family_path.split(":")
        return getattr(importlib.import_module(module), name)  # type: ignore[no-any-return]

    def configure(self, params: Mapping[str, Any], where: str = "backbone") -> BackboneConfig:
        return self.config.with_params(params, where, self.key)

    def __call__(self, norm: NormVariant, scale: int, **params: Any) -> ResidualGroupModel:
        return self.family(self.configure(params), norm, scale)

    def __repr__(self) -> str:
        return f"BackbonePreset({self.key!r}, {self.family_path.split(':')[1]})"


BACKBONES.add("swinir-tiny", BackbonePreset(
    "swinir-tiny", "ablate.backbones.swinir:SwinIR",
    BackboneConfig(embed_dim=48, depths=(4, 4), num_heads=4, window_size=8, mlp_ratio=2.0,
                   upsampler="pixelshuffledirect"),
    "SwinIR, CPU quickstart size: embed 48, 2 groups x 4 blocks, 4 heads, window 8 (228K params at x2).",
))
BACKBONES.add("swinir-light", BackbonePreset(
    "swinir-light", "ablate.backbones.swinir:SwinIR",
    BackboneConfig(embed_dim=60, depths=(6, 6, 6, 6), num_heads=6, window_size=8, mlp_ratio=2.0,
                   upsampler="pixelshuffledirect"),
    "SwinIR lightweight SR (published): embed 60, 4 groups x 6 blocks, 6 heads, window 8, "
    "pixelshuffledirect (0.91M params at x2).",
))
BACKBONES.add("swinir", BackbonePreset(
    "swinir", "ablate.backbones.swinir:SwinIR",
    BackboneConfig(embed_dim=180, depths=(6,) * 6, num_heads=6, window_size=8, mlp_ratio=2.0,
                   upsampler="pixelshuffle", num_feat=64),
    "SwinIR classical (published): embed 180, 6 groups x 6 blocks, 6 heads, window 8, pixelshuffle head.",
))
BACKBONES.add("hat-tiny", BackbonePreset(
    "hat-tiny", "ablate.backbones.hat:HAT",
    HATConfig(embed_dim=48, depths=(2, 2), num_heads=4, window_size=8, mlp_ratio=2.0, compress_ratio=3,
              squeeze_factor=16, conv_scale=0.01, overlap_ratio=0.5, upsampler="pixelshuffle", num_feat=32),
    "HAT, CPU quickstart size: embed 48, 2 groups x 2 HABs + OCAB, 4 heads, window 8, pixelshuffle(32).",
))
BACKBONES.add("hat-mini", BackbonePreset(
    "hat-mini", "ablate.backbones.hat:HAT",
    HATConfig(embed_dim=96, depths=(6,) * 6, num_heads=6, window_size=16, mlp_ratio=2.0, compress_ratio=24,
              squeeze_factor=24, conv_scale=0.01, overlap_ratio=0.5, upsampler="pixelshuffle", num_feat=64),
    "HAT-mini, the i-LN paper's small HAT: embed 96, 6 groups x 6 HABs, 6 heads, window 16.",
))
BACKBONES.add("hat", BackbonePreset(
    "hat", "ablate.backbones.hat:HAT",
    HATConfig(embed_dim=180, depths=(6,) * 6, num_heads=6, window_size=16, mlp_ratio=2.0, compress_ratio=3,
              squeeze_factor=30, conv_scale=0.01, overlap_ratio=0.5, upsampler="pixelshuffle", num_feat=64),
    "HAT (published): embed 180, 6 groups x 6 HABs, 6 heads, window 16 (20.8M params at x4).",
))
BACKBONES.add("drct-tiny", BackbonePreset(
    "drct-tiny", "ablate.backbones.drct:DRCT",
    DRCTConfig(embed_dim=36, depths=(5, 5), num_heads=6, window_size=8, mlp_ratio=2.0, gc=8,
               upsampler="pixelshuffle", num_feat=32),
    "DRCT, CPU quickstart size: embed 36, 2 RDGs x 5 Swin blocks, growth 8, 6 heads, window 8, "
    "pixelshuffle(32) (278K params at x2, about hat-tiny's size and cost).",
))
BACKBONES.add("drct", BackbonePreset(
    "drct", "ablate.backbones.drct:DRCT",
    DRCTConfig(embed_dim=180, depths=(5,) * 6, num_heads=6, window_size=16, mlp_ratio=2.0, gc=32,
               upsampler="pixelshuffle", num_feat=64),
    "DRCT (published): embed 180, 6 RDGs x 5 Swin blocks, growth 32, 6 heads, window 16 (14.1M params at x4).",
))
BACKBONES.add("drct-l", BackbonePreset(
    "drct-l", "ablate.backbones.drct:DRCT",
    DRCTConfig(embed_dim=180, depths=(5,) * 12, num_heads=6, window_size=16, mlp_ratio=2.0, gc=32,
               upsampler="pixelshuffle", num_feat=64),
    "DRCT-L (published): embed 180, 12 RDGs x 5 Swin blocks, growth 32, 6 heads, window 16 "
    "(27.6M params at x4).",
))
