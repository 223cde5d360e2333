"""Synthetic deraining (``derain``): seeded rain streaks screen-blended onto the image.

    from ablate.tasks import resolve_task
    task = resolve_task({"name": "derain", "density": 0.02})
    lq = task.degrade(gt, seed=5)     # streak density, length, angle and intensity drawn from seed 5

Real rain pairs (Rain13K, Rain100L) come through the ``paired`` dataset, which skips ``degrade``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from ablate.params import Param
from ablate.registry import TASKS

from ._base import Task
from ._blur import convolve, gaussian_kernel

if TYPE_CHECKING:  # torch is imported where a task degrades an image, not where it is validated
    from torch import Tensor


def streak_kernel(length: float, angle_deg: float) -> np.ndarray:
    """A (k, k) anti-aliased line of ``length`` pixels at ``angle_deg`` from vertical, brightest at
    its middle and fading to its ends (how a falling drop integrates over the exposure); peak 1."""
    k = 2 * math.ceil(length / 2) + 1
    c = (k - 1) / 2
    t = np.linspace(-0.5, 0.5, 8 * k)
    theta = math.radians(angle_deg)
    xs = c + t * length * math.sin(theta)
    ys = c + t * length * math.cos(theta)
    fade = 1.0 - (2 * t) ** 2
    out = np.zeros((k, k), dtype=np.float64)
    x0, y0 = np.floor(xs).astype(int), np.floor(ys).astype(int)
    fx, fy = xs - x0, ys - y0
    for dx, dy, w in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)), (0, 1, (1 - fx) * fy),
                      (1, 1, fx * fy)):
        np.add.at(out, (np.clip(y0 + dy, 0, k - 1), np.clip(x0 + dx, 0, k - 1)), w * fade)
    return out / out.max()


@TASKS.register("derain")
class DerainTask(Task):
    """Rain streaks: sparse random drops (density), smeared along one direction (length, angle),
    softened, scaled (intensity) and screen-blended, ``1 − (1 − img)(1 − rain)``, clamped to [0, 1].

    Each call draws, from ``seed``: density in [0.25, 1]·density, length in [0.5, 1]·length, angle
    in [−angle, angle] degrees from vertical, intensity in [0.5, 1]·intensity. Protocol: PSNR/SSIM on
    the BT.601 Y channel, no border crop, as deraining benchmarks (Rain100L/H, Test100) report.
    """

    name = "derain"
    PARAMS = {
        "density": Param(0.02, float, "max fraction of pixels that start a streak", lo=1e-4, hi=0.2),
        "length": Param(16.0, float, "max streak length in pixels", lo=2, hi=64),
        "angle": Param(25.0, float, "max streak angle from vertical in degrees", lo=0, hi=80),
        "intensity": Param(0.8, float, "max streak brightness", lo=0.05, hi=1),
    }
    y_channel = True
    description = "synthetic rain streaks (seeded density, length, angle, intensity), screen blend"

    @property
    def context(self) -> int:
        return math.ceil(self.params["length"] / 2) + 2

    def rain_layer(self, height: int, width: int, seed: int) -> Tensor:
        """The (H, W) rain map in [0, 1] that :meth:`degrade` blends in for ``seed``."""
        import torch

        p = self.params
        rng = np.random.default_rng(seed)
        density = p["density"] * rng.uniform(0.25, 1.0)
        length = max(2.0, p["length"] * rng.uniform(0.5, 1.0))
        angle = rng.uniform(-p["angle"], p["angle"])
        intensity = p["intensity"] * rng.uniform(0.5, 1.0)
        drops = (rng.random((height, width)) < density) * rng.uniform(0.5, 1.0, (height, width))
        streaks = convolve(torch.from_numpy(drops.astype(np.float32))[None], streak_kernel(length, angle))
        # a slight blur gives streaks a width instead of 1-px aliasing
        streaks = convolve(streaks, gaussian_kernel(0.6, 3))[0]
        return streaks.clamp(0.0, 1.0) * float(intensity)

    def _degrade(self, gt: Tensor, seed: int) -> Tensor:
        rain = self.rain_layer(gt.shape[1], gt.shape[2], seed).to(gt.device)
        return (1.0 - (1.0 - gt) * (1.0 - rain[None])).clamp(0.0, 1.0)
