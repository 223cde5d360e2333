"""DRCT (Hsu, Lee, Chen, CVPR-W 2024): SwinIR's skeleton with dense-residual groups of Swin blocks.

    import torch
    from ablate.backbones import build_backbone
    from ablate.norms import resolve_norm
    model = build_backbone("drct-tiny", resolve_norm("i_ln"), scale=2)
    y = model(torch.rand(1, 3, 20, 12))            # (1, 3, 40, 24)
    print(list(model.probe_sites())[:3], model.num_parameters())   # ['g0.b0', 'g0.b1', 'g0.b2'] 278243

Structure (skeleton: :class:`ResidualGroupModel`): conv 3×3 → patch embed (norm site ``embed``) →
residual dense groups → final norm (site ``final``) → conv 3×3 + long skip → pixelshuffle head.

A residual dense group (RDG) is ESRGAN's residual dense block with a Swin block in front of each of its
1×1 convs. Block j (j = 0 … depth−1) reads the concatenation [x, f₁, …, f_j] of the group input x (C
channels) and the growth features of the blocks before it (``gc`` channels each), so it is a Swin block
of width C + j·gc; a 1×1 conv + LeakyReLU(0.2) turns its output into f_{j+1}, except after the last
block, whose conv maps back to C channels with no activation; the group returns x + 0.2 · that.

What follows the official code (github.com/ming053l/DRCT, ``drct/archs/DRCT_arch.py``), not the paper:

- ``depths`` counts the Swin blocks of each RDG. The official options files say ``depths: [6, 6, …]``
  but its RDG ignores the value (it is built with ``depth=0``) and always has 5 blocks, so the
  published presets here say 5 — with which the parameter counts equal the official model's.
- Block j has ``h − (width mod h)`` attention heads (h: the group's ``num_heads``), which for DRCT's
  widths 180, 212, 244, 276, 308 and h = 6 gives 6, 4, 2, 6, 4. That rule does not always divide the
  width; :meth:`DRCTConfig.check` refuses the configurations where it does not.
- The FFN ratio is ``mlp_ratio`` for the first three blocks and 1 from the fourth on (hard-coded there
  for its 4th and 5th blocks, the widest).
- The official constructor also takes HAT's ``compress_ratio``, ``squeeze_factor``, ``conv_scale`` and
  ``overlap_ratio`` (its options files set them) but builds nothing with them; they are not parameters
  here. Stochastic depth (its ``drop_path_rate`` 0.1) is left out, as in the SwinIR and HAT here.

Norms: each block's ``attn``/``ffn`` norms normalize its whole input, growth channels included (the
official LayerNorm(C + j·gc)), through ``Normalizer.residual`` as in SwinIR.

Probe sites: ``g{i}.b{j}`` is block j's output restricted to its first C channels — the group input's
channels after that block's attention and FFN updates — so every site is a (B, L, C) map like
SwinIR's and HAT's, and the growth channels (an intermediate the next 1×1 conv mixes away) are left out.
Unlike SwinIR's, DRCT's blocks do not chain on those channels: each block starts again from the group
input x, so the sites of one group show each block's update of x, and the stream itself moves at group
ends (``g{i+1}.b0`` reads it, and ``final``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ablate.norms import NormVariant

from ._common import (
    ResidualGroup,
    ResidualGroupModel,
    to_image,
    to_tokens,
)
from ._config import DRCTConfig
from .swinir import SwinLayer

RESIDUAL_SCALE = 0.2  # weight of the group's output on its residual (ESRGAN's residual scaling)
LEAKY_SLOPE = 0.2  # LeakyReLU after each growth conv


class StreamChannels(nn.Module):
    """The first ``dim`` channels of a dense token map (B, L, C + j·gc) → (B, L, dim): a probe site.

    A view, computed only so that forward hooks see it; nothing downstream reads it.
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, x: Tensor) -> Tensor:
        return x[..., : self.dim]

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class ResidualDenseGroup(ResidualGroup):
    """RDG: ``depth`` Swin blocks on growing concatenations, each followed by a 1×1 conv; x + 0.2·out."""

    def __init__(self, config: DRCTConfig, group: int, norm: NormVariant) -> None:
        super().__init__()
        depth, dim, w = config.depths[group], config.embed_dim, config.window_size
        self.blocks = nn.ModuleList(
            SwinLayer(config.width(j), config.block_heads(group, j), w, 0 if j % 2 == 0 else w // 2,
                      config.block_mlp_ratio(j), config.qkv_bias, norm)
            for j in range(depth)
        )
        self.streams = nn.ModuleList(StreamChannels(dim) for _ in range(depth))
        # block j's output → its growth features f_{j+1}; the last one → the group's C channels
        self.adjust = nn.ModuleList(
            nn.Conv2d(config.width(j), config.gc if j < depth - 1 else dim, 1) for j in range(depth)
        )

    def forward(self, x: Tensor, hw: tuple[int, int]) -> Tensor:
        features = [x]
        last = len(self.blocks) - 1
        for j, (block, stream, adjust) in enumerate(zip(self.blocks, self.streams, self.adjust)):
            out = block(torch.cat(features, dim=-1), hw)
            stream(out)  # the probe site (see the module docstring); its output is not used
            grown = to_tokens(adjust(to_image(out, hw)))
            features.append(grown if j == last else F.leaky_relu(grown, LEAKY_SLOPE))
        return x + RESIDUAL_SCALE * features[-1]

    def sites(self) -> list[tuple[str, nn.Module]]:
        return [(f"b{j}", stream) for j, stream in enumerate(self.streams)]


class DRCT(ResidualGroupModel):
    """DRCT: the shared skeleton with residual dense groups."""

    config_class = DRCTConfig
    config: DRCTConfig

    def make_group(self, index: int, norm: NormVariant) -> ResidualGroup:
        return ResidualDenseGroup(self.config, index, norm)
