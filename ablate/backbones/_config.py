"""Backbone configurations: each family's hyperparameters, declared and validated without torch.

    from ablate.backbones import BackboneConfig
    cfg = BackboneConfig(embed_dim=48, depths=(4, 4), num_heads=4)
    cfg.with_params({"embed_dim": 64}, "backbone", "swinir-tiny")      # a validated copy

``ablate validate`` checks a spec's backbone overrides against these (through the presets of
``_presets``); the model code (``_common``, ``swinir``, ``hat``, ``drct``) imports torch and is
imported only when a model is built.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from ablate.errors import SpecError
from ablate.params import check_params, field_params, param_field

SCALES = (1, 2, 3, 4)
UPSAMPLERS = ("pixelshuffle", "pixelshuffledirect")
NARROW_FFN_FROM = 3  # DRCT: blocks j ≥ 3 have FFN ratio 1 (the official code's 4th and 5th blocks)


def _positive_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v > 0


def _positive_ints(v: Any) -> bool:
    return isinstance(v, (list, tuple)) and len(v) > 0 and all(_positive_int(d) for d in v)


def _positive_number(v: float) -> bool:
    return math.isfinite(v) and v > 0


POSITIVE_INT = "a positive integer"


@dataclass(frozen=True)
class BackboneConfig:
    """Hyperparameters shared by the SwinIR-like families; every field is overridable from YAML.

    Each field is declared with :func:`ablate.params.param_field`: its YAML type and range live
    next to its default, and a preset's values are the defaults of its parameters.
    """

    embed_dim: int = param_field(60, int, "token channels C", lo=1, expect=POSITIVE_INT)
    depths: tuple[int, ...] = param_field(
        (6, 6, 6, 6), object, "transformer blocks per residual group", rule=_positive_ints,
        expect="a non-empty list of positive integers (blocks per residual group)")
    num_heads: int | tuple[int, ...] = param_field(
        6, object, "attention heads (one number, or one per group)",
        rule=lambda v: _positive_int(v) or _positive_ints(v),
        expect="a positive integer or a list of them (one per group)")
    window_size: int = param_field(8, int, "attention window side; inputs are padded to a multiple of it",
                                   lo=1, expect=POSITIVE_INT)
    mlp_ratio: float = param_field(2.0, float, "FFN hidden width = mlp_ratio · C", rule=_positive_number,
                                   expect="a positive number")
    upsampler: str = param_field("pixelshuffledirect", str, "SR head (scale 1 always uses conv + global "
                                 "residual)", choices=UPSAMPLERS)
    num_feat: int = param_field(64, int, "channels of the pixelshuffle head", lo=1, expect=POSITIVE_INT)
    qkv_bias: bool = param_field(True, bool, "a learned bias on the q, k, v projections")
    stdnorm: bool = param_field(False, bool, "also divide the input by the dataset RGB std (i-LN's "
                                "released configs do)")

    def heads(self, group: int) -> int:
        return self.num_heads if isinstance(self.num_heads, int) else self.num_heads[group]

    def check(self, where: str) -> None:
        """Cross-field rules; raise SpecError naming the offending key."""
        if not isinstance(self.num_heads, int) and len(self.num_heads) != len(self.depths):
            raise SpecError(f"{where}.num_heads", f"one head count per group ({len(self.depths)})",
                            list(self.num_heads))
        for g in range(len(self.depths)):
            if self.embed_dim % self.heads(g):
                raise SpecError(f"{where}.num_heads", f"a divisor of embed_dim {self.embed_dim}",
                                self.heads(g))

    def with_params(self, params: Mapping[str, Any], where: str, preset: str) -> BackboneConfig:
        """A copy with ``params`` applied, validated (unknown keys and bad values raise SpecError)."""
        checked = check_params(f"backbone {preset!r}", field_params(self), params, where, defaults=False)
        changes: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in checked.items()}
        config = replace(self, **changes)
        config.check(where)
        return config


@dataclass(frozen=True)
class HATConfig(BackboneConfig):
    """SwinIR's hyperparameters plus HAT's conv branch and overlapping cross-attention."""

    compress_ratio: int = param_field(3, int, "CAB hidden channels = C / compress_ratio", lo=1,
                                      expect=POSITIVE_INT)
    squeeze_factor: int = param_field(30, int, "channel-attention bottleneck = C / squeeze_factor", lo=1,
                                      expect=POSITIVE_INT)
    conv_scale: float = param_field(0.01, float, "weight of the CAB branch inside the HAB attention branch",
                                    rule=math.isfinite, expect="a number")
    overlap_ratio: float = param_field(0.5, float, "OCAB key/value window = window · (1 + overlap_ratio)",
                                       lo=0, rule=math.isfinite, expect="a number ≥ 0")

    @property
    def overlap_window(self) -> int:
        return self.window_size + int(self.window_size * self.overlap_ratio)

    def check(self, where: str) -> None:
        super().check(where)
        if self.embed_dim // self.compress_ratio < 1:
            raise SpecError(f"{where}.compress_ratio", f"at most embed_dim ({self.embed_dim})", self.compress_ratio)
        if self.embed_dim // self.squeeze_factor < 1:
            raise SpecError(f"{where}.squeeze_factor", f"at most embed_dim ({self.embed_dim})", self.squeeze_factor)
        if (self.overlap_window - self.window_size) % 2:
            # the overlapping window extends equally on both sides of the query window
            raise SpecError(f"{where}.overlap_ratio", f"a ratio making window_size·overlap_ratio "
                            f"(here {self.window_size}·r) round down to an even number", self.overlap_ratio)


@dataclass(frozen=True)
class DRCTConfig(BackboneConfig):
    """SwinIR's hyperparameters plus DRCT's growth channels; ``depths`` counts Swin blocks per RDG."""

    gc: int = param_field(32, int, "growth channels: each block's 1×1 conv adds gc channels to the later blocks' input",
                          lo=1, expect=POSITIVE_INT)

    def width(self, block: int) -> int:
        """Channels block ``block`` of a group sees: the group input plus the growth of the blocks before it."""
        return self.embed_dim + block * self.gc

    def block_heads(self, group: int, block: int) -> int:
        """The official rule ``h − (width mod h)``: the group's head count less the remainder."""
        heads = self.heads(group)
        return heads - self.width(block) % heads

    def block_mlp_ratio(self, block: int) -> float:
        return self.mlp_ratio if block < NARROW_FFN_FROM else 1.0

    def check(self, where: str) -> None:
        super().check(where)
        for g, depth in enumerate(self.depths):
            for j in range(1, depth):
                width, heads = self.width(j), self.block_heads(g, j)
                if width % heads:
                    raise SpecError(f"{where}.gc", f"a growth for which each block's head count divides its "
                                    f"width (group {g} block {j}: {width} channels, {heads} heads by the "
                                    f"rule num_heads − width mod num_heads)", self.gc)
