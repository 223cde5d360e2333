"""``PairSampler.cut`` + ``CutBatch.finish``: the batch a CUDA cell degrades on its GPU equals ``batch(step)``.

The batched degradation is the same torch code on every device, so running it here on the CPU tests
the GPU's path; the CUDA tests at the end run only where a GPU is (and check that no host sync hides
in the prefetcher).
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data as skdata

from ablate.data import CutBatch, PairSampler, resolve_dataset
from ablate.data._sampler import _context, _cut_region
from ablate.errors import DataError
from ablate.tasks import resolve_task
from ablate.train._prefetch import Prefetcher

PATCH = 48
# (task, largest |batched − per-sample| per LQ pixel): SR rounds to 8 bits, so a float-rounding
# difference may move a pixel one 8-bit step; noise is added identically; blur differs by rounding only
TASKS = [("sr-x2", 1 / 255), ("sr-x3", 1 / 255), ("sr-x4", 1 / 255), ("dn-s25", 0.0),
         ({"name": "dn", "sigma": 50, "clip": True}, 0.0), ("db-gauss", 1e-5),
         ({"name": "db", "kernel": "motion", "noise": 2}, 1e-5), ({"name": "db", "sigma": 3.0}, 1e-5)]


@pytest.fixture(scope="module")
def small_photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Photos little larger than the patch, with odd sides: most windows reach past an image border,
    where the batched path mirrors the image itself and the per-sample path degrades a clamped region."""
    root = tmp_path_factory.mktemp("small")
    for name, (h, w) in (("astronaut", (63, 70)), ("chelsea", (97, 101)), ("coffee", (121, 90)),
                         ("rocket", (75, 130))):
        img = getattr(skdata, name)()
        Image.fromarray(img[40: 40 + h, 60: 60 + w]).save(root / f"{name}.png")
    return root


def _sampler(folder: Path, task: object, batch: int = 6) -> PairSampler:
    ds = resolve_dataset({"name": "folder", "path": str(folder), "val_fraction": 0})
    return PairSampler(ds, task, patch_size=PATCH, batch_size=batch, seed=3)


def _mirrored_windows(sampler: PairSampler, step: int) -> int:
    c, n = _context(sampler.task), 0
    for d in sampler._draws(step):
        h, w = sampler._extents[d.image]
        n += d.top < c or d.left < c or d.top + PATCH + c > h or d.left + PATCH + c > w
    return n


@pytest.mark.parametrize("task,tol", TASKS, ids=[resolve_task(t).label for t, _ in TASKS])
def test_the_batched_degradation_equals_the_per_sample_one(small_photos: Path, task: object, tol: float) -> None:
    sampler = _sampler(small_photos, task)
    assert sampler.batched
    mirrored, worst, moved = 0, 0.0, 0
    for step in range(6):
        lq, gt = sampler.batch(step)
        cut = sampler.cut(step)
        assert cut.gt.dtype == torch.uint8 and cut.context >= sampler.task.context and cut.gt.shape[-1] == 3
        lq2, gt2 = cut.finish(sampler.task)
        assert torch.equal(gt2, gt)  # the same pixels, the same float conversion, the same symmetries
        assert lq2.shape == lq.shape and lq2.dtype == torch.float32
        diff = (lq2 - lq).abs()
        worst = max(worst, float(diff.max()))
        moved += int((diff > 1e-6).sum())
        mirrored += _mirrored_windows(sampler, step)
    if sampler.task.context:
        assert mirrored >= 6  # the image borders were exercised, not only the interior
    assert worst <= tol + 1e-6, worst
    if tol == 1 / 255:  # 8-bit steps: at most a rare pixel whose value sits on a rounding boundary
        assert moved <= 3, moved


def test_a_region_past_the_border_is_the_mirrored_image() -> None:
    img = np.random.default_rng(0).integers(0, 256, (9, 7, 3), dtype=np.uint8)
    out = np.empty((4 + 2 * 10, 4 + 2 * 10, 3), np.uint8)
    for top, left in ((0, 0), (5, 3), (2, 1)):  # context 10 > the image: the extension wraps twice
        _cut_region(img, (9, 7), top, left, 4, 10, out)
        rows, cols = (np.mod(np.arange(a - 10, a + 14), 2 * n) for a, n in ((top, 9), (left, 7)))
        rows, cols = np.where(rows < 9, rows, 17 - rows), np.where(cols < 7, cols, 13 - cols)
        assert np.array_equal(out, img[np.ix_(rows, cols)])


