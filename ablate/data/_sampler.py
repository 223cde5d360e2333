"""Training batches, validation pairs and probe batches — all pure functions of their seeds.

    from ablate.data import PairSampler, probe_batch, resolve_dataset, validation_pairs
    from ablate.tasks import resolve_task
    ds, task = resolve_dataset("skimage"), resolve_task("sr-x2")
    sampler = PairSampler(ds, task, patch_size=48, batch_size=4, seed=0)
    lq, gt = sampler.batch(step=0)               # (4, 3, 24, 24), (4, 3, 48, 48) float32 in [0, 1]
    pairs = validation_pairs(ds, task, size=96, seed=0)
    probe = probe_batch(ds, task, n=2, patch_size=64, seed=0)

``batch(step)`` draws everything (image, crop, flips, rotation, degradation seed) from a numpy
generator seeded by (seed, step) alone: a resumed run continues with the same batches, and cells
that share a seed see identical data whatever their norm.

Training images of a ``folder`` dataset with a prepared store (``Source.tiles``) are cropped from the
store instead of the decoded file: the same pixels, so the same batches, without decoding.

HR-only data: the task degrades each crop together with ``task.context`` pixels of surrounding
image (trimmed afterwards), so a training LQ patch equals the same crop of the fully degraded
image (exactly for bicubic SR and Gaussian blur, away from the image border).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ablate.errors import DataError, SpecError
from ablate.tasks import Task, resolve_task

from ._base import Dataset, Source, resolve_dataset
from ._prepared import TiledImage

# domain tags, so the training, validation and probe streams never share random numbers
_TRAIN, _VAL, _PROBE = 0x7A11, 0x7A12, 0x7A13


def _check_int(value: Any, key: str, lo: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < lo:
        raise SpecError(key, f"an integer ≥ {lo}", value)
    return int(value)


def _check_patch(task: Task, patch_size: Any, key: str) -> int:
    p = _check_int(patch_size, key, 1)
    if p % task.scale:
        raise SpecError(key, f"a multiple of the task scale {task.scale} ({task.label})", p)
    return p


def _extent(src: Source, task: Task, dataset: Dataset) -> tuple[int, int]:
    """Usable GT (H, W): mod-cropped to the scale; for pairs, checked against the LQ size."""
    s = task.scale
    h, w = src.size
    if dataset.paired:
        assert src.lq_size is not None
        lh, lw = src.lq_size
        if h // s != lh or w // s != lw:
            raise DataError(f"{src.key}: GT is {h}×{w} but its LQ {src.lq_key} is {lh}×{lw}; {task.label} "
                            f"(scale {s}) expects LQ {h // s}×{w // s}")
        return lh * s, lw * s
    return h - h % s, w - w % s


def _check_fits(sources: list[Source], task: Task, dataset: Dataset, patch: int, what: str) -> list[tuple[int, int]]:
    extents = []
    for src in sources:
        h, w = _extent(src, task, dataset)
        if h < patch or w < patch:
            raise DataError(f"{src.key}: {what} image is {h}×{w}, smaller than the {patch}-pixel patch")
        extents.append((h, w))
    return extents


def _to_tensor(arr: np.ndarray) -> Tensor:
    """(h, w, 3) uint8 → (3, h, w) float32 in [0, 1]."""
    # copy: the cached source arrays are read-only and shared
    return torch.from_numpy(np.array(arr, copy=True)).permute(2, 0, 1).float().div_(255.0)


def crop_pair(task: Task, gt_img: np.ndarray | TiledImage, lq_img: np.ndarray | None, extent: tuple[int, int],
              top: int, left: int, h: int, w: int, seed: int) -> tuple[Tensor, Tensor]:
    """(lq (3, h/s, w/s), gt (3, h, w)) for the GT window at (top, left); all multiples of the scale.

    Paired data crops the aligned LQ window; HR-only data degrades the window plus ``task.context``
    pixels of surrounding image (clamped to the image) with ``seed`` and trims the context off.
    """
    s = task.scale
    if lq_img is not None:
        gt = _to_tensor(gt_img[top: top + h, left: left + w])
        lq = _to_tensor(lq_img[top // s: (top + h) // s, left // s: (left + w) // s])
        return lq, gt
    c = -(-task.context // s) * s  # context rounded up to the scale keeps LQ/GT aligned
    height, width = extent
    r0, r1 = max(0, top - c), min(height, top + h + c)
    c0, c1 = max(0, left - c), min(width, left + w + c)
    region = _to_tensor(gt_img[r0:r1, c0:c1])
    lq_region = task.degrade(region, seed)
    dy, dx = top - r0, left - c0
    gt = region[:, dy: dy + h, dx: dx + w]
    lq = lq_region[:, dy // s: (dy + h) // s, dx // s: (dx + w) // s]
    return lq.contiguous(), gt.contiguous()


def _derive(rng: np.random.Generator) -> int:
    return int(rng.integers(0, 2 ** 62))


def _augment(x: Tensor, hflip: bool, vflip: bool, rot: bool) -> Tensor:
    # the 8 symmetries of the square; rot transposes H and W (a 90° rotation combined with a flip)
    if hflip:
        x = x.flip(-1)
    if vflip:
        x = x.flip(-2)
    if rot:
        x = x.transpose(-2, -1)
    return x


class PairSampler:
    """Random training batches: ``batch(step) -> (lq (B, 3, p/s, p/s), gt (B, 3, p, p))``.

    A pure function of (seed, step): nothing is carried between calls, so two samplers with the
    same seed give identical batches at every step, in any order. Per sample: a uniformly random
    training image, a random crop (on the scale grid), random horizontal/vertical flips and
    transpose, and a degradation seeded per sample.
    """

    def __init__(self, dataset: Any, task: Any, patch_size: int, batch_size: int, seed: int) -> None:
        self.dataset = resolve_dataset(dataset)
        self.task = resolve_task(task)
        self.patch_size = _check_patch(self.task, patch_size, "train.patch_size")
        self.batch_size = _check_int(batch_size, "train.batch_size", 1)
        self.seed = _check_int(seed, "seed", 0)
        self._sources = list(self.dataset.train)
        if not self._sources:
            raise DataError(f"dataset {self.dataset.name!r} has no training images")
        self._extents = _check_fits(self._sources, self.task, self.dataset, self.patch_size, "training")

    def batch(self, step: int) -> tuple[Tensor, Tensor]:
        step = _check_int(step, "step", 0)
        rng = np.random.default_rng([_TRAIN, self.seed, step])
        s, p = self.task.scale, self.patch_size
        lqs, gts = [], []
        for _ in range(self.batch_size):
            i = int(rng.integers(len(self._sources)))
            h, w = self._extents[i]
            top = s * int(rng.integers(0, (h - p) // s + 1))
            left = s * int(rng.integers(0, (w - p) // s + 1))
            hflip, vflip, rot = (bool(b) for b in rng.integers(0, 2, 3))
            seed = _derive(rng)
            src = self._sources[i]
            # a prepared store holds the same pixels: the same draws give the same batch, undecoded
            gt_img, lq_img = (src.tiles, None) if src.tiles is not None else src.load()
            lq, gt = crop_pair(self.task, gt_img, lq_img, (h, w), top, left, p, p, seed)
            lqs.append(_augment(lq, hflip, vflip, rot))
            gts.append(_augment(gt, hflip, vflip, rot))
        return torch.stack(lqs), torch.stack(gts)

    def __repr__(self) -> str:
        return (f"PairSampler({self.dataset.name}, {self.task.label}, patch_size={self.patch_size}, "
                f"batch_size={self.batch_size}, seed={self.seed})")


def validation_pairs(dataset: Any, task: Any, size: int, seed: int) -> list[tuple[Tensor, Tensor]]:
    """[(lq (3, h/s, w/s), gt (3, h, w))] for each validation image, degraded with a fixed seed per image.

    ``size`` > 0: the centre ``size``×``size`` GT crop (a multiple of the scale; smaller images give
    their whole, mod-cropped extent on that axis). ``size`` = 0: the whole image, mod-cropped.
    """
    ds, t = resolve_dataset(dataset), resolve_task(task)
    size = _check_int(size, "train.val_size", 0)
    seed = _check_int(seed, "seed", 0)
    if size and size % t.scale:
        raise SpecError("train.val_size", f"0 or a multiple of the task scale {t.scale} ({t.label})", size)
    if not ds.val:
        raise DataError(f"dataset {ds.name!r} has no validation images")
    return [_val_pair(ds, t, i, size, seed) for i in range(len(ds.val))]


def _val_pair(ds: Dataset, t: Task, i: int, size: int, seed: int) -> tuple[Tensor, Tensor]:
    """Validation image ``i``: its centre ``size`` crop (0: whole), degraded with the image's own seed."""
    src = ds.val[i]
    h, w = _extent(src, t, ds)
    ch, cw = (min(size, h), min(size, w)) if size else (h, w)
    top = (h - ch) // 2 // t.scale * t.scale
    left = (w - cw) // 2 // t.scale * t.scale
    img_seed = _derive(np.random.default_rng([_VAL, seed, i]))
    gt_img, lq_img = src.load()
    return crop_pair(t, gt_img, lq_img, (h, w), top, left, ch, cw, img_seed)


