"""HAT (Chen et al., CVPR 2023): hybrid attention = window attention + channel attention, plus overlapping
cross-attention between groups of blocks.

    import torch
    from ablate.backbones import build_backbone
    from ablate.norms import resolve_norm
    model = build_backbone({"name": "hat-tiny", "window_size": 8}, resolve_norm("i_ln"), scale=4)
    y = model(torch.rand(1, 3, 20, 20))            # (1, 3, 80, 80)
    print(list(model.probe_sites())[:4])           # ['g0.b0', 'g0.b1', 'g0.ocab', 'g1.b0']

Structure (skeleton: :class:`ResidualGroupModel`): conv 3×3 → patch embed (norm site ``embed``) →
residual hybrid attention groups (RHAG: ``depth`` HABs with alternating shift, one OCAB, a 3×3 conv,
plus the group residual) → final norm (site ``final``) → conv 3×3 + long skip → pixelshuffle head.

In a HAB the window attention and the channel-attention conv branch (CAB) both read norm1's output
and are summed inside *one* residual branch, ``attn(y) + conv_scale · cab(y)``, so a rescaling norm
variant (i-LN) multiplies them together by its σ, as the paper specifies.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ablate.norms import NormVariant

from ._common import (
    Mlp,
    ResidualGroup,
    ResidualGroupModel,
    WindowAttention,
    attend,
    attention_kernel,
    padded_head_dim,
    paste_windows,
    relative_position_index,
    to_image,
    to_tokens,
    window_tables,
)
from ._config import HATConfig


class ChannelAttentionBlock(nn.Module):
    """CAB: conv 3×3 C→C/compress, GELU, conv 3×3 back to C, then squeeze-excitation channel attention."""

    def __init__(self, dim: int, compress_ratio: int, squeeze_factor: int) -> None:
        super().__init__()
        hidden, squeezed = dim // compress_ratio, dim // squeeze_factor
        self.body = nn.Sequential(nn.Conv2d(dim, hidden, 3, 1, 1), nn.GELU(), nn.Conv2d(hidden, dim, 3, 1, 1))
        self.attention = nn.Sequential(
            ImageMean(),  # per image: no statistic crosses the batch
            nn.Conv2d(dim, squeezed, 1), nn.ReLU(inplace=True), nn.Conv2d(squeezed, dim, 1), nn.Sigmoid(),
        )

    def forward(self, y: Tensor, hw: tuple[int, int]) -> Tensor:
        f = self.body(to_image(y, hw))
        return to_tokens(f * self.attention(f))


class ImageMean(nn.Module):
    """(B, C, H, W) → (B, C, 1, 1), the mean over H·W: ``AdaptiveAvgPool2d(1)``'s value, as a plain mean,
    whose CUDA backward is deterministic (the pool's uses atomic adds) and which compiles to one reduction."""

    def forward(self, x: Tensor) -> Tensor:
        return x.mean(dim=(2, 3), keepdim=True)


class HybridAttentionBlock(nn.Module):
    """HAB: x + [attn(norm1(x)) + conv_scale·cab(norm1(x))], then x + mlp(norm2(x)). A probe site."""

    def __init__(self, config: HATConfig, num_heads: int, shift: int, norm: NormVariant) -> None:
        super().__init__()
        dim = config.embed_dim
        self.conv_scale = config.conv_scale
        self.norm1 = norm(dim, "attn")
        self.attn = WindowAttention(dim, num_heads, config.window_size, shift, config.qkv_bias)
        self.cab = ChannelAttentionBlock(dim, config.compress_ratio, config.squeeze_factor)
        self.norm2 = norm(dim, "ffn")
        self.mlp = Mlp(dim, int(dim * config.mlp_ratio))

    def forward(self, x: Tensor, hw: tuple[int, int]) -> Tensor:
        x = self.norm1.residual(x, lambda y: self.attn(y, hw) + self.conv_scale * self.cab(y, hw))
        return self.norm2.residual(x, self.mlp)


class OverlappingCrossAttention(nn.Module):
    """Queries from non-overlapping windows; keys/values from enlarged windows around them.

    The key/value windows (side ``overlap``) are cut with ``unfold`` at stride ``window``, zero-padded
    at the border (as HAT does), so every query window sees a margin of (overlap − window)/2 pixels.
    """

    relative_position_index: Tensor

    def __init__(self, dim: int, num_heads: int, window: int, overlap: int, qkv_bias: bool) -> None:
        super().__init__()
        self.num_heads, self.window, self.overlap = num_heads, window, overlap
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.relative_position_bias_table = nn.Parameter(torch.zeros((window + overlap - 1) ** 2, num_heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        self.register_buffer("relative_position_index", relative_position_index(window, overlap), persistent=False)

    def position_bias(self) -> Tensor:
        """(heads, N, M) bias, N = window², M = overlap²."""
        return self.relative_position_bias_table.t()[:, self.relative_position_index]

    def forward(self, y: Tensor, hw: tuple[int, int]) -> Tensor:
        b, _, c = y.shape
        heads, d, window, overlap = self.num_heads, c // self.num_heads, self.window, self.overlap
        n, m = window * window, overlap * overlap
        tables = window_tables(hw, window, 0, y.device)
        dp = padded_head_dim(d, y) if attention_kernel(y.device) == "fused" else d
        q, kv = self.qkv(y).split((c, 2 * c), dim=-1)
        q = q[:, tables.gather].view(b, -1, n, heads, d)  # (B, nW, N, h, d): cut into windows in one gather
        nw = q.shape[1]
        # (B, 2C·M, nW): channel-major columns, channel = (k|v, head, d)
        cols = F.unfold(to_image(kv, hw), overlap, stride=window, padding=(overlap - window) // 2)
        kv = cols.view(b, 2, heads, d, m, nw).permute(1, 0, 5, 2, 4, 3)  # (2, B, nW, h, M, d)
        if dp != d:
            q, kv = F.pad(q, (0, dp - d)), F.pad(kv, (0, dp - d))
        k, v = kv.flatten(1, 2).unbind(0)  # (B·nW, h, M, d')
        out = attend(q.flatten(0, 1).transpose(1, 2), k, v, self.position_bias(), d ** -0.5)  # (B·nW, h, N, d')
        return self.proj(paste_windows(out, b, heads, tables.to_tokens, d))

    def extra_repr(self) -> str:
        return f"heads={self.num_heads}, window={self.window}, overlap={self.overlap}"


class OverlappingCrossAttentionBlock(nn.Module):
    """OCAB: x + proj(ocattn(norm1(x))), then x + mlp(norm2(x)). A probe site (``g{i}.ocab``)."""

    def __init__(self, config: HATConfig, num_heads: int, norm: NormVariant) -> None:
        super().__init__()
        dim = config.embed_dim
        self.norm1 = norm(dim, "attn")
        self.attn = OverlappingCrossAttention(dim, num_heads, config.window_size, config.overlap_window,
                                              config.qkv_bias)
        self.norm2 = norm(dim, "ffn")
        self.mlp = Mlp(dim, int(dim * config.mlp_ratio))

    def forward(self, x: Tensor, hw: tuple[int, int]) -> Tensor:
        x = self.norm1.residual(x, lambda y: self.attn(y, hw))
        return self.norm2.residual(x, self.mlp)


class ResidualHybridAttentionGroup(ResidualGroup):
    """RHAG: ``depth`` HABs (shift 0, window/2, …), one OCAB, a 3×3 conv, plus the group's input."""

    def __init__(self, config: HATConfig, depth: int, num_heads: int, norm: NormVariant) -> None:
        super().__init__()
        w = config.window_size
        self.blocks = nn.ModuleList(
            HybridAttentionBlock(config, num_heads, 0 if j % 2 == 0 else w // 2, norm) for j in range(depth)
        )
        self.ocab = OverlappingCrossAttentionBlock(config, num_heads, norm)
        self.conv = nn.Conv2d(config.embed_dim, config.embed_dim, 3, 1, 1)

    def forward(self, x: Tensor, hw: tuple[int, int]) -> Tensor:
        residual = x
        for block in self.blocks:
            x = block(x, hw)
        x = self.ocab(x, hw)
        return to_tokens(self.conv(to_image(x, hw))) + residual

    def sites(self) -> list[tuple[str, nn.Module]]:
        return [(f"b{j}", block) for j, block in enumerate(self.blocks)] + [("ocab", self.ocab)]


class HAT(ResidualGroupModel):
    """HAT: the shared skeleton with RHAG residual groups."""

    config_class = HATConfig
    config: HATConfig

    def make_group(self, index: int, norm: NormVariant) -> ResidualGroup:
        return ResidualHybridAttentionGroup(self.config, self.config.depths[index], self.config.heads(index), norm)