def test_paired_batches_are_cut_and_finished_exactly(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    lq_dir, gt_dir = tmp_path / "lq", tmp_path / "gt"
    lq_dir.mkdir()
    gt_dir.mkdir()
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)).save(lq_dir / f"{i}.png")
        Image.fromarray(rng.integers(0, 256, (80, 112, 3), dtype=np.uint8)).save(gt_dir / f"{i}.png")
    ds = resolve_dataset({"name": "paired", "lq": str(lq_dir), "gt": str(gt_dir), "val_fraction": 0})
    sampler = PairSampler(ds, "sr-x2", patch_size=32, batch_size=5, seed=1)
    assert sampler.batched
    for step in range(3):
        lq, gt = sampler.batch(step)
        cut = sampler.cut(step)
        assert cut.lq is not None and cut.context == 0
        lq2, gt2 = cut.finish(sampler.task)
        assert torch.equal(lq2, lq) and torch.equal(gt2, gt)


def test_a_cut_is_a_pure_function_of_seed_and_step(small_photos: Path) -> None:
    a = _sampler(small_photos, {"name": "db", "kernel": "motion", "noise": 2})
    b = pickle.loads(pickle.dumps(a))  # another process's copy, asked out of order
    later = b.cut(4)
    first = a.cut(0)
    again = a.cut(4)
    for x, y in ((again.gt, later.gt), (again.draws["kernel"], later.draws["kernel"]),
                 (again.draws["noise"], later.draws["noise"])):
        assert torch.equal(x, y)
    assert again.symmetries == later.symmetries
    assert not torch.equal(first.gt, again.gt)


def test_pinned_and_moved_cuts_keep_their_contents(small_photos: Path) -> None:
    cut = _sampler(small_photos, "dn-s25").cut(2)
    moved = cut.to(torch.device("cpu"))
    assert isinstance(moved, CutBatch) and torch.equal(moved.gt, cut.gt)
    assert torch.equal(moved.draws["noise"], cut.draws["noise"]) and moved.symmetries == cut.symmetries


@pytest.mark.parametrize("task", ["car-q10", "derain"])
def test_a_task_without_a_batched_path_is_degraded_on_the_cpu(small_photos: Path, task: str) -> None:
    sampler = _sampler(small_photos, task)
    assert not sampler.batched and not sampler.task.batched
    with pytest.raises(DataError, match="has no batched degradation"):
        sampler.cut(0)
    pre = Prefetcher(sampler, last=3, depth=2, device=torch.device("cpu"))
    try:
        assert pre.degrade_on == "cpu"
        lq, gt = pre.get(1)
        ref = sampler.batch(1)
        assert torch.equal(lq, ref[0]) and torch.equal(gt, ref[1])
    finally:
        pre.close()


# --- on a GPU only ------------------------------------------------------------------------------------

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@cuda
@pytest.mark.parametrize("task,tol", TASKS, ids=[resolve_task(t).label for t, _ in TASKS])
def test_batches_degraded_on_the_gpu_equal_the_cpu_ones_without_a_host_sync(small_photos: Path, task: object,
                                                                              tol: float) -> None:
    sampler = _sampler(small_photos, task, batch=8)
    device = torch.device("cuda")
    warm = Prefetcher(sampler, last=1, depth=2, device=device)
    assert warm.degrade_on == "cuda"
    warm.get(1)  # first use: CUDA context, cuBLAS/cuDNN handles
    warm.close()
    torch.cuda.synchronize()
    pre = Prefetcher(sampler, last=6, depth=2, device=device)  # every batch below is made under the check
    try:
        torch.cuda.set_sync_debug_mode("error")
        try:
            got = [pre.get(step) for step in range(2, 7)]
        finally:
            torch.cuda.set_sync_debug_mode("default")
        for step, (lq, gt) in zip(range(2, 7), got):
            ref_lq, ref_gt = sampler.batch(step)
            assert lq.device.type == "cuda"
            assert torch.equal(gt.cpu(), ref_gt)
            assert float((lq.cpu() - ref_lq).abs().max()) <= tol + 1e-6
    finally:
        pre.close()
