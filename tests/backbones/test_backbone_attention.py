"""The vectorized window / overlapping attention against plain per-window loops, and the padding helper.

    .venv/bin/python -m pytest tests/backbones/test_backbone_attention.py -q
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ablate.backbones._common import WindowAttention, attention_path, pad_to_multiple, relative_position_index
from ablate.backbones.hat import OverlappingCrossAttention


def _bias(table: torch.Tensor, qpos: tuple[int, int], kpos: tuple[int, int], wq: int, wk: int) -> torch.Tensor:
    """Bias of one (query, key) pair from its offset, written out from the definition."""
    dy, dx = kpos[0] - qpos[0] + wq - 1, kpos[1] - qpos[1] + wq - 1
    return table[dy * (wq + wk - 1) + dx]  # (heads,)


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """q (N, h, d), k/v (M, h, d), bias (h, N, M) → (N, h, d), plain softmax attention."""
    logits = torch.einsum("nhd,mhd->hnm", q, k) / q.shape[-1] ** 0.5 + bias
    return torch.einsum("hnm,mhd->nhd", logits.softmax(-1), v)


def reference_window_attention(attn: WindowAttention, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    b, _, c = x.shape
    h, w = hw
    heads, win, s = attn.num_heads, attn.window, attn.shift
    table = attn.relative_position_bias_table
    qkv = attn.qkv(x).view(b, h, w, 3, heads, c // heads)
    qkv = torch.roll(qkv, (-s, -s), (1, 2))
    # in the rolled frame, a pixel at r came from (r + s) mod side; it "wrapped" iff r + s ≥ side
    wrapped_r = torch.arange(h) + s >= h
    wrapped_c = torch.arange(w) + s >= w
    out = torch.zeros(b, h, w, heads, c // heads)
    for wy in range(0, h, win):
        for wx in range(0, w, win):
            pos = [(i, j) for i in range(win) for j in range(win)]
            bias = torch.stack([torch.stack([_bias(table, p, q, win, win) for q in pos]) for p in pos])
            bias = bias.permute(2, 0, 1)  # (h, N, N)
            keys = [(wrapped_r[wy + i], wrapped_c[wx + j]) for i, j in pos]
            allowed = torch.tensor([[kp == kq for kq in keys] for kp in keys])
            bias = bias.masked_fill(~allowed, float("-inf"))
            block = qkv[:, wy:wy + win, wx:wx + win].reshape(b, win * win, 3, heads, -1)
            for n in range(b):
                o = _attend(block[n, :, 0], block[n, :, 1], block[n, :, 2], bias)
                out[n, wy:wy + win, wx:wx + win] = o.view(win, win, heads, -1)
    out = torch.roll(out, (s, s), (1, 2))
    return attn.proj(out.reshape(b, h * w, c))


# grad on: the CPU training path (explicit product); grad off: F.scaled_dot_product_attention
@pytest.mark.parametrize("grad", [True, False])
@pytest.mark.parametrize("shift", [0, 2])
def test_window_attention_matches_per_window_loop(shift: int, grad: bool) -> None:
    torch.manual_seed(0)
    attn = WindowAttention(dim=8, num_heads=2, window=4, shift=shift)
    with torch.no_grad():
        attn.relative_position_bias_table.normal_()  # make the bias matter
    x = torch.randn(2, 8 * 12, 8)
    with torch.set_grad_enabled(grad):
        fast = attn(x, (8, 12))
    with torch.no_grad():
        slow = reference_window_attention(attn, x, (8, 12))
    torch.testing.assert_close(fast, slow, rtol=1e-4, atol=1e-5)


def reference_overlapping_attention(attn: OverlappingCrossAttention, x: torch.Tensor,
                                    hw: tuple[int, int]) -> torch.Tensor:
    b, _, c = x.shape
    h, w = hw
    heads, win, ov = attn.num_heads, attn.window, attn.overlap
    margin = (ov - win) // 2
    table = attn.relative_position_bias_table
    q, k, v = attn.qkv(x).view(b, h, w, 3, c).unbind(3)
    # HAT zero-pads the projected keys/values at the border
    kp = F.pad(k, (0, 0, margin, margin, margin, margin))
    vp = F.pad(v, (0, 0, margin, margin, margin, margin))
    qpos = [(i, j) for i in range(win) for j in range(win)]
    kpos = [(i, j) for i in range(ov) for j in range(ov)]
    bias = torch.stack([torch.stack([_bias(table, p, q_, win, ov) for q_ in kpos]) for p in qpos]).permute(2, 0, 1)
    out = torch.zeros(b, h, w, c)
    for wy in range(0, h, win):
        for wx in range(0, w, win):
            qs = q[:, wy:wy + win, wx:wx + win].reshape(b, win * win, heads, -1)
            ks = kp[:, wy:wy + ov, wx:wx + ov].reshape(b, ov * ov, heads, -1)
            vs = vp[:, wy:wy + ov, wx:wx + ov].reshape(b, ov * ov, heads, -1)
            for n in range(b):
                out[n, wy:wy + win, wx:wx + win] = _attend(qs[n], ks[n], vs[n], bias).reshape(win, win, c)
    return attn.proj(out.reshape(b, h * w, c))


@pytest.mark.parametrize("grad", [True, False])
def test_overlapping_cross_attention_matches_per_window_loop(grad: bool) -> None:
    torch.manual_seed(0)
    attn = OverlappingCrossAttention(dim=8, num_heads=2, window=4, overlap=6, qkv_bias=True)
    with torch.no_grad():
        attn.relative_position_bias_table.normal_()
    x = torch.randn(2, 8 * 12, 8)
    with torch.set_grad_enabled(grad):
        fast = attn(x, (8, 12))
    with torch.no_grad():
        slow = reference_overlapping_attention(attn, x, (8, 12))
    torch.testing.assert_close(fast, slow, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("shift", [0, 2])
def test_attention_paths_agree_in_value_and_gradient(shift: int, dtype: torch.dtype) -> None:
    """The explicit product (CPU) and the fused layout (what CUDA runs: head dim zero-padded to the kernel's
    alignment, the original 1/√d scale, bias + shift mask as an additive mask) give the same values and
    gradients, for the input and every parameter (the bias table's gradient comes through the mask)."""
    torch.manual_seed(0)
    attn = WindowAttention(dim=15, num_heads=3, window=4, shift=shift).to(dtype)  # head dim 5: padded to 8 / 6
    with torch.no_grad():
        attn.relative_position_bias_table.normal_()
    x = torch.randn(2, 8 * 12, 15, dtype=dtype, requires_grad=True)
    results = []
    for path in ("math", "fused"):
        with attention_path(path):
            out = attn(x, (8, 12))
        grads = torch.autograd.grad(out.square().sum(), [x, *attn.parameters()])
        results.append((out, grads))
    tol = {"rtol": 1e-10, "atol": 1e-12} if dtype == torch.float64 else {"rtol": 1e-5, "atol": 1e-6}
    torch.testing.assert_close(results[0][0], results[1][0], **tol)
    for g_math, g_fused in zip(results[0][1], results[1][1]):
        torch.testing.assert_close(g_math, g_fused, **tol)


@pytest.mark.parametrize(("wq", "wk"), [(8, 8), (8, 12), (16, 24)])
def test_relative_position_index_covers_the_table(wq: int, wk: int) -> None:
    index = relative_position_index(wq, wk)
    assert index.shape == (wq * wq, wk * wk)
    assert index.min() == 0 and index.max() == (wq + wk - 1) ** 2 - 1
    assert index.unique().numel() == (wq + wk - 1) ** 2


def _stepwise_reflect_pad(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """The previous implementation: F.pad reflections of at most side − 1 at a time, replicate for 1 pixel."""
    while True:
        h, w = x.shape[-2:]
        ph, pw = (-h) % multiple, (-w) % multiple
        if not (ph or pw):
            return x
        if (ph and h == 1) or (pw and w == 1):
            return F.pad(x, (0, pw, 0, ph), mode="replicate")
        x = F.pad(x, (0, min(pw, w - 1), 0, min(ph, h - 1)), mode="reflect")


@pytest.mark.parametrize("multiple", [4, 8, 16])
def test_pad_to_multiple_equals_stepwise_reflection(multiple: int) -> None:
    for h in range(1, 20):
        for w in (1, 2, 3, 7, 16):
            x = torch.rand(1, 2, h, w)
            torch.testing.assert_close(pad_to_multiple(x, multiple), _stepwise_reflect_pad(x, multiple), rtol=0, atol=0)


@pytest.mark.parametrize(("hw", "multiple"), [((37, 29), 8), ((3, 2), 16), ((1, 5), 8), ((16, 32), 16)])
def test_pad_to_multiple_reflects_and_keeps_the_image(hw: tuple[int, int], multiple: int) -> None:
    x = torch.rand(2, 3, *hw)
    y = pad_to_multiple(x, multiple)
    assert y.shape[-2] % multiple == 0 and y.shape[-1] % multiple == 0
    assert y.shape[-2] - hw[0] < multiple and y.shape[-1] - hw[1] < multiple
    torch.testing.assert_close(y[..., : hw[0], : hw[1]], x, rtol=0, atol=0)
    if hw == (37, 29):  # a plain reflection: row 37 mirrors row 35
        torch.testing.assert_close(y[..., 37, : hw[1]], x[..., 35, :], rtol=0, atol=0)
