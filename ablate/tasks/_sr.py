"""Bicubic super-resolution (``sr``; aliases ``sr-x2``, ``sr-x3``, ``sr-x4``).

    from ablate.tasks import resolve_task
    task = resolve_task("sr-x4")
    lq = task.degrade(task.mod_crop(gt), seed=0)   # (3, H/4, W/4), 8-bit values
    up = task.baseline(lq)                         # bicubic back to (3, H, W)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from ablate.params import Param
from ablate.registry import TASKS

from ._base import Task, TaskPreset

if TYPE_CHECKING:  # torch is imported where a task degrades an image, not where it is validated
    from torch import Tensor


@TASKS.register("sr")
class SRTask(Task):
    """Bicubic SR: LQ = MATLAB ``imresize(gt, 1/scale, 'bicubic')`` rounded to 8 bits.

    Protocol (the SR literature's, BasicSR/SwinIR/HAT): PSNR/SSIM on the BT.601 Y channel, ignoring
    ``scale`` border pixels, where the mirrored boundary of the downsampling makes every method wrong.
    """

    name = "sr"
    PARAMS = {"scale": Param(2, int, "upscaling factor", choices=(2, 3, 4))}
    y_channel = True
    description = "MATLAB-compatible bicubic downsampling (antialiased, a=-0.5), LR rounded to 8 bits"
    _label_keys = ("scale",)
    batched = True

    @property
    def scale(self) -> int:
        return int(self.params["scale"])

    @property
    def crop_border(self) -> int:
        return self.scale

    @property
    def context(self) -> int:
        # the widened kernel reaches 2·scale HR pixels (+1 tap) beyond an output pixel's centre
        return 3 * self.scale

    def _label_base(self) -> str:
        return f"sr-x{self.scale}"

    def _degrade(self, gt: Tensor, seed: int) -> Tensor:
        # double precision like MATLAB, so that the 8-bit rounding lands on the same side; then
        # MATLAB's uint8 conversion: clamp, round half up (floor(x + 0.5); torch.round would round
        # half to even, and is also much slower on small CPU tensors when threads are contended)
        import torch

        from ._resize import imresize

        lq = imresize(gt.double(), 1.0 / self.scale)
        return torch.floor(lq.clamp(0.0, 1.0) * 255.0 + 0.5) / 255.0

    def degrade_windows(self, gt: Tensor, context: int, draws: Mapping[str, Tensor]) -> Tensor:
        # the same resize and rounding over the whole batch of regions, trimmed to the windows after
        s, c = self.scale, context // self.scale
        h, w = gt.shape[-2] // s - 2 * c, gt.shape[-1] // s - 2 * c
        return self._degrade(gt, 0)[..., c: c + h, c: c + w].float()

    def baseline(self, lq: Tensor) -> Tensor:
        """Bicubic upscaling (MATLAB ``imresize``) to the GT size, clamped to [0, 1]."""
        from ._resize import imresize

        h, w = lq.shape[-2], lq.shape[-1]
        return imresize(lq, size=(h * self.scale, w * self.scale)).clamp(0.0, 1.0)


for _s in (2, 3, 4):
    TASKS.add(f"sr-x{_s}", TaskPreset("sr", {"scale": _s}, f"×{_s} bicubic super-resolution (sr, scale {_s})"))
