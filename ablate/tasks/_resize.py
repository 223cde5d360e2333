"""MATLAB-compatible bicubic ``imresize`` in torch (the degradation behind every SR benchmark).

    import torch
    from ablate.tasks import imresize
    hr = torch.rand(3, 96, 96)
    lr = imresize(hr, 1 / 2)             # (3, 48, 48): antialiased bicubic, as MATLAB's imresize
    up = imresize(lr, size=(96, 96))     # plain bicubic upscaling

What MATLAB does, and so what this does (``imresize.m``, method ``bicubic``):

- cubic convolution kernel with a = −0.5;
- output pixel i (1-based) samples the input at u = i/scale + (1 − 1/scale)/2;
- when shrinking, the kernel is widened by 1/scale (antialiasing) and scaled by ``scale``; the
  support is 4/scale + 2 taps and each row of weights is normalized to sum to 1;
- out-of-range taps are mirrored half-sample symmetrically (``[1..n, n..1]``, edge repeated);
- each axis is resized separately, the axis with the smaller scale first (H first on ties).

SR datasets store the LR image as 8-bit; :class:`ablate.tasks.SRTask` rounds after resizing, as
MATLAB does for ``uint8`` input. This function itself returns unrounded floats.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor


def cubic(x: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel with a = −0.5 (MATLAB's and PIL's bicubic)."""
    ax = np.abs(x)
    ax2, ax3 = ax * ax, ax * ax * ax
    return ((1.5 * ax3 - 2.5 * ax2 + 1.0) * (ax <= 1)
            + (-0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0) * ((ax > 1) & (ax <= 2)))


@functools.lru_cache(maxsize=512)
def resize_weights(in_len: int, out_len: int, scale: float, antialias: bool = True
                   ) -> tuple[np.ndarray, np.ndarray]:
    """(indices (out, P) int64 0-based, weights (out, P) float64) of one axis, as MATLAB builds them."""
    kernel_width = 4.0
    shrink = scale < 1 and antialias
    if shrink:
        kernel_width /= scale  # antialiasing: the kernel covers 4 *output* pixels
    x = np.arange(1, out_len + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1.0 - 1.0 / scale)
    left = np.floor(u - kernel_width / 2.0)
    taps = int(math.ceil(kernel_width)) + 2
    ind = left[:, None] + np.arange(taps, dtype=np.float64)[None, :]  # 1-based, may leave [1, n]
    dist = u[:, None] - ind
    weights = scale * cubic(scale * dist) if shrink else cubic(dist)
    weights = weights / weights.sum(axis=1, keepdims=True)
    mirror = np.concatenate([np.arange(in_len), np.arange(in_len)[::-1]])
    ind0 = mirror[np.mod(ind.astype(np.int64) - 1, 2 * in_len)]
    keep = np.any(weights != 0, axis=0)  # MATLAB drops all-zero columns; harmless, saves work
    return np.ascontiguousarray(ind0[:, keep]), np.ascontiguousarray(weights[:, keep])


@functools.lru_cache(maxsize=512)
def _dense(in_len: int, out_len: int, scale: float, antialias: bool) -> np.ndarray:
    """The same weights as an (out, in) matrix (mirrored taps add up)."""
    ind, w = resize_weights(in_len, out_len, scale, antialias)
    mat = np.zeros((out_len, in_len), dtype=np.float64)
    np.add.at(mat, (np.repeat(np.arange(out_len), ind.shape[1]), ind.ravel()), w.ravel())
    return mat


def constant_like(arr: np.ndarray, like: Tensor) -> Tensor:
    """``arr`` as a tensor on ``like``'s device (floats in its dtype). To a GPU through pinned memory,
    asynchronously: a copy from pageable memory would make the host wait for the GPU's queue."""
    t = torch.from_numpy(arr)
    if t.is_floating_point():
        t = t.to(like.dtype)
    if like.device.type != "cuda":
        return t.to(like.device)
    return t.pin_memory().to(like.device, non_blocking=True)


def _matrix(in_len: int, out_len: int, scale: float, antialias: bool, like: Tensor) -> Tensor:
    return constant_like(_dense(in_len, out_len, scale, antialias), like)


def _resize_axis(x: Tensor, axis: int, out_len: int, scale: float, antialias: bool) -> Tensor:
    in_len = x.shape[axis]
    if in_len * out_len <= 1 << 18:
        # Small maps (training patches): one matmul beats gathering P shifted copies.
        mat = _matrix(in_len, out_len, scale, antialias, x)
        return mat @ x if axis == -2 else x @ mat.T
    ind, w = resize_weights(in_len, out_len, scale, antialias)
    idx, wt = constant_like(ind, x), constant_like(w, x)
    taps = ind.shape[1]
    if axis == -2:
        g = x.index_select(-2, idx.reshape(-1)).unflatten(-2, (out_len, taps))  # (..., out, P, W)
        return (g * wt[:, :, None]).sum(-2)
    g = x.index_select(-1, idx.reshape(-1)).unflatten(-1, (out_len, taps))  # (..., H, out, P)
    return (g * wt).sum(-1)


def imresize(x: Tensor, scale: float | Sequence[float] | None = None, *,
             size: Sequence[int] | None = None, antialias: bool = True) -> Tensor:
    """Resize the last two axes of ``x`` (…, H, W) like MATLAB's ``imresize(x, scale, 'bicubic')``.

    Give ``scale`` (one factor or (sy, sx); output side = ceil(side · scale)) or ``size`` (h, w;
    the factors are then h/H and w/W, as MATLAB derives them). Float input keeps its dtype; values
    are not clamped or rounded.
    """
    if not torch.is_floating_point(x):
        raise TypeError(f"imresize expects a float tensor, got {x.dtype}")
    if x.dim() < 2:
        raise ValueError(f"imresize expects (..., H, W), got shape {tuple(x.shape)}")
    in_h, in_w = x.shape[-2], x.shape[-1]
    if size is not None:
        out_h, out_w = int(size[0]), int(size[1])
        sy, sx = out_h / in_h, out_w / in_w
    elif scale is not None:
        if isinstance(scale, (int, float, np.number)):
            sy = sx = float(scale)
        else:
            sy, sx = float(scale[0]), float(scale[1])
        out_h, out_w = int(math.ceil(in_h * sy - 1e-9)), int(math.ceil(in_w * sx - 1e-9))
    else:
        raise ValueError("imresize needs a scale or a size")
    if min(out_h, out_w, in_h, in_w) < 1 or sy <= 0 or sx <= 0:
        raise ValueError(f"imresize: cannot resize {in_h}×{in_w} to {out_h}×{out_w}")
    # MATLAB resizes along the axis with the smaller scale first (fewer pixels to carry), H on ties.
    steps = [(-2, out_h, sy), (-1, out_w, sx)]
    if sx < sy:
        steps.reverse()
    out = x
    for axis, n, s in steps:
        if out.shape[axis] == n and s == 1.0:
            continue
        out = _resize_axis(out, axis, n, s, antialias)
    return out
