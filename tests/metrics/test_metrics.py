"""PSNR/SSIM against scikit-image on real photos with real degradations (RGB and an independent Y)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage import data
from skimage.color import rgb2ycbcr
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from ablate.metrics import psnr, rgb_to_y, ssim
from ablate.tasks import resolve_task

SK_SSIM = {"gaussian_weights": True, "sigma": 1.5, "use_sample_covariance": False, "data_range": 255}


def _to8(x: torch.Tensor) -> np.ndarray:
    """(3, H, W) float → (H, W, 3) uint8 the way the protocol quantizes (float64, clip, round)."""
    return np.round(np.clip(x.permute(1, 2, 0).double().numpy(), 0, 1) * 255).astype(np.uint8)


def _restorations() -> list[tuple[str, torch.Tensor, torch.Tensor, int]]:
    """(task, prediction, gt, crop_border) on real images: the no-learning output of each task."""
    out = []
    for name, img in (("sr-x2", data.astronaut()[120:312, 160:400]), ("dn-s25", data.coffee()[50:210, 100:300]),
                      ("car-q10", data.chelsea()[60:220, 120:320])):
        task = resolve_task(name)
        gt = task.mod_crop(torch.from_numpy(img.copy()).permute(2, 0, 1).float() / 255)
        out.append((name, task.baseline(task.degrade(gt, seed=0)), gt, task.crop_border))
    return out


CASES = _restorations()


@pytest.mark.parametrize(("name", "pred", "gt", "border"), CASES, ids=[c[0] for c in CASES])
def test_rgb_metrics_match_scikit_image(name: str, pred: torch.Tensor, gt: torch.Tensor, border: int) -> None:
    p8, g8 = _to8(pred), _to8(gt)
    b = slice(border, -border) if border else slice(None)
    ref_psnr = peak_signal_noise_ratio(g8[b, b], p8[b, b], data_range=255)
    ref_ssim = structural_similarity(g8[b, b], p8[b, b], channel_axis=2, **SK_SSIM)
    assert psnr(pred, gt, crop_border=border) == pytest.approx(ref_psnr, abs=1e-9)
    assert ssim(pred, gt, crop_border=border) == pytest.approx(ref_ssim, abs=1e-9)
    assert 15 < ref_psnr < 40 and 0.2 < ref_ssim < 1  # real degradations, not trivial cases


@pytest.mark.parametrize(("name", "pred", "gt", "border"), CASES, ids=[c[0] for c in CASES])
def test_y_channel_metrics_match_scikit_image(name: str, pred: torch.Tensor, gt: torch.Tensor, border: int) -> None:
    # scikit-image's rgb2ycbcr: Y = 16 + 65.481 R + 128.553 G + 24.966 B (R, G, B in [0, 1])
    yp = rgb2ycbcr(_to8(pred))[..., 0]
    yg = rgb2ycbcr(_to8(gt))[..., 0]
    assert 16 - 1e-9 <= yg.min() and yg.max() <= 235 + 1e-9
    b = slice(border, -border) if border else slice(None)
    ref_psnr = peak_signal_noise_ratio(yg[b, b], yp[b, b], data_range=255)
    ref_ssim = structural_similarity(yg[b, b], yp[b, b], **SK_SSIM)
    assert psnr(pred, gt, crop_border=border, y_channel=True) == pytest.approx(ref_psnr, abs=1e-9)
    assert ssim(pred, gt, crop_border=border, y_channel=True) == pytest.approx(ref_ssim, abs=1e-9)


def test_rgb_to_y_matches_bt601() -> None:
    rgb = torch.tensor([[[[0.0]], [[0.0]], [[0.0]]], [[[255.0]], [[255.0]], [[255.0]]],
                        [[[255.0]], [[0.0]], [[0.0]]]], dtype=torch.float64)
    y = rgb_to_y(rgb).flatten().tolist()
    assert y == pytest.approx([16.0, 235.0, 16.0 + 65.481])


def test_batches_average_per_image_scores_and_numpy_hwc_is_accepted() -> None:
    _, pred, gt, border = CASES[1]
    other_pred, other_gt = pred.flip(-1), gt.flip(-1) * 0.9
    batch_p, batch_g = torch.stack([pred, other_pred]), torch.stack([gt, other_gt])
    singles = [psnr(pred, gt), psnr(other_pred, other_gt)]
    assert psnr(batch_p, batch_g) == pytest.approx(sum(singles) / 2, abs=1e-12)
    s_singles = [ssim(pred, gt, y_channel=True), ssim(other_pred, other_gt, y_channel=True)]
    assert ssim(batch_p, batch_g, y_channel=True) == pytest.approx(sum(s_singles) / 2, abs=1e-12)
    hwc_p, hwc_g = pred.permute(1, 2, 0).numpy(), gt.permute(1, 2, 0).numpy()
    assert psnr(hwc_p, hwc_g, y_channel=True) == psnr(pred, gt, y_channel=True)
    assert ssim(hwc_p, hwc_g) == ssim(pred, gt)
    assert psnr(_to8(pred), _to8(gt), data_range=255) == pytest.approx(psnr(pred, gt), abs=1e-12)


def test_quantization_identity_and_errors() -> None:
    gt = torch.from_numpy(data.astronaut()[:64, :64].copy()).permute(2, 0, 1).float() / 255
    assert math.isinf(psnr(gt + 0.4 / 255, gt))  # rounds back to the same 8-bit image
    assert ssim(gt, gt) == pytest.approx(1.0)
    assert psnr(gt + 0.6 / 255, gt) < 60
    assert psnr(gt * 0 + 2.0, gt * 0 + 1.0) == math.inf  # values above 1 clip to 255
    with pytest.raises(ValueError, match="shapes differ"):
        psnr(gt, gt[:, :32])
    with pytest.raises(ValueError, match="data_range=255"):
        psnr(np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match="crop_border"):
        psnr(gt, gt, crop_border=32)
    with pytest.raises(ValueError, match="11×11"):
        ssim(gt[:, :10, :10], gt[:, :10, :10])
    with pytest.raises(ValueError, match="3-channel"):
        psnr(gt[:1], gt[:1], y_channel=True)
