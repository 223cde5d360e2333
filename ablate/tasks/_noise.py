"""Color Gaussian denoising (``dn``; aliases ``dn-s15``, ``dn-s25``, ``dn-s50``).

    from ablate.tasks import resolve_task
    task = resolve_task({"name": "dn", "sigma": 30})
    lq = task.degrade(gt, seed=7)                  # gt + N(0, (30/255)²), same noise for seed 7
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np

from ablate.params import Param
from ablate.registry import TASKS

from ._base import Task, TaskPreset, Window

if TYPE_CHECKING:  # torch is imported where a task degrades an image, not where it is validated
    from torch import Tensor


def window_noise(windows: Sequence[Window], rng: Callable[[int], np.random.Generator], sigma: float
                 ) -> np.ndarray:
    """(B, 3, size, size) float32: the noise ``degrade`` adds over each window's region, cut to the window.

    ``rng(seed)`` is the generator ``degrade`` draws from; the whole region is drawn (the window's
    values depend on the region's shape), scaled by ``sigma``/255 in float32 as ``degrade`` scales it.
    """
    size = windows[0].size
    out = np.empty((len(windows), 3, size, size), dtype=np.float32)
    for b, w in enumerate(windows):
        (dy, dx), (rh, rw) = w.at, w.region
        if (rh, rw) == (size, size):  # the window is its region: draw straight into the batch
            rng(w.seed).standard_normal(out=out[b], dtype=np.float32)
        else:
            out[b] = rng(w.seed).standard_normal((3, rh, rw), dtype=np.float32)[:, dy: dy + size, dx: dx + size]
    out *= np.float32(sigma / 255.0)
    return out


@TASKS.register("dn")
class DenoiseTask(Task):
    """Additive white Gaussian noise, i.i.d. per pixel and channel, σ in 8-bit units [0, 255].

    As in the color-denoising protocol of DnCNN/KAIR, SwinIR and Restormer, the noisy image is
    *not* clipped or quantized (``clip: true`` clips to [0, 1]). The noise comes from a numpy
    generator seeded by ``seed`` only, so a fixed validation seed gives fixed noise per image.

    Protocol: PSNR/SSIM on RGB with no border crop — color-denoising papers (CBSD68, Kodak24,
    McMaster, Urban100) report RGB PSNR, and the noise has no boundary effect to crop.
    """

    name = "dn"
    PARAMS = {
        "sigma": Param(25.0, float, "noise standard deviation in 8-bit units", lo=0, hi=255),
        "clip": Param(False, bool, "clip the noisy image to [0, 1]"),
    }
    y_channel = False
    description = "additive white Gaussian noise (sigma in [0, 255] units), unclipped"
    _label_keys = ("sigma",)
    batched = True

    def _label_base(self) -> str:
        return f"dn-s{self.params['sigma']:g}"

    def _degrade(self, gt: Tensor, seed: int) -> Tensor:
        import torch

        rng = np.random.default_rng(seed)
        noise = rng.standard_normal(tuple(gt.shape), dtype=np.float32)
        noise *= np.float32(self.params["sigma"] / 255.0)
        lq = gt + torch.from_numpy(noise).to(gt.device)
        return lq.clamp(0.0, 1.0) if self.params["clip"] else lq

    def draw(self, windows: Sequence[Window]) -> dict[str, np.ndarray]:
        return {"noise": window_noise(windows, np.random.default_rng, self.params["sigma"])}

    def degrade_windows(self, gt: Tensor, context: int, draws: Mapping[str, Tensor]) -> Tensor:
        c = context
        lq = gt[..., c: gt.shape[-2] - c, c: gt.shape[-1] - c] + draws["noise"]
        return lq.clamp(0.0, 1.0) if self.params["clip"] else lq


for _s in (15, 25, 50):
    TASKS.add(f"dn-s{_s}", TaskPreset("dn", {"sigma": float(_s)}, f"color Gaussian denoising, sigma {_s}"))
