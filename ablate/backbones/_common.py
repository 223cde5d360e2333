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
import warnings
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.attention import SDPBackend, sdpa_kernel

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


def reflect_index(n: int, padded: int, device: torch.device, replicate: bool = False) -> Tensor:
    """Indices (``padded``,) of a side of ``n`` pixels padded at its end to ``padded`` pixels.

    Reflection without repeating the edge (``F.pad(mode="reflect")``), repeated as often as the padding
    needs (its period is 2n − 2); with ``replicate`` (or one pixel: nothing to reflect), the edge pixel
    repeated.
    """
    i = torch.arange(padded, device=device)
    if replicate or n == 1:
        return i.clamp(max=n - 1)
    j = i % (2 * n - 2)
    return torch.where(j < n, j, 2 * n - 2 - j)


def pad_to_multiple(x: Tensor, multiple: int) -> Tensor:
    """Pad the bottom/right of (B, C, H, W) so H and W are multiples of ``multiple``, by reflection.

    A gather of reflected indices (:func:`reflect_index`), so a small image is reflected as often as it
    takes; an image with a side of one pixel to pad (nothing to reflect) is padded by replication on
    both sides. Its backward accumulates through ``index_put`` (deterministic under
    ``torch.use_deterministic_algorithms``), unlike ``reflection_pad2d``'s CUDA backward.
    """
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    replicate = bool((ph and h == 1) or (pw and w == 1))
    if ph:
        x = x[..., reflect_index(h, h + ph, x.device, replicate), :]
    if pw:
        x = x[..., reflect_index(w, w + pw, x.device, replicate)]
    return x


# --------------------------------------------------------------------------------------------
# window tables: which token sits in which window slot, and the shifted-window mask
# --------------------------------------------------------------------------------------------
def relative_position_index(query_window: int, key_window: int) -> Tensor:
    """(Nq, Nk) indices into a ((wq + wk − 1)², heads) relative-position-bias table.

    A key window larger than the query window (HAT's overlapping cross-attention) simply widens the
    range of offsets; with equal windows this is Swin's (2w − 1)² table. Built once per module, as a
    non-persistent buffer (it moves with the module and is not part of checkpoints).
    """
    def coords(n: int) -> Tensor:
        grid = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
        return torch.stack(grid).flatten(1)  # (2, n²)

    rel = coords(key_window)[:, None, :] - coords(query_window)[:, :, None]  # (2, Nq, Nk)
    rel = rel + (query_window - 1)  # offsets now start at 0
    side = query_window + key_window - 1
    return rel[0] * side + rel[1]


@dataclass(frozen=True)
class WindowTables:
    """Index tables of one (padded H×W, window, shift): windows are cut and pasted back by one gather each.

    ``gather`` (nW·N,): the token (row-major index into H·W) in each window slot, windows in row-major
    order and pixels row-major inside a window, the cyclic shift by −``shift`` applied — so
    ``tokens[:, gather]`` is Swin's roll + window partition in one operation. ``to_tokens`` (L,): the
    inverse, for outputs laid out (B, nW·N, ·); ``to_tokens_nw`` (L,): the same for outputs laid out
    (B, N·nW, ·) (window index fastest). ``mask`` (nW, 1, N, N): 0 inside a region, −100 across (after
    the cyclic shift a border window holds pixels from opposite sides of the image); None unshifted.
    """

    gather: Tensor
    to_tokens: Tensor
    to_tokens_nw: Tensor
    mask: Tensor | None

    @staticmethod
    def build(hw: tuple[int, int], window: int, shift: int, device: torch.device) -> WindowTables:
        """Pure tensor arithmetic on ``device`` (no Python loops, no host copies): traceable by torch.compile."""
        h, w = hw
        nh, nw = h // window, w // window
        i = torch.arange(window, device=device)
        rows = torch.arange(nh, device=device)[:, None] * window + i  # (nh, window): rows in the shifted frame
        cols = torch.arange(nw, device=device)[:, None] * window + i
        src_r, src_c = (rows + shift) % h, (cols + shift) % w  # where each shifted-frame pixel came from
        gather = (src_r[:, None, :, None] * w + src_c[None, :, None, :]).reshape(-1)  # (nh, nw, win, win)
        to_tokens = torch.argsort(gather)  # the inverse permutation
        n = window * window
        to_tokens_nw = (to_tokens % n) * (nh * nw) + to_tokens // n
        mask = None
        if shift:
            def band(x: Tensor, side: int) -> Tensor:  # regions of the shifted frame: 0, 1, 2
                return (x >= side - window).long() + (x >= side - shift).long()

            label = (band(rows, h)[:, None, :, None] * 3 + band(cols, w)[None, :, None, :]).reshape(nh * nw, n)
            mask = (label[:, :, None] != label[:, None, :]).float().mul_(_MASKED).unsqueeze(1)
        return WindowTables(gather, to_tokens, to_tokens_nw, mask)


