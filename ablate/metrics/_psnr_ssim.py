"""PSNR and SSIM on 8-bit-quantized images (BasicSR's protocol), in float64 torch.

    import torch
    from ablate.metrics import psnr, ssim
    gt = torch.rand(2, 3, 48, 48)
    psnr((gt + 0.02).clamp(0, 1), gt, y_channel=True, crop_border=2)   # mean over the batch, dB
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

# ITU-R BT.601 luma for RGB in [0, 1], MATLAB's rgb2ycbcr range [16, 235]
_Y_WEIGHTS = (65.481, 128.553, 24.966)
_Y_OFFSET = 16.0


def _as_batch(img: Any, data_range: float, name: str) -> Tensor:
    """Any accepted input → float64 (B, C, H, W) on the 0..255 scale, rounded and clipped to 8 bits."""
    if isinstance(img, np.ndarray):
        if np.issubdtype(img.dtype, np.integer) and data_range != 255:
            raise ValueError(f"{name}: integer arrays are 8-bit images; pass data_range=255 "
                             f"(got data_range={data_range})")
        arr = torch.from_numpy(np.ascontiguousarray(img)).to(torch.float64)
        if arr.dim() == 2:  # (H, W) grayscale
            arr = arr[None, None]
        elif arr.dim() == 3:  # (H, W, C)
            arr = arr.permute(2, 0, 1)[None]
        elif arr.dim() == 4:  # (B, H, W, C)
            arr = arr.permute(0, 3, 1, 2)
        else:
            raise ValueError(f"{name}: expected a numpy array (H, W), (H, W, C) or (B, H, W, C), "
                             f"got shape {img.shape}")
    elif isinstance(img, Tensor):
        if not torch.is_floating_point(img) and data_range != 255:
            raise ValueError(f"{name}: integer tensors are 8-bit images; pass data_range=255 "
                             f"(got data_range={data_range})")
        arr = img.detach().to(torch.float64)
        if arr.dim() == 3:  # (C, H, W)
            arr = arr[None]
        elif arr.dim() != 4:
            raise ValueError(f"{name}: expected a tensor (C, H, W) or (B, C, H, W), got shape "
                             f"{tuple(img.shape)}")
    else:
        raise TypeError(f"{name}: expected a torch tensor or numpy array, got {type(img).__name__}")
    # The IR protocol scores the 8-bit images a method would save: scale, clip, round.
    return torch.round((arr * (255.0 / data_range)).clamp(0.0, 255.0))


def rgb_to_y(img: Tensor) -> Tensor:
    """BT.601 luma of (B, 3, H, W) RGB on the 0..255 scale → (B, 1, H, W) in [16, 235] (not rounded,
    as BasicSR's ``to_y_channel``)."""
    r, g, b = img[:, 0:1], img[:, 1:2], img[:, 2:3]
    wr, wg, wb = _Y_WEIGHTS
    return _Y_OFFSET + (wr * r + wg * g + wb * b) / 255.0


def _prepare(pred: Any, gt: Any, crop_border: int, y_channel: bool, data_range: float
             ) -> tuple[Tensor, Tensor]:
    x = _as_batch(pred, data_range, "pred")
    y = _as_batch(gt, data_range, "gt").to(x.device)
    if x.shape != y.shape:
        raise ValueError(f"pred and gt shapes differ: {tuple(x.shape)} vs {tuple(y.shape)} "
                         "(after conversion to (B, C, H, W))")
    if isinstance(crop_border, bool) or not isinstance(crop_border, int) or crop_border < 0:
        raise ValueError(f"crop_border must be an integer ≥ 0, got {crop_border!r}")
    if crop_border:
        if min(x.shape[-2:]) <= 2 * crop_border:
            raise ValueError(f"crop_border {crop_border} leaves nothing of a {x.shape[-2]}×{x.shape[-1]} image")
        x = x[..., crop_border:-crop_border, crop_border:-crop_border]
        y = y[..., crop_border:-crop_border, crop_border:-crop_border]
    if y_channel:
        if x.shape[1] != 3:
            raise ValueError(f"y_channel=True needs 3-channel RGB images, got {x.shape[1]} channels")
        x, y = rgb_to_y(x), rgb_to_y(y)
    return x, y


def psnr(pred: Any, gt: Any, *, crop_border: int = 0, y_channel: bool = False,
         data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB, by the standard image-restoration protocol.

    Inputs: torch tensors (3, H, W) or (B, 3, H, W), or numpy arrays (H, W, 3) or (B, H, W, 3)
    (also single-channel), with values in [0, ``data_range``] (1.0 for float images; integer
    input must say 255). Both images are scaled to 0..255, clipped and rounded to 8 bits, then
    ``crop_border`` pixels are dropped on every side, then (``y_channel``) converted to BT.601 Y in
    [16, 235]; MSE is computed in float64 and PSNR = 10·log10(255² / MSE) (inf when identical).
    A batch returns the mean of the per-image PSNRs (how test sets are averaged).
    """
    x, y = _prepare(pred, gt, crop_border, y_channel, data_range)
    mse = ((x - y) ** 2).mean(dim=(1, 2, 3))
    vals = [math.inf if m == 0 else 10.0 * math.log10(255.0 ** 2 / m) for m in mse.tolist()]
    return float(sum(vals) / len(vals))


@functools.lru_cache(maxsize=8)
def _gauss_1d(size: int, sigma: float) -> np.ndarray:
    r = np.arange(size, dtype=np.float64) - (size - 1) / 2
    g = np.exp(-(r ** 2) / (2 * sigma ** 2))
    return g / g.sum()


def _filter_valid(x: Tensor, g: Tensor) -> Tensor:
    """Separable Gaussian filtering of (N, 1, H, W), keeping only fully covered pixels ('valid')."""
    k = g.numel()
    x = F.conv2d(x, g.view(1, 1, k, 1))
    return F.conv2d(x, g.view(1, 1, 1, k))


def ssim(pred: Any, gt: Any, *, crop_border: int = 0, y_channel: bool = False,
         data_range: float = 1.0) -> float:
    """Structural similarity (Wang et al. 2004) by the standard image-restoration protocol.

    Same inputs and preprocessing as :func:`psnr` (8-bit quantization, border crop, optional Y).
    Then per channel, on the 0..255 scale in float64: 11×11 Gaussian window with σ = 1.5,
    C1 = (0.01·255)², C2 = (0.03·255)², population (not sample) variances, statistics kept only
    where the window fits inside the image ('valid', as BasicSR's and MATLAB's ``ssim_index``);
    the SSIM map's mean, averaged over channels (RGB) and over the batch.
    """
    x, y = _prepare(pred, gt, crop_border, y_channel, data_range)
    if min(x.shape[-2:]) < 11:
        raise ValueError(f"ssim needs images of at least 11×11 after cropping, got {x.shape[-2]}×{x.shape[-1]}")
    b, c, h, w = x.shape
    x = x.reshape(b * c, 1, h, w)
    y = y.reshape(b * c, 1, h, w)
    g = torch.from_numpy(_gauss_1d(11, 1.5)).to(x.device)
    c1, c2 = (0.01 * 255.0) ** 2, (0.03 * 255.0) ** 2
    mu_x, mu_y = _filter_valid(x, g), _filter_valid(y, g)
    xx = _filter_valid(x * x, g) - mu_x ** 2
    yy = _filter_valid(y * y, g) - mu_y ** 2
    xy = _filter_valid(x * y, g) - mu_x * mu_y
    smap = ((2 * mu_x * mu_y + c1) * (2 * xy + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (xx + yy + c2))
    per_image = smap.mean(dim=(1, 2, 3)).view(b, c).mean(dim=1)
    return float(per_image.mean())
