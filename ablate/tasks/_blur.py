"""Deblurring (``db``; aliases ``db-gauss``, ``db-motion``): Gaussian or seeded motion blur + noise.

    from ablate.tasks import resolve_task
    task = resolve_task({"name": "db", "kernel": "motion", "size": 21, "noise": 2})
    lq = task.degrade(gt, seed=3)      # a random-walk motion kernel drawn from seed 3, then noise
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ablate.errors import SpecError
from ablate.params import Param
from ablate.registry import TASKS

from ._base import Task, TaskPreset, Window
from ._noise import window_noise

if TYPE_CHECKING:  # torch is imported where a task degrades an image, not where it is validated
    from torch import Tensor


def mirror_index(n: int, before: int, after: int) -> np.ndarray:
    """Indices of a half-sample symmetric extension (``[.. 1 0 | 0 1 .. n-1 | n-1 n-2 ..]``).

    The boundary of MATLAB's ``imfilter(..., 'symmetric')`` and scipy's ``mode='reflect'``; unlike
    ``torch.nn.functional.pad(mode='reflect')`` it works for pads wider than the image.
    """
    period = 2 * n
    idx = np.mod(np.arange(-before, n + after), period)
    return np.where(idx < n, idx, period - 1 - idx)


def symmetric_pad(x: Tensor, top: int, bottom: int, left: int, right: int) -> Tensor:
    """Pad the last two axes of ``x`` with :func:`mirror_index`."""
    import torch

    h, w = x.shape[-2], x.shape[-1]
    rows = torch.from_numpy(mirror_index(h, top, bottom)).to(x.device)
    cols = torch.from_numpy(mirror_index(w, left, right)).to(x.device)
    return x.index_select(-2, rows).index_select(-1, cols)


def _shift_sum(x: Tensor, taps: list[tuple[int, int, float]], h: int, w: int) -> Tensor:
    import torch

    out = torch.zeros(x.shape[:-2] + (h, w), dtype=x.dtype, device=x.device)
    for dy, dx, wt in taps:
        out.add_(x[..., dy: dy + h, dx: dx + w], alpha=wt)
    return out


def _taps(kernel: np.ndarray) -> list[tuple[int, int, float]]:
    ys, xs = np.nonzero(kernel)
    return [(int(y), int(x), float(kernel[y, x])) for y, x in zip(ys, xs)]


def convolve(img: Tensor, kernel: Tensor | np.ndarray) -> Tensor:
    """2-D convolution of every channel of (C, H, W) with an odd (k, k) kernel, symmetric boundary,
    same output size. A true convolution (the kernel is flipped), so a motion path keeps its direction.

    Blur kernels are separable (Gaussian) or sparse (motion paths, streaks): summing shifted
    copies per nonzero tap is several times faster on CPU than ``conv2d`` with one input channel.
    """
    import torch
    import torch.nn.functional as F

    k = np.asarray(kernel.detach().cpu() if isinstance(kernel, torch.Tensor) else kernel, dtype=np.float64)
    kh, kw = k.shape
    if kh % 2 == 0 or kw % 2 == 0:
        raise ValueError(f"convolve needs an odd kernel, got {kh}×{kw}")
    k = k[::-1, ::-1]  # correlation with the flipped kernel = convolution
    h, w = img.shape[-2], img.shape[-1]
    x = symmetric_pad(img, kh // 2, kh // 2, kw // 2, kw // 2)
    u, sv, vt = np.linalg.svd(k)
    if sv[0] > 0 and (len(sv) == 1 or sv[1] <= 1e-9 * sv[0]):
        # rank 1: two 1-D passes (kh + kw taps instead of kh·kw)
        col, row = u[:, 0] * np.sqrt(sv[0]), vt[0] * np.sqrt(sv[0])
        x = _shift_sum(x, [(i, 0, float(c)) for i, c in enumerate(col) if c != 0], h, x.shape[-1])
        return _shift_sum(x, [(0, j, float(r)) for j, r in enumerate(row) if r != 0], h, w)
    taps = _taps(k)
    if len(taps) <= 96:
        return _shift_sum(x, taps, h, w)
    weight = torch.from_numpy(k.copy()).to(img.device, img.dtype)[None, None]
    c = img.shape[0]
    return F.conv2d(x[None], weight.expand(c, 1, kh, kw).contiguous(), groups=c)[0]


def gaussian_kernel(sigma: float, size: int) -> np.ndarray:
    """Normalized isotropic (size, size) Gaussian."""
    r = np.arange(size, dtype=np.float64) - (size - 1) / 2
    g = np.exp(-0.5 * (r / sigma) ** 2)
    k = np.outer(g, g)
    return k / k.sum()


def motion_kernel(size: int, rng: np.random.Generator) -> np.ndarray:
    """A random camera-shake kernel: a smooth random-walk trajectory splatted onto a (size, size)
    grid, centred, with an extent drawn in [size/3, size − 1]; sums to 1."""
    steps = 4 * size
    heading = rng.uniform(0.0, math.pi) + np.cumsum(rng.normal(0.0, 0.15, steps))  # drifting direction
    speed = rng.uniform(0.5, 1.0, steps)
    pts = np.cumsum(np.stack([np.cos(heading), np.sin(heading)], 1) * speed[:, None], axis=0)
    pts -= (pts.max(0) + pts.min(0)) / 2
    radius = float(np.sqrt((pts ** 2).sum(1)).max()) or 1.0
    extent = rng.uniform(size / 3.0, size - 1.0)
    pts *= (extent / 2.0) / radius
    c = (size - 1) / 2
    xy = np.clip(pts + c, 0.0, size - 1 - 1e-6)
    x0, y0 = np.floor(xy[:, 0]).astype(int), np.floor(xy[:, 1]).astype(int)
    fx, fy = xy[:, 0] - x0, xy[:, 1] - y0
    k = np.zeros((size, size), dtype=np.float64)
    # bilinear splatting: sub-pixel positions spread their weight over 4 neighbours
    for dx, dy, wgt in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)), (0, 1, (1 - fx) * fy),
                        (1, 1, fx * fy)):
        np.add.at(k, (np.minimum(y0 + dy, size - 1), np.minimum(x0 + dx, size - 1)), wgt)
    return k / k.sum()


@TASKS.register("db")
class DeblurTask(Task):
    """Blur with a Gaussian (``sigma``) or a seeded random-walk motion kernel (``size``), symmetric
    boundary, then optional Gaussian noise ``noise`` (8-bit units, unclipped, seeded).

    Protocol: PSNR/SSIM on RGB with no border crop, as synthetic (DPIR, USRNet) and GoPro/HIDE
    deblurring report; the mirrored boundary is applied alike to every method.
    """

    name = "db"
    PARAMS = {
        "kernel": Param("gauss", str, "blur kernel", choices=("gauss", "motion")),
        "sigma": Param(1.6, float, "Gaussian kernel std in pixels (kernel gauss)", lo=0.1, hi=10),
        "size": Param(None, int, "odd kernel side; default 2·ceil(3·sigma)+1 (gauss) or 15 (motion)",
                      lo=3, hi=63, nullable=True),
        "noise": Param(0.0, float, "Gaussian noise std in 8-bit units added after blurring", lo=0, hi=255),
    }
    y_channel = False
    _label_keys = ("kernel",)
    batched = True

    def __init__(self, _where: str | None = None, **params: Any) -> None:
        super().__init__(_where, **params)
        where = f"{self._where}." if self._where else ""
        if self.params["kernel"] == "motion" and "sigma" in params:
            raise SpecError(f"{where}sigma", "no sigma for kernel 'motion' (its shape is drawn per seed)",
                            params["sigma"], hint="set size instead")
        size = self.params["size"]
        if size is not None and size % 2 == 0:
            raise SpecError(f"{where}size", "an odd kernel side", size)

    @property
    def kernel_size(self) -> int:
        size = self.params["size"]
        if size is not None:
            return int(size)
        if self.params["kernel"] == "motion":
            return 15
        return 2 * math.ceil(3 * self.params["sigma"]) + 1

    @property
    def context(self) -> int:
        return self.kernel_size // 2

    @property
    def description(self) -> str:  # type: ignore[override]
        p = self.params
        blur = (f"Gaussian blur sigma {p['sigma']:g}" if p["kernel"] == "gauss"
                else "seeded random-walk motion blur")
        return f"{blur}, {self.kernel_size}×{self.kernel_size} kernel, symmetric boundary, noise {p['noise']:g}/255"

    def _label_base(self) -> str:
        return f"db-{self.params['kernel']}"

    def blur_kernel(self, seed: int) -> np.ndarray:
        """The (k, k) kernel :meth:`degrade` uses for ``seed`` (fixed for Gaussian blur)."""
        if self.params["kernel"] == "gauss":
            return gaussian_kernel(self.params["sigma"], self.kernel_size)
        return motion_kernel(self.kernel_size, np.random.default_rng([seed, 0]))

    def _degrade(self, gt: Tensor, seed: int) -> Tensor:
        import torch

        lq = convolve(gt, self.blur_kernel(seed))
        if self.params["noise"] > 0:
            rng = np.random.default_rng([seed, 1])
            noise = rng.standard_normal(tuple(lq.shape), dtype=np.float32) * np.float32(self.params["noise"] / 255)
            lq = lq + torch.from_numpy(noise).to(lq.device)
        return lq

    def draw(self, windows: Sequence[Window]) -> dict[str, np.ndarray]:
        # flipped: conv2d correlates, degrade convolves
        out = {"kernel": np.stack([self.blur_kernel(w.seed)[::-1, ::-1] for w in windows])}
        if self.params["noise"] > 0:
            out["noise"] = window_noise(windows, lambda seed: np.random.default_rng([seed, 1]), self.params["noise"])
        return out

    def degrade_windows(self, gt: Tensor, context: int, draws: Mapping[str, Tensor]) -> Tensor:
        # Each window its own kernel: one grouped convolution over the batch (B·3 groups). In float64, so
        # that no TF32 or reduced-precision convolution kernel can stand in on a GPU; the context beyond
        # the kernel's reach is trimmed first.
        import torch.nn.functional as F

        b, ch = gt.shape[0], gt.shape[1]
        k = draws["kernel"].shape[-1]
        trim = context - k // 2
        x = gt[..., trim: gt.shape[-2] - trim, trim: gt.shape[-1] - trim].double()
        weight = draws["kernel"].to(x.dtype)[:, None].expand(b, ch, k, k).reshape(b * ch, 1, k, k)
        lq = F.conv2d(x.reshape(1, b * ch, *x.shape[-2:]), weight, groups=b * ch)
        lq = lq.reshape(b, ch, *lq.shape[-2:]).float()
        return lq + draws["noise"] if "noise" in draws else lq


TASKS.add("db-gauss", TaskPreset("db", {"kernel": "gauss"}, "Gaussian deblurring (sigma 1.6)"))
TASKS.add("db-motion", TaskPreset("db", {"kernel": "motion"}, "motion deblurring (seeded random-walk kernels)"))