_TABLES: OrderedDict[tuple[Any, ...], WindowTables] = OrderedDict()
_TABLES_KEPT = 32  # padded sizes × (window, shift) pairs cached at once (evaluation sees many sizes)


def window_tables(hw: tuple[int, int], window: int, shift: int, device: torch.device) -> WindowTables:
    """The tables of one padded size, built once per size and device and kept (least recently used out).

    Under torch.compile they are computed inside the graph instead (a few index kernels on the device,
    never on the CPU), so a compiled step depends on no Python-side cache.
    """
    if torch.compiler.is_compiling():
        return WindowTables.build(hw, window, shift, device)
    key = (hw, window, shift, device)
    tables = _TABLES.get(key)
    if tables is None:
        with torch.inference_mode(False), torch.no_grad():  # cached tensors stay usable by autograd later
            tables = _TABLES[key] = WindowTables.build(hw, window, shift, device)
        if len(_TABLES) > _TABLES_KEPT:
            _TABLES.popitem(last=False)
    else:
        _TABLES.move_to_end(key)
    return tables


# --------------------------------------------------------------------------------------------
# attention kernels
# --------------------------------------------------------------------------------------------
#: how attention is computed: "auto" (the fused memory-efficient kernel on CUDA, the explicit product on
#: the CPU), "fused" (F.scaled_dot_product_attention with the head dim padded, any device: what CUDA runs),
#: or "math" (the explicit product everywhere). Set by tests and benchmarks through ``attention_path``.
_ATTENTION = {"path": "auto"}


@contextmanager
def attention_path(path: str) -> Iterator[None]:
    """Compute attention by ``path`` ("auto", "fused" or "math") inside the block."""
    if path not in ("auto", "fused", "math"):
        raise ValueError(f"attention path: expected auto, fused or math, got {path!r}")
    old = _ATTENTION["path"]
    _ATTENTION["path"] = path
    try:
        yield
    finally:
        _ATTENTION["path"] = old


def attention_kernel(device: torch.device) -> str:
    """The attention path a model runs on ``device``: "fused" or "math" (recorded on each run)."""
    path = _ATTENTION["path"]
    if path != "auto":
        return path
    return "fused" if device.type == "cuda" else "math"


def padded_head_dim(d: int, like: Tensor) -> int:
    """The head dim the fused kernel is given for activations like ``like`` (its autocast dtype if one
    is on): memory-efficient attention needs it divisible by 16 bytes' worth of elements (4 in float32,
    8 in bf16/fp16). Zero columns change neither q·kᵀ nor the output's first d columns; the softmax scale
    stays 1/√d."""
    kind = like.device.type
    dtype = torch.get_autocast_dtype(kind) if torch.is_autocast_enabled(kind) else like.dtype
    align = max(1, 16 // dtype.itemsize)
    return -(-d // align) * align


_FUSED_FAILED: set[tuple[Any, ...]] = set()


def _fused_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor, scale: float) -> Tensor:
    """softmax(q·kᵀ·scale + mask)·v on SDPA's memory-efficient kernel (CUDA), its math path elsewhere.

    q, k, v: (B, H, N|M, d'); mask: broadcastable to (B, H, N, M), with its gradient. On CUDA the
    memory-efficient kernel is required; where it refuses a shape, one warning names the shape and the
    explicit product is used for it (so a fallback is never silent).
    """
    mask = mask.to(q.dtype)
    if q.device.type != "cuda":
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)
    if torch.compiler.is_compiling():
        with sdpa_kernel([SDPBackend.EFFICIENT_ATTENTION]):
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)
    key = (tuple(q.shape), tuple(k.shape), tuple(mask.shape), q.dtype)
    if key not in _FUSED_FAILED:
        try:
            with sdpa_kernel([SDPBackend.EFFICIENT_ATTENTION]):
                return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)
        except RuntimeError as err:
            _FUSED_FAILED.add(key)
            warnings.warn(f"attention: the memory-efficient kernel refused q {tuple(q.shape)} {q.dtype} "
                          f"({str(err).splitlines()[0][:160]}); the explicit product is used for this shape",
                          RuntimeWarning, stacklevel=2)
    return _math_attention(q, k, v, mask, scale)


