"""MATLAB-compatible bicubic imresize, checked against properties and against Pillow's BICUBIC.

Pillow's float ("F") resize uses the same a = −0.5 cubic, widened by the factor when shrinking, and
the same pixel-centre convention; it differs only at the border (it renormalizes the truncated
kernel where MATLAB mirrors the image). So: interior equal to Pillow, and, padding the image
symmetrically first, equal to Pillow *everywhere* — an independent check of MATLAB's boundary rule.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data

from ablate.tasks import imresize, resize_weights


def _pil_resize(img: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """(C, H, W) float32 → (C, h, w) with Pillow's float BICUBIC, one channel at a time."""
    h, w = out_hw
    return np.stack([np.asarray(Image.fromarray(c.astype(np.float32), "F").resize((w, h), Image.BICUBIC))
                     for c in img])


@pytest.fixture(scope="module")
def chelsea() -> np.ndarray:
    return (data.chelsea()[:240, :360].astype(np.float32) / 255.0).transpose(2, 0, 1).copy()


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_constant_image_stays_constant(scale: int) -> None:
    x = torch.full((3, 12 * scale, 10 * scale), 0.37, dtype=torch.float64)
    down = imresize(x, 1 / scale)
    assert down.shape == (3, 12, 10)
    assert torch.allclose(down, torch.full_like(down, 0.37), atol=1e-12)
    up = imresize(down, size=(12 * scale, 10 * scale))
    assert torch.allclose(up, torch.full_like(up, 0.37), atol=1e-12)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_linear_ramp_is_preserved_in_the_interior(scale: int) -> None:
    n = 30 * scale
    cols = torch.arange(n, dtype=torch.float64)
    x = (0.002 * cols + 0.1).expand(1, 16 * scale, n).clone()
    down = imresize(x, 1 / scale)
    # output pixel j (0-based) is centred on input coordinate (j + 0.5)·scale − 0.5
    centres = (torch.arange(30, dtype=torch.float64) + 0.5) * scale - 0.5
    expected = 0.002 * centres + 0.1
    margin = 3  # the mirrored boundary bends the ramp within the kernel's reach
    assert torch.allclose(down[0, 5, margin:-margin], expected[margin:-margin], atol=1e-12)
    assert not torch.allclose(down[0, 5, :1], expected[:1], atol=1e-6)  # and it does bend there


def test_weights_are_normalized_and_widened_when_shrinking() -> None:
    idx, w = resize_weights(40, 10, 0.25)
    assert np.allclose(w.sum(1), 1.0)
    assert w.shape[1] >= 16  # kernel width 4/scale = 16 input pixels
    assert idx.min() >= 0 and idx.max() < 40
    _, w_up = resize_weights(10, 40, 4.0)
    assert w_up.shape[1] <= 6  # upscaling keeps the 4-tap kernel (+2 guard taps)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_downscale_matches_pillow_bicubic_in_the_interior(chelsea: np.ndarray, scale: int) -> None:
    ours = imresize(torch.from_numpy(chelsea).double(), 1 / scale).numpy()
    pil = _pil_resize(chelsea, (240 // scale, 360 // scale))
    b = 3
    assert np.abs(ours - pil)[:, b:-b, b:-b].max() < 1e-5
    assert np.abs(ours - pil).max() > 1e-3  # the borders really follow another rule (MATLAB's)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_boundary_is_matlab_symmetric_mirroring(chelsea: np.ndarray, scale: int) -> None:
    pad = 4 * scale  # wider than the kernel's reach, and a multiple of the scale
    padded = np.pad(chelsea, ((0, 0), (pad, pad), (pad, pad)), mode="symmetric")
    pil = _pil_resize(padded, (padded.shape[1] // scale, padded.shape[2] // scale))[:, 4:-4, 4:-4]
    ours = imresize(torch.from_numpy(chelsea).double(), 1 / scale).numpy()
    assert ours.shape == pil.shape
    assert np.abs(ours - pil).max() < 1e-5


@pytest.mark.parametrize("scale", [2, 4])
def test_upscale_matches_pillow_in_the_interior(chelsea: np.ndarray, scale: int) -> None:
    small = chelsea[:, :60, :90]
    ours = imresize(torch.from_numpy(small).double(), size=(60 * scale, 90 * scale)).numpy()
    pil = _pil_resize(small, (60 * scale, 90 * scale))
    b = 2 * scale
    assert np.abs(ours - pil)[:, b:-b, b:-b].max() < 1e-5


def test_large_axes_take_the_gather_path_and_agree_with_pillow() -> None:
    img = (data.retina()[:1000, :1000, 1].astype(np.float32) / 255.0)[None]  # 1000×500 > dense limit
    ours = imresize(torch.from_numpy(img), 0.5).numpy()
    pil = _pil_resize(img, (500, 500))
    assert np.abs(ours - pil)[:, 3:-3, 3:-3].max() < 1e-4  # float32 arithmetic here


def test_scale_and_size_agree_and_batches_work() -> None:
    x = torch.rand(2, 3, 24, 36, dtype=torch.float64)
    a = imresize(x, 0.5)
    b = imresize(x, size=(12, 18))
    assert a.shape == (2, 3, 12, 18)
    assert torch.equal(a, b)
    assert torch.allclose(a[1], imresize(x[1], 0.5))
    with pytest.raises(TypeError):
        imresize(torch.zeros(3, 8, 8, dtype=torch.uint8), 0.5)
    with pytest.raises(ValueError):
        imresize(x)
