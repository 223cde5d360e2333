"""Pieces every IR-transformer family shares: the model base, window attention, heads, presets.

    import torch
    from ablate.backbones import build_backbone
    from ablate.norms import resolve_norm
    model = build_backbone("swinir-tiny", resolve_norm("i_ln"), scale=2)
    y = model(torch.rand(1, 3, 37, 29))          # any size: padded to the window, cropped back
    assert y.shape == (1, 3, 74, 58)
    print(list(model.probe_sites())[:3], model.num_parameters())

Layout conventions: images are (B, C, H, W); token maps are (B, L, C) with L = H·W in row-major
order, always the *full* (padded) image — norms see the whole map, windows are cut only inside the
attention. Window tensors are (B, nW, N, C) with N = window².
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import ClassVar, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ablate.errors import SpecError
from ablate.norms import Normalizer, NormVariant

from ._config import SCALES, BackboneConfig

# DIV2K RGB statistics, as SwinIR and HAT use them (mean) and i-LN's released configs add (std).
RGB_MEAN = (0.4488, 0.4371, 0.4040)
RGB_STD = (0.2397, 0.2290, 0.2389)
# SwinIR's shifted-window mask value: large enough to zero the softmax, finite so fp16 stays finite.
_MASKED = -100.0


# --------------------------------------------------------------------------------------------
# token map <-> image <-> windows
# --------------------------------------------------------------------------------------------
def to_tokens(img: Tensor) -> Tensor:
    """(B, C, H, W) → contiguous (B, H·W, C)."""
    return img.flatten(2).transpose(1, 2).contiguous()


def to_image(tokens: Tensor, hw: tuple[int, int]) -> Tensor:
    """(B, H·W, C) → (B, C, H, W)."""
    b, _, c = tokens.shape
    return tokens.transpose(1, 2).reshape(b, c, hw[0], hw[1])


def window_partition(x: Tensor, window: int) -> Tensor:
    """(B, H, W, C) → (B, nW, window², C), windows in row-major order."""
    b, h, w, c = x.shape
    x = x.view(b, h // window, window, w // window, window, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, (h // window) * (w // window), window * window, c)


def window_reverse(windows: Tensor, window: int, hw: tuple[int, int]) -> Tensor:
    """(B, nW, window², C) → (B, H, W, C), the inverse of :func:`window_partition`."""
    b, _, _, c = windows.shape
    h, w = hw
    x = windows.view(b, h // window, w // window, window, window, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, h, w, c)


def pad_to_multiple(x: Tensor, multiple: int) -> Tensor:
    """Reflect-pad the bottom/right of (B, C, H, W) so H and W are multiples of ``multiple``.

    Reflection cannot pad by more than side − 1 at once, so a small image is padded in steps; a side
    of 1 pixel (nothing to reflect) is replicated instead.
    """
    while True:
        h, w = x.shape[-2:]
        ph, pw = (-h) % multiple, (-w) % multiple
        if not (ph or pw):
            return x
        if (ph and h == 1) or (pw and w == 1):
            return F.pad(x, (0, pw, 0, ph), mode="replicate")
        x = F.pad(x, (0, min(pw, w - 1), 0, min(ph, h - 1)), mode="reflect")


# --------------------------------------------------------------------------------------------
# cached index/mask tensors (built once per window / padded size and device)
# --------------------------------------------------------------------------------------------
@lru_cache(maxsize=16)
def relative_position_index(query_window: int, key_window: int, device: torch.device) -> Tensor:
    """(Nq, Nk) indices into a ((wq + wk − 1)², heads) relative-position-bias table.

    A key window larger than the query window (HAT's overlapping cross-attention) simply widens the
    range of offsets; with equal windows this is Swin's (2w − 1)² table.
    """
    with torch.inference_mode(False):  # cached tensors must stay usable by autograd later
        def coords(n: int) -> Tensor:
            grid = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
            return torch.stack(grid).flatten(1)  # (2, n²)

        rel = coords(key_window)[:, None, :] - coords(query_window)[:, :, None]  # (2, Nq, Nk)
        rel = rel + (query_window - 1)  # offsets now start at 0
        side = query_window + key_window - 1
        return (rel[0] * side + rel[1]).to(device)


@lru_cache(maxsize=32)
def shifted_window_mask(hw: tuple[int, int], window: int, shift: int, device: torch.device) -> Tensor:
    """(nW, N, N) additive mask for shifted windows of a padded H×W map: 0 inside a region, −100 across.

    After the cyclic shift, a window at the bottom/right border holds pixels from opposite sides of
    the image; those must not attend to each other.
    """
    with torch.inference_mode(False):
        h, w = hw
        region = torch.zeros(1, h, w, 1)
        bands = (slice(0, -window), slice(-window, -shift), slice(-shift, None))
        label = 0
        for rows in bands:
            for cols in bands:
                region[:, rows, cols, :] = label
                label += 1
        ids = window_partition(region, window)[0, :, :, 0]  # (nW, N)
        mask = (ids[:, :, None] != ids[:, None, :]).float() * _MASKED
        return mask.to(device)


# --------------------------------------------------------------------------------------------
# layers
# --------------------------------------------------------------------------------------------
class Mlp(nn.Module):
    """The transformer FFN: Linear → GELU → Linear, applied per token."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


def windowed_attention(q: Tensor, k: Tensor, v: Tensor, bias: Tensor, window_mask: Tensor | None) -> Tensor:
    """Scaled dot-product attention inside windows with an additive bias.

    q: (B, nW, h, N, d); k, v: (B, nW, h, M, d); bias: (h, N, M); window_mask: (nW, N, M) or None.
    Returns (B, nW, h, N, d). The fused kernels want 4-D inputs and a mask that broadcasts without a
    copy, so windows go into the batch dim when the mask is per head only, and into the head dim
    (with a (nW·h, N, M) mask) when it also varies per window.
    """
    b, nw, h, n, d = q.shape
    m = k.shape[-2]
    if window_mask is None:
        mask = bias.to(q.dtype)
        out = _attention(q.reshape(b * nw, h, n, d), k.reshape(b * nw, h, m, d), v.reshape(b * nw, h, m, d), mask)
    else:
        mask = (bias.unsqueeze(0) + window_mask.unsqueeze(1)).reshape(nw * h, n, m).to(q.dtype)
        out = _attention(q.reshape(b, nw * h, n, d), k.reshape(b, nw * h, m, d), v.reshape(b, nw * h, m, d), mask)
    return out.view(b, nw, h, n, d)


def _attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor) -> Tensor:
    """softmax(q·kᵀ/√d + mask)·v; ``F.scaled_dot_product_attention`` except when training on CPU.

    The CPU fused kernel cannot return a gradient for the mask (the learned position bias), so SDPA
    falls back to its math path, which adds fully-masked-row checks (``all``/``where`` passes) the
    bias never needs; the plain product is ~15% faster per training step there.
    """
    if q.device.type == "cpu" and mask.requires_grad and torch.is_grad_enabled():
        logits = torch.matmul(q * q.shape[-1] ** -0.5, k.transpose(-2, -1)) + mask
        return torch.matmul(logits.softmax(dim=-1), v)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