def _math_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor, scale: float) -> Tensor:
    """softmax(q·kᵀ·scale + mask)·v as two products (the CPU path: the CPU's fused SDPA kernel returns no
    gradient for the mask, and its math fallback adds fully-masked-row checks the bias never needs).
    The mask is added by broadcasting, never copied per batch."""
    # the shift mask is float32: a half/bf16 model's logits stay in its dtype
    logits = torch.add(mask.to(q.dtype), torch.matmul(q, k.transpose(-2, -1)), alpha=scale)
    return torch.matmul(logits.softmax(dim=-1), v)


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


def attend(q: Tensor, k: Tensor, v: Tensor, mask: Tensor, scale: float) -> Tensor:
    """softmax(q·kᵀ·scale + mask)·v by the current attention path; q, k, v (B, H, N|M, d'), mask
    broadcastable to (B, H, N, M) → (B, H, N, d')."""
    fused = attention_kernel(q.device) == "fused"
    return (_fused_attention if fused else _math_attention)(q, k, v, mask, scale)


def paste_windows(out: Tensor, batch: int, heads: int, index: Tensor, d: int) -> Tensor:
    """Attention output (B·nW, h, N, d') or (B, nW·h, N, d') → the token map (B, L, h·d) in image order.

    ``out.transpose(1, 2)`` (contiguous for the fused kernel) flattens into window slots: (B, nW·N, h, d')
    for windows in the batch dim, (B, N·nW, h, d') for windows in the head dim; ``index`` (one of
    :class:`WindowTables`' inverses) reads each token's slot back, unshifted, in one gather.
    """
    dp = out.shape[-1]
    slots = out.transpose(1, 2).reshape(batch, -1, heads, dp)
    if dp != d:
        slots = slots[..., :d]  # the zero-padded head columns
    return slots[:, index].flatten(2)


class WindowAttention(nn.Module):
    """(Shifted-)window multi-head self-attention with a relative position bias (Swin, SwinIR, HAT).

    Takes the normalized *full* token map (B, H·W, C), cyclically shifts it by ``shift``, cuts it into
    windows, attends inside each window, and returns the full map again (B, H·W, C). The shift and the
    window cut are one gather of the projected tokens, and pasting back one gather of the output
    (:class:`WindowTables`); on CUDA the attention is SDPA's memory-efficient kernel with the head dim
    zero-padded to its alignment and the bias (+ shift mask) as an additive mask with its gradient.
    """

    relative_position_index: Tensor

    def __init__(self, dim: int, num_heads: int, window: int, shift: int, qkv_bias: bool = True) -> None:
        super().__init__()
        self.num_heads, self.window, self.shift = num_heads, window, shift
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, num_heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        self.register_buffer("relative_position_index", relative_position_index(window, window), persistent=False)

    def position_bias(self) -> Tensor:
        """(heads, N, N) bias gathered from the table."""
        return self.relative_position_bias_table.t()[:, self.relative_position_index]

    def forward(self, x: Tensor, hw: tuple[int, int]) -> Tensor:
        b, _, c = x.shape
        heads, window = self.num_heads, self.window
        d, n = c // heads, window * window
        tables = window_tables(hw, window, self.shift, x.device)
        dp = padded_head_dim(d, x) if attention_kernel(x.device) == "fused" else d
        qkv = self.qkv(x)[:, tables.gather]  # (B, nW·N, 3C): shifted and cut into windows at once
        nw = qkv.shape[1] // n
        qkv = qkv.view(b, nw, n, 3, heads, d)
        if dp != d:
            qkv = F.pad(qkv, (0, dp - d))
        bias = self.position_bias()
        if tables.mask is None:  # windows in the batch dim; the (h, N, N) bias broadcasts over it
            q, k, v = qkv.flatten(0, 1).permute(2, 0, 3, 1, 4).unbind(0)  # (B·nW, h, N, d')
            out = attend(q, k, v, bias, d ** -0.5)
            index = tables.to_tokens
        else:  # windows in the head dim, so the (nW·h, N, N) mask broadcasts over the batch
            q, k, v = qkv.permute(3, 0, 1, 4, 2, 5).reshape(3, b, nw * heads, n, dp).unbind(0)
            out = attend(q, k, v, (bias + tables.mask).view(nw * heads, n, n), d ** -0.5)
            index = tables.to_tokens_nw
        return self.proj(paste_windows(out, b, heads, index, d))

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
