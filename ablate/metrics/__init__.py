"""PSNR and SSIM by the standard image-restoration protocol, as pure functions.

    import torch
    from ablate.metrics import psnr, ssim
    pred, gt = torch.rand(3, 64, 64), torch.rand(3, 64, 64)      # (3, H, W) or (B, 3, H, W) in [0, 1]
    psnr(pred, gt, crop_border=2, y_channel=True)                # dB, as SR papers report
    ssim(pred, gt)                                               # RGB SSIM, mean over channels

Protocol (BasicSR / SwinIR / HAT): both images are quantized to 8 bits (scale to 0..255, clip,
round), ``crop_border`` pixels are dropped on each side, ``y_channel`` converts to ITU-R BT.601 Y
in the MATLAB range [16, 235] (Y = 16 + 65.481 R + 128.553 G + 24.966 B, RGB in [0, 1]), and
everything is computed in float64. SSIM: 11×11 Gaussian window, σ = 1.5, K1 = 0.01, K2 = 0.03,
'valid' filtering. A batch gives the mean over its images.
"""

from __future__ import annotations

from ._psnr_ssim import psnr, rgb_to_y, ssim

__all__ = ["psnr", "rgb_to_y", "ssim"]
