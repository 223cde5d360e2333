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

On a GPU the batch is made in two halves: ``cut(step)`` does what only the CPU can (the random
draws, the crops from the images, a task's noise and kernels) and ``CutBatch.finish`` degrades the
whole batch at once with the task's batched torch operations where its tensors are, the cell's GPU
(``Task.degrade_windows``). The batch equals ``batch(step)`` within 1/255 per pixel.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import Tensor

from ablate.errors import DataError, SpecError
from ablate.tasks import Task, Window, resolve_task

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


def _context(task: Task) -> int:
    """The HR pixels a patch is degraded with on each side: ``task.context`` rounded up to the scale,
    which keeps LQ and GT aligned."""
    return -(-task.context // task.scale) * task.scale


def _clamped_region(extent: tuple[int, int], top: int, left: int, h: int, w: int, c: int
                    ) -> tuple[int, int, int, int]:
    """(r0, r1, c0, c1): the window at (top, left) with ``c`` pixels around it, clamped to the image."""
    return max(0, top - c), min(extent[0], top + h + c), max(0, left - c), min(extent[1], left + w + c)


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
    r0, r1, c0, c1 = _clamped_region(extent, top, left, h, w, _context(task))
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


def _mirror_pieces(start: int, stop: int, n: int) -> list[tuple[int, int, int, int, bool]]:
    """Positions ``start`` … ``stop − 1`` of an axis of ``n`` pixels extended half-sample symmetrically
    (``.. 1 0 | 0 1 .. n−1 | n−1 ..``, the boundary of ``imresize`` and ``convolve``), as pieces
    ``(out_from, out_to, src_from, src_to, reversed)``: one per period of the extension they cross."""
    pieces = []
    k, v = start // n, start
    while v < stop:
        end = min(stop, (k + 1) * n)
        lo, hi = v - k * n, end - k * n
        if k % 2:  # an odd period runs backwards: n−1−lo down to n−hi
            pieces.append((v - start, end - start, n - hi, n - lo, True))
        else:
            pieces.append((v - start, end - start, lo, hi, False))
        v, k = end, k + 1
    return pieces


def _cut_region(img: np.ndarray | TiledImage, extent: tuple[int, int], top: int, left: int, size: int, c: int,
                out: np.ndarray) -> None:
    """Write into ``out`` (size + 2c, size + 2c, 3) the GT window at (top, left) with ``c`` pixels around
    it, mirrored where the image's ``extent`` ends, as the task's own boundary extends a region that
    ``crop_pair`` cuts at the border. Inside the image, one read; at a border, a few slices."""
    for ro, rt, r0, r1, rrev in _mirror_pieces(top - c, top + size + c, extent[0]):
        for co, ct, c0, c1, crev in _mirror_pieces(left - c, left + size + c, extent[1]):
            piece = img[r0:r1, c0:c1]
            out[ro:rt, co:ct] = piece[::-1 if rrev else 1, ::-1 if crev else 1]


class _Draw(NamedTuple):
    """One sample's random draws: which image, where, which symmetry, which degradation seed."""

    image: int
    top: int
    left: int
    symmetry: tuple[bool, bool, bool]
    seed: int


@dataclass
class CutBatch:
    """A training batch as the CPU cuts it (:meth:`PairSampler.cut`), before the degradation.

    ``gt`` (B, p + 2c, p + 2c, 3) uint8, as images are stored (the GPU puts the channels first): each
    GT patch with ``context`` = c pixels around it, mirrored where its image ends. ``lq``: paired
    data's LQ crops (B, p/s, p/s, 3) uint8, else None.
    ``draws``: the task's random parts (``Task.draw``). ``symmetries``: (hflip, vflip, transpose) per
    sample. Move it with :meth:`pin` and :meth:`to`; :meth:`finish` makes the batch.
    """

    gt: Tensor
    lq: Tensor | None
    context: int
    symmetries: list[tuple[bool, bool, bool]]
    draws: dict[str, Tensor] = field(default_factory=dict)

    def _map(self, fn: Any) -> CutBatch:
        return replace(self, gt=fn(self.gt), lq=None if self.lq is None else fn(self.lq),
                       draws={k: fn(v) for k, v in self.draws.items()})

    def pin(self) -> CutBatch:
        """In page-locked memory, so that :meth:`to` a GPU copies asynchronously."""
        return self._map(lambda t: t.pin_memory())

    def to(self, device: torch.device) -> CutBatch:
        """On ``device``; from pinned memory (:meth:`pin`) without making the host wait."""
        return self._map(lambda t: t.to(device, non_blocking=True))

    def finish(self, task: Task) -> tuple[Tensor, Tensor]:
        """(lq (B, 3, p/s, p/s), gt (B, 3, p, p)) float32 in [0, 1] where the tensors are: the batch
        ``PairSampler.batch`` makes, degraded by ``task.degrade_windows`` for the whole batch at once."""
        c = self.context
        gt = _float(self.gt)
        lq = _float(self.lq) if self.lq is not None else task.degrade_windows(gt, c, self.draws)
        gt = gt[..., c: gt.shape[-2] - c, c: gt.shape[-1] - c]
        # the symmetries after the degradation, as batch() applies them
        return (torch.stack([_augment(x, *sym) for x, sym in zip(lq, self.symmetries)]),
                torch.stack([_augment(x, *sym) for x, sym in zip(gt, self.symmetries)]))


def _float(hwc: Tensor) -> Tensor:
    """(B, h, w, 3) uint8 → (B, 3, h, w) float32 in [0, 1]: the values ``crop_pair``'s conversion gives."""
    return hwc.permute(0, 3, 1, 2).float().div_(255.0).contiguous()


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

    def _draws(self, step: int) -> list[_Draw]:
        """Every random draw of batch ``step``, in the generator's order."""
        step = _check_int(step, "step", 0)
        rng = np.random.default_rng([_TRAIN, self.seed, step])
        s, p = self.task.scale, self.patch_size
        out = []
        for _ in range(self.batch_size):
            i = int(rng.integers(len(self._sources)))
            h, w = self._extents[i]
            top = s * int(rng.integers(0, (h - p) // s + 1))
            left = s * int(rng.integers(0, (w - p) // s + 1))
            hflip, vflip, rot = (bool(b) for b in rng.integers(0, 2, 3))
            out.append(_Draw(i, top, left, (hflip, vflip, rot), _derive(rng)))
        return out

    def _images(self, i: int) -> tuple[np.ndarray | TiledImage, np.ndarray | None]:
        src = self._sources[i]
        # a prepared store holds the same pixels: the same draws give the same batch, undecoded
        return (src.tiles, None) if src.tiles is not None else src.load()

    def batch(self, step: int) -> tuple[Tensor, Tensor]:
        p = self.patch_size
        lqs, gts = [], []
        for d in self._draws(step):
            gt_img, lq_img = self._images(d.image)
            lq, gt = crop_pair(self.task, gt_img, lq_img, self._extents[d.image], d.top, d.left, p, p, d.seed)
            lqs.append(_augment(lq, *d.symmetry))
            gts.append(_augment(gt, *d.symmetry))
        return torch.stack(lqs), torch.stack(gts)

    @property
    def batched(self) -> bool:
        """Whether :meth:`cut` leaves the degradation to ``CutBatch.finish`` (batched torch operations,
        which run on the cell's GPU): paired data (nothing to degrade) or a task with ``Task.batched``."""
        return self.dataset.paired or self.task.batched

    def cut(self, step: int) -> CutBatch:
        """Batch ``step`` cut but not degraded; ``cut(step).finish(task)`` equals ``batch(step)`` within
        1/255 per pixel (exactly for paired data and denoising). Only when :attr:`batched`.

        The same draws as :meth:`batch`. Each GT patch is cut with the context its degradation
        reaches (``task.context`` rounded up to the scale), mirrored where the image ends: what
        degrading the region ``batch`` cuts (clamped to the image) reads through the task's own
        mirrored boundary, so the window's LQ is the same.
        """
        if not self.batched:
            raise DataError(f"{self.task.label} has no batched degradation: use batch(step)")
        s, p = self.task.scale, self.patch_size
        draws = self._draws(step)
        syms = [d.symmetry for d in draws]
        if self.dataset.paired:
            gts = np.empty((len(draws), p, p, 3), np.uint8)
            lqs = np.empty((len(draws), p // s, p // s, 3), np.uint8)
            for d, gt, lq in zip(draws, gts, lqs):
                gt_img, lq_img = self._images(d.image)
                assert lq_img is not None
                gt[...] = gt_img[d.top: d.top + p, d.left: d.left + p]
                lq[...] = lq_img[d.top // s: (d.top + p) // s, d.left // s: (d.left + p) // s]
            return CutBatch(torch.from_numpy(gts), torch.from_numpy(lqs), 0, syms)
        c = _context(self.task)
        regions = np.empty((len(draws), p + 2 * c, p + 2 * c, 3), np.uint8)
        windows = []
        for d, region in zip(draws, regions):
            extent = self._extents[d.image]
            _cut_region(self._images(d.image)[0], extent, d.top, d.left, p, c, region)
            # the region batch() degrades for this sample (clamped to the image) and the window in it
            r0, r1, c0, c1 = _clamped_region(extent, d.top, d.left, p, p, c)
            windows.append(Window(d.seed, (r1 - r0, c1 - c0), (d.top - r0, d.left - c0), p))
        extra = {k: torch.from_numpy(v) for k, v in self.task.draw(windows).items()}
        return CutBatch(torch.from_numpy(regions), None, c, syms, extra)

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