def eval_pairs(dataset: Any, task: Any, seed: int) -> Iterator[tuple[str, Tensor, Tensor]]:
    """``(key, lq, gt)`` for each validation image, whole (mod-cropped to the scale), one at a time.

    The same pairs as ``validation_pairs(dataset, task, 0, seed)`` — the same per-image degradation
    seeds — without holding every image in memory: a test set of 100 large images streams. An image
    too small to score (not larger than twice the task's crop border, or smaller than its scale)
    raises :class:`DataError` naming the file.
    """
    ds, t = resolve_dataset(dataset), resolve_task(task)
    seed = _check_int(seed, "seed", 0)
    if not ds.val:
        raise DataError(f"dataset {ds.name!r} has no test images")
    least = max(t.scale, 2 * t.crop_border + 1)
    for i, src in enumerate(ds.val):
        h, w = _extent(src, t, ds)
        if min(h, w) < least:
            raise DataError(f"{src.key}: {src.size[0]}×{src.size[1]} is too small to score for {t.label} "
                            f"(at least {least}×{least} after cropping to a multiple of the scale {t.scale})")
        lq, gt = _val_pair(ds, t, i, 0, seed)
        yield src.key, lq, gt


def probe_batch(dataset: Any, task: Any, n: int, patch_size: int, seed: int) -> Tensor:
    """A fixed LQ batch (n, 3, p/s, p/s): random crops of the validation images (image k mod the
    number of validation images), degraded with fixed seeds; no flips. Same arguments, same tensor."""
    ds, t = resolve_dataset(dataset), resolve_task(task)
    n = _check_int(n, "probes.batch", 1)
    p = _check_patch(t, patch_size, "probes.patch_size")
    seed = _check_int(seed, "seed", 0)
    if not ds.val:
        raise DataError(f"dataset {ds.name!r} has no validation images")
    extents = _check_fits(ds.val, t, ds, p, "validation")
    rng = np.random.default_rng([_PROBE, seed])
    s = t.scale
    lqs = []
    for k in range(n):
        i = k % len(ds.val)
        h, w = extents[i]
        top = s * int(rng.integers(0, (h - p) // s + 1))
        left = s * int(rng.integers(0, (w - p) // s + 1))
        gt_img, lq_img = ds.val[i].load()
        lq, _ = crop_pair(t, gt_img, lq_img, (h, w), top, left, p, p, _derive(rng))
        lqs.append(lq)
    return torch.stack(lqs)
