"""JPEG compression artifact removal (``car``; aliases ``car-q10`` … ``car-q40``).

    from ablate.tasks import resolve_task
    task = resolve_task("car-q10")
    lq = task.degrade(gt, seed=0)     # a real Pillow JPEG round trip at quality 10 (seed unused)
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from ablate.params import Param
from ablate.registry import TASKS

from ._base import Task, TaskPreset

if TYPE_CHECKING:  # torch is imported where a task degrades an image, not where it is validated
    from torch import Tensor

# Pillow's `subsampling` codes
_SUBSAMPLING = {"4:4:4": 0, "4:2:2": 1, "4:2:0": 2}


def to_uint8_hwc(img: Tensor) -> np.ndarray:
    """(3, H, W) float in [0, 1] → (H, W, 3) uint8 (clipped, rounded half up as MATLAB's im2uint8)."""
    arr = img.detach().float().permute(1, 2, 0).cpu().numpy()
    return np.floor(np.clip(arr, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def jpeg_roundtrip(img: Tensor, quality: int, subsampling: str = "4:2:0") -> Tensor:
    """Encode (3, H, W) in [0, 1] as a color JPEG with Pillow (libjpeg) and decode it back."""
    import torch

    buf = io.BytesIO()
    Image.fromarray(to_uint8_hwc(img), "RGB").save(buf, format="JPEG", quality=int(quality),
                                                   subsampling=_SUBSAMPLING[subsampling])
    buf.seek(0)
    with Image.open(buf) as dec:
        out = np.asarray(dec.convert("RGB"), dtype=np.uint8)
    return torch.from_numpy(out.copy()).permute(2, 0, 1).to(img.device, torch.float32) / 255.0


@TASKS.register("car")
class JPEGTask(Task):
    """Color JPEG artifacts: a real encode/decode with Pillow at ``quality`` (4:2:0 chroma by default).

    Deterministic: the codec has no randomness, ``seed`` is ignored. Protocol: PSNR/SSIM on the
    BT.601 Y channel with no border crop — JPEG artifact benchmarks (LIVE1, Classic5, BSDS500)
    score luminance, and 4:2:0 coding keeps most of its error budget there; block artifacts sit
    on the 8×8 grid everywhere, so a border crop would remove nothing specific.
    """

    name = "car"
    PARAMS = {
        "quality": Param(40, int, "JPEG quality", lo=10, hi=95),
        "subsampling": Param("4:2:0", str, "chroma subsampling", choices=tuple(_SUBSAMPLING)),
    }
    y_channel = True
    description = "real JPEG encode/decode with Pillow (libjpeg), color, chroma subsampling 4:2:0"
    _label_keys = ("quality",)

    def _label_base(self) -> str:
        return f"car-q{self.params['quality']}"

    def _degrade(self, gt: Tensor, seed: int) -> Tensor:
        return jpeg_roundtrip(gt, self.params["quality"], self.params["subsampling"])


for _q in (10, 20, 30, 40):
    TASKS.add(f"car-q{_q}", TaskPreset("car", {"quality": _q}, f"JPEG artifact removal, quality {_q}"))
