"""Every task's degradation on real scikit-image photos: shape, range, determinism, and effect."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from skimage import data

from ablate.metrics import psnr
from ablate.registry import TASKS
from ablate.tasks import DeblurTask, imresize, motion_kernel, resolve_task

# every built-in task under the name its label gives it (the aliases, and derain, which has none)
ALIASES = sorted({resolve_task(key).label for key in TASKS.keys() if TASKS.entry(key).source == "ablate"})

# tasks whose degradation draws random numbers (the others ignore the seed)
RANDOM = {"dn-s15", "dn-s25", "dn-s50", "db-motion", "derain"}


@pytest.fixture(scope="module")
def gt() -> torch.Tensor:
    img = data.coffee()[100:196, 200:320]  # 96×120, divisible by 2, 3 and 4
    return torch.from_numpy(img.copy()).permute(2, 0, 1).float() / 255.0


@pytest.mark.parametrize("alias", ALIASES)
def test_degrade_shape_dtype_and_determinism(alias: str, gt: torch.Tensor) -> None:
    task = resolve_task(alias)
    g = task.mod_crop(gt)
    a = task.degrade(g, seed=3)
    b = task.degrade(g, seed=3)
    assert a.dtype == torch.float32
    assert a.shape == (3, g.shape[1] // task.scale, g.shape[2] // task.scale)
    assert torch.isfinite(a).all()
    assert torch.equal(a, b)
    c = task.degrade(g, seed=4)
    if alias in RANDOM:
        assert not torch.equal(a, c)
    else:
        assert torch.equal(a, c)
    assert not torch.allclose(task.baseline(a), g, atol=1e-3)  # it really degrades
    assert task.baseline(a).shape == g.shape


@pytest.mark.parametrize("alias", [a for a in ALIASES if not a.startswith("dn")])
def test_clipped_tasks_stay_in_unit_range(alias: str, gt: torch.Tensor) -> None:
    lq = resolve_task(alias).degrade(gt, seed=0)
    assert lq.min() >= 0.0 and lq.max() <= 1.0


@pytest.mark.parametrize("sigma", [15, 25, 50])
def test_denoising_noise_has_the_right_statistics(sigma: int, gt: torch.Tensor) -> None:
    task = resolve_task(f"dn-s{sigma}")
    noise = (task.degrade(gt, seed=1) - gt) * 255.0
    assert abs(float(noise.mean())) < 0.05 * sigma
    assert abs(float(noise.std()) - sigma) < 0.03 * sigma
    clipped = resolve_task({"name": "dn", "sigma": sigma, "clip": True}).degrade(gt, seed=1)
    assert clipped.min() >= 0 and clipped.max() <= 1


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_sr_lq_is_8bit_matlab_bicubic_and_baseline_is_reasonable(scale: int, gt: torch.Tensor) -> None:
    task = resolve_task(f"sr-x{scale}")
    lq = task.degrade(gt, seed=0)
    assert torch.equal(lq * 255, torch.round(lq * 255))  # stored as 8 bits, like benchmark PNGs
    ref = imresize(gt.double(), 1 / scale).clamp(0, 1).float()
    assert (lq - ref).abs().max() <= 0.5 / 255 + 1e-6
    up = task.baseline(lq)
    assert up.shape == gt.shape and up.min() >= 0 and up.max() <= 1
    score = psnr(up, gt, crop_border=task.crop_border, y_channel=True)
    assert 20.0 < score < 40.0


def test_jpeg_quality_orders_psnr(gt: torch.Tensor) -> None:
    scores = [psnr(resolve_task({"name": "car", "quality": q}).degrade(gt, 0), gt, y_channel=True)
              for q in (10, 20, 40, 90)]
    assert scores == sorted(scores)
    assert scores[0] < scores[-1] - 6.0
    full = resolve_task({"name": "car", "quality": 10, "subsampling": "4:4:4"}).degrade(gt, 0)
    assert not torch.equal(full, resolve_task("car-q10").degrade(gt, 0))


def test_gaussian_blur_removes_high_frequencies(gt: torch.Tensor) -> None:
    def hf(x: torch.Tensor) -> float:
        return float((x[:, :, 1:] - x[:, :, :-1]).abs().mean())

    lq = resolve_task("db-gauss").degrade(gt, 0)
    assert hf(lq) < 0.6 * hf(gt)
    assert abs(float(lq.mean() - gt.mean())) < 2e-3  # a normalized kernel keeps the mean
    stronger = resolve_task({"name": "db", "sigma": 3.0}).degrade(gt, 0)
    assert hf(stronger) < hf(lq)


def test_motion_kernels_are_seeded_normalized_and_varied() -> None:
    k1 = motion_kernel(15, np.random.default_rng(1))
    k2 = motion_kernel(15, np.random.default_rng(1))
    k3 = motion_kernel(15, np.random.default_rng(2))
    assert k1.shape == (15, 15)
    assert np.isclose(k1.sum(), 1.0) and (k1 >= 0).all()
    assert np.array_equal(k1, k2) and not np.array_equal(k1, k3)
    assert (k1 > 0).sum() >= 5  # a path, not a point
    task = DeblurTask(kernel="motion", size=21)
    assert task.blur_kernel(0).shape == (21, 21)


def test_blur_noise_is_seeded(gt: torch.Tensor) -> None:
    task = resolve_task({"name": "db-gauss", "noise": 5})
    clean = resolve_task("db-gauss").degrade(gt, 0)
    noise = (task.degrade(gt, 7) - clean) * 255
    assert abs(float(noise.std()) - 5) < 0.3
    assert not torch.equal(task.degrade(gt, 7), task.degrade(gt, 8))


def test_rain_only_brightens_and_varies_with_seed(gt: torch.Tensor) -> None:
    task = resolve_task("derain")
    a, b = task.degrade(gt, 0), task.degrade(gt, 1)
    assert (a >= gt - 1e-6).all()  # screen blending never darkens
    assert float((a - gt).mean()) > 0.005
    assert not torch.equal(a, b)
    dense = resolve_task({"name": "derain", "density": 0.1}).degrade(gt, 0)
    assert float((dense - gt).mean()) > float((a - gt).mean())


def test_mod_crop_and_shape_errors(gt: torch.Tensor) -> None:
    task = resolve_task("sr-x3")
    odd = gt[:, :95, :118]
    assert task.mod_crop(odd).shape == (3, 93, 117)
    with pytest.raises(ValueError, match="mod_crop"):
        task.degrade(odd, 0)
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        task.degrade(gt[None], 0)
    with pytest.raises(ValueError, match="seed"):
        task.degrade(task.mod_crop(gt), -1)


@pytest.mark.parametrize("alias", ALIASES)
def test_describe_is_plain_and_names_the_protocol(alias: str) -> None:
    task = resolve_task(alias)
    d = task.describe()
    json.dumps(d)
    assert d["label"] == task.label == alias
    assert d["scale"] == task.scale and d["crop_border"] == task.crop_border
    assert d["y_channel"] == task.y_channel
    expected_y = alias.startswith(("sr", "car", "derain"))
    assert task.y_channel is expected_y
    assert task.crop_border == (task.scale if alias.startswith("sr") else 0)
