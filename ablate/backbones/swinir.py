"""SwinIR (Liang et al., ICCV-W 2021): residual groups of shifted-window transformer layers.

    import torch
    from ablate.backbones import build_backbone
    from ablate.norms import resolve_norm
    model = build_backbone("swinir-light", resolve_norm("token_ln"), scale=2)
    print(model.num_parameters())                  # 910152 (the paper's table says 878K; see tests)
    y = model(torch.rand(1, 3, 24, 24))            # (1, 3, 48, 48)

Structure (the skeleton is :class:`ResidualGroupModel`): conv 3×3 → patch embed (flatten + norm site
``embed``) → residual Swin transformer blocks (RSTB: ``depth`` Swin layers alternating shift 0 and
window/2, then a 3×3 conv, plus the group residual) → final norm (site ``final``) → conv 3×3 + long
skip → reconstruction head. Every pre-norm residual goes through ``Normalizer.residual`` so the
norm variant (and its rescale) decides how the branch is added; blocks never look at its name.
"""

from __future__ import annotations

from torch import Tensor, nn

from ablate.norms import NormVariant

from ._common import (
    Mlp,
    ResidualGroup,
    ResidualGroupModel,
    WindowAttention,
    to_image,
    to_tokens,
)
from ._config import BackboneConfig


class SwinLayer(nn.Module):
    """One Swin transformer block: x + attn(norm1(x)), then x + mlp(norm2(x)), on the full map.

    Its output is the residual stream (B, H·W, C): a probe site ``g{i}.b{j}``.
    """

    def __init__(self, dim: int, num_heads: int, window: int, shift: int, mlp_ratio: float,
                 qkv_bias: bool, norm: NormVariant) -> None:
        super().__init__()
        self.norm1 = norm(dim, "attn")
        self.attn = WindowAttention(dim, num_heads, window, shift, qkv_bias)
        self.norm2 = norm(dim, "ffn")
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: Tensor, hw: tuple[int, int]) -> Tensor:
        x = self.norm1.residual(x, lambda y: self.attn(y, hw))
        return self.norm2.residual(x, self.mlp)


class ResidualSwinGroup(ResidualGroup):
    """RSTB: ``depth`` Swin layers (shift 0, window/2, 0, …), a 3×3 conv, plus the group's input."""

    def __init__(self, config: BackboneConfig, depth: int, num_heads: int, norm: NormVariant) -> None:
        super().__init__()
        w = config.window_size
        self.blocks = nn.ModuleList(
            SwinLayer(config.embed_dim, num_heads, w, 0 if j % 2 == 0 else w // 2, config.mlp_ratio,
                      config.qkv_bias, norm)
            for j in range(depth)
        )
        self.conv = nn.Conv2d(config.embed_dim, config.embed_dim, 3, 1, 1)

    def forward(self, x: Tensor, hw: tuple[int, int]) -> Tensor:
        residual = x
        for block in self.blocks:
            x = block(x, hw)
        return to_tokens(self.conv(to_image(x, hw))) + residual

    def sites(self) -> list[tuple[str, nn.Module]]:
        return [(f"b{j}", block) for j, block in enumerate(self.blocks)]


class SwinIR(ResidualGroupModel):
    """SwinIR: the shared skeleton with RSTB residual groups."""

    def make_group(self, index: int, norm: NormVariant) -> ResidualGroup:
        return ResidualSwinGroup(self.config, self.config.depths[index], self.config.heads(index), norm)