class WindowAttention(nn.Module):
    """(Shifted-)window multi-head self-attention with a relative position bias (Swin, SwinIR, HAT).

    Takes the normalized *full* token map (B, H·W, C), cyclically shifts it by ``shift``, cuts it into
    windows, attends inside each window, and returns the full map again (B, H·W, C).
    """

    def __init__(self, dim: int, num_heads: int, window: int, shift: int, qkv_bias: bool = True) -> None:
        super().__init__()
        self.num_heads, self.window, self.shift = num_heads, window, shift
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, num_heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)

    def position_bias(self) -> Tensor:
        """(heads, N, N) bias gathered from the table."""
        index = relative_position_index(self.window, self.window, self.relative_position_bias_table.device)
        n = self.window * self.window
        return self.relative_position_bias_table[index.view(-1)].view(n, n, -1).permute(2, 0, 1)

    def forward(self, x: Tensor, hw: tuple[int, int]) -> Tensor:
        b, _, c = x.shape
        heads, window, shift = self.num_heads, self.window, self.shift
        qkv = self.qkv(x).view(b, hw[0], hw[1], 3 * c)
        if shift:
            qkv = torch.roll(qkv, shifts=(-shift, -shift), dims=(1, 2))
        windows = window_partition(qkv, window)  # (B, nW, N, 3C)
        nw, n = windows.shape[1], windows.shape[2]
        q, k, v = windows.view(b, nw, n, 3, heads, c // heads).permute(3, 0, 1, 4, 2, 5).unbind(0)
        mask = shifted_window_mask(hw, window, shift, x.device) if shift else None
        out = windowed_attention(q, k, v, self.position_bias(), mask)  # (B, nW, h, N, d)
        out = window_reverse(out.transpose(2, 3).reshape(b, nw, n, c), window, hw)
        if shift:
            out = torch.roll(out, shifts=(shift, shift), dims=(1, 2))
        return self.proj(out.reshape(b, -1, c))

    def extra_repr(self) -> str:
        return f"heads={self.num_heads}, window={self.window}, shift={self.shift}"


def reconstruction_head(upsampler: str, dim: int, num_feat: int, scale: int) -> nn.Module:
    """Features (B, dim, H, W) → image (B, 3, H·scale, W·scale).

    scale 1: one 3×3 conv (the model adds the input back: a global residual, as SwinIR does for
    denoising and JPEG). ``pixelshuffledirect`` (lightweight SR): one conv to 3·s² channels and one
    pixel shuffle. ``pixelshuffle`` (classical SR): conv to ``num_feat`` + LeakyReLU, a (conv, ×2
    shuffle) per factor 2 — or a single ×3 shuffle — then a conv to RGB.
    """
    if scale == 1:
        return nn.Conv2d(dim, 3, 3, 1, 1)
    if upsampler == "pixelshuffledirect":
        return nn.Sequential(nn.Conv2d(dim, 3 * scale * scale, 3, 1, 1), nn.PixelShuffle(scale))
    layers: list[nn.Module] = [nn.Conv2d(dim, num_feat, 3, 1, 1), nn.LeakyReLU(inplace=True)]
    factors = [3] if scale == 3 else [2] * int(math.log2(scale))
    for f in factors:
        layers += [nn.Conv2d(num_feat, f * f * num_feat, 3, 1, 1), nn.PixelShuffle(f)]
    layers.append(nn.Conv2d(num_feat, 3, 3, 1, 1))
    return nn.Sequential(*layers)


# --------------------------------------------------------------------------------------------
# models
# --------------------------------------------------------------------------------------------
class IRModel(nn.Module):
    """Base of every restoration backbone: normalizes, pads, restores, crops, de-normalizes.

    ``forward(x)``: x (B, 3, h, w) in [0, 1], any h, w → (B, 3, h·scale, w·scale). Subclasses
    implement :meth:`restore` (on the padded, mean-subtracted image) and :meth:`probe_sites`.
    """

    scale: int
    window_size: int
    embed_dim: int
    final_norm: Normalizer
    rgb_mean: Tensor
    rgb_std: Tensor

    def __init__(self, scale: int, window_size: int, embed_dim: int, stdnorm: bool = False) -> None:
        super().__init__()
        if scale not in SCALES:
            raise SpecError("scale", f"one of {', '.join(map(str, SCALES))}", scale)
        self.scale, self.window_size, self.embed_dim, self.stdnorm = scale, window_size, embed_dim, stdnorm
        # non-persistent: checkpoints hold weights only, and these are constants of the family
        self.register_buffer("rgb_mean", torch.tensor(RGB_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("rgb_std", torch.tensor(RGB_STD).view(1, 3, 1, 1), persistent=False)

    def restore(self, x: Tensor) -> Tensor:
        """(B, 3, H, W) with H, W multiples of ``window_size`` → (B, 3, H·scale, W·scale)."""
        raise NotImplementedError

    def probe_sites(self) -> dict[str, nn.Module]:
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"{type(self).__name__} expects images (B, 3, H, W), got shape {tuple(x.shape)}")
        h, w = x.shape[-2:]
        x = x - self.rgb_mean
        if self.stdnorm:
            x = x / self.rgb_std
        out = self.restore(pad_to_multiple(x, self.window_size))
        out = out[..., : h * self.scale, : w * self.scale]
        if self.stdnorm:
            out = out * self.rgb_std
        return out + self.rgb_mean

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


class ResidualGroup(nn.Module):
    """One residual group of a :class:`ResidualGroupModel`: (B, L, C) → (B, L, C) on a padded (H, W) map."""

    def forward(self, x: Tensor, hw: tuple[int, int]) -> Tensor:
        raise NotImplementedError

    def sites(self) -> list[tuple[str, nn.Module]]:
        """(name, module) of each block whose output is the residual stream, shallow → deep."""
        raise NotImplementedError


class ResidualGroupModel(IRModel):
    """The SwinIR/HAT skeleton; a family only says what one residual group is (:meth:`make_group`).

    conv 3×3 → tokens → embed norm → residual groups → final norm → conv 3×3 + long skip → head.
    A group maps (B, L, C) → (B, L, C) given the padded (H, W), and lists its probe sites.
    """

    config_class: ClassVar[type[BackboneConfig]] = BackboneConfig

    def __init__(self, config: BackboneConfig, norm: NormVariant, scale: int) -> None:
        super().__init__(scale, config.window_size, config.embed_dim, config.stdnorm)
        self.config = config
        dim = config.embed_dim
        self.conv_first = nn.Conv2d(3, dim, 3, 1, 1)
        self.embed_norm = norm(dim, "embed")
        self.groups = nn.ModuleList(self.make_group(i, norm) for i in range(len(config.depths)))
        self.final_norm = norm(dim, "final")
        self.conv_after_body = nn.Conv2d(dim, dim, 3, 1, 1)
        self.head = reconstruction_head(config.upsampler, dim, config.num_feat, scale)
        self.apply(_init_linear)

    def make_group(self, index: int, norm: NormVariant) -> ResidualGroup:
        raise NotImplementedError

    def restore(self, x: Tensor) -> Tensor:
        hw = (x.shape[-2], x.shape[-1])
        shallow = self.conv_first(x)
        tokens = self.embed_norm(to_tokens(shallow))
        for group in self.groups:
            tokens = group(tokens, hw)
        deep = self.conv_after_body(to_image(self.final_norm(tokens), hw)) + shallow
        out = self.head(deep)
        return x + out if self.scale == 1 else out

    def probe_sites(self) -> dict[str, nn.Module]:
        sites: dict[str, nn.Module] = {}
        for i, group in enumerate(self.groups):
            for name, module in cast(ResidualGroup, group).sites():
                sites[f"g{i}.{name}"] = module
        sites["final"] = self.final_norm
        return sites


def _init_linear(module: nn.Module) -> None:
    # SwinIR/HAT initialization: truncated-normal linear weights, zero biases; convs keep PyTorch's.
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
