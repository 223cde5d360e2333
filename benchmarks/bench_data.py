"""Patches per second per core: a folder of 2K PNGs that outgrows the image cache vs its prepared store.

    python benchmarks/bench_data.py                 # 24 images 2040×1356, ×4 SR, batch 16 of 256² HR
    python benchmarks/bench_data.py --images 40 --repeats 8
    python benchmarks/bench_data.py --quick         # smoke: 3 small images, 1 repeat

The question (DF2K: 3,450 PNGs, ~29 GB decoded, a 2 GB per-process image cache): how many training
patches can one CPU core make per second, and how many cores does a GPU trial at 0.2 s/step need?

Setup: the scikit-image photographs (astronaut, chelsea, coffee, …), each also flipped and
cropped, upscaled with PIL bicubic to 2040×1356 (a DIV2K frame) and saved as PNG into a temporary
folder. The per-process image cache (``ABLATE_IMAGE_CACHE_MB``) is set to the DF2K ratio, 2 GB /
29 GB of the decoded set, so the folder misses it about as often as DF2K does. Three sources of the
same images: (a) the folder, decoding; (b) its prepared store (``ablate data prepare``, tile 480,
default stride = tile); (c) a store with BasicSR's overlap (stride 240). One thread
(``torch.set_num_threads(1)``), the ``sr-x4`` task, ``PairSampler.batch``: 16 random 256×256 HR
patches with their bicubic ×4 LQ, flips. Batches are timed interleaved (every repeat times each source
once, at the same step) and checked to be identical across sources. CPU time of the process is the
headline (robust to other load on a shared machine; it counts the page-cache copies of file reads
and memory-map faults); wall time is shown beside it. The last column is what a cell on a GPU leaves to
the CPU: ``PairSampler.cut`` (draws and crops), the GPU degrading the batch (``CutBatch.finish``).
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
from PIL import Image

T = TypeVar("T")

GPU_STEP_S = 0.2  # a ×4 HAT/SwinIR step at batch 16, 64² LQ on one GPU (the figure)
DF2K_CACHE_SHARE = 2048 / (29 * 1024)  # the default 2 GB image cache over DF2K's ~29 GB decoded
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "hubble_deep_field", "retina",
          "stereo_motorcycle_left", "stereo_motorcycle_right")


def make_folder(folder: Path, n: int, size: tuple[int, int]) -> None:
    """``n`` PNGs of ``size`` (W, H): each photo as it is, mirrored, and its centre crop, in turn."""
    from ablate.data import load_skimage

    srcs = [load_skimage(name) for name in PHOTOS]
    for k in range(n):
        img = srcs[k % len(srcs)]
        variant = k // len(srcs) % 3
        if variant == 1:
            img = img[:, ::-1]
        elif variant == 2:
            h, w = img.shape[:2]
            img = img[h // 8: h - h // 8, w // 8: w - w // 8]
        Image.fromarray(np.ascontiguousarray(img)).resize(size, Image.Resampling.BICUBIC).save(folder / f"{k:04d}.png")


def timed(fn: Callable[[], T]) -> tuple[float, float, T]:
    """(CPU seconds of this process, wall seconds, result) of ``fn()``."""
    c0, w0 = time.process_time(), time.perf_counter()
    out = fn()
    return time.process_time() - c0, time.perf_counter() - w0, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=24, help="how many 2K images (default 24)")
    parser.add_argument("--repeats", type=int, default=5, help="timed batches per source (default 5)")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--patch", type=int, default=256, help="HR patch side (default 256: 64² LQ at ×4)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 3 small images, 1 repeat")
    args = parser.parse_args()
    size = (2040, 1356)
    if args.quick:
        args.images, args.repeats, size = 3, 1, (1020, 678)
    torch.set_num_threads(1)

    from ablate.data import PairSampler, clear_cache, prepare_folder, resolve_dataset
    from ablate.data._io import decode_image

    with tempfile.TemporaryDirectory(prefix="ablate-bench-data-") as tmp:
        folder = Path(tmp) / "hr"
        folder.mkdir()
        t0 = time.perf_counter()
        make_folder(folder, args.images, size)
        files = sorted(folder.glob("*.png"))
        decode_cpu = statistics.median(timed(lambda f=f: decode_image(f))[0] for f in files[:6])
        decoded_mb = args.images * size[0] * size[1] * 3 / 2**20
        cache_mb = DF2K_CACHE_SHARE * decoded_mb
        os.environ["ABLATE_IMAGE_CACHE_MB"] = f"{cache_mb:.1f}"
        clear_cache()
        print(f"torch {torch.__version__}, {torch.get_num_threads()} thread, {os.cpu_count()} CPUs; "
              f"{args.images} PNGs {size[0]}×{size[1]} ({decoded_mb:.0f} MB decoded, made in "
              f"{time.perf_counter() - t0:.0f} s); decode {1e3 * decode_cpu:.0f} ms CPU per image; "
              f"image cache {cache_mb:.0f} MB ({100 * DF2K_CACHE_SHARE:.0f}% of the set, as 2 GB of DF2K)")

        spec = {"name": "folder", "path": str(folder), "val_fraction": 0}
        sources = {"(a) folder, decoding": resolve_dataset(spec)}  # before any store exists
        prep_cpu, prep_wall, store = timed(lambda: prepare_folder(folder))
        overlap = prepare_folder(folder, Path(tmp) / "overlap", stride=240)
        for name, st in (("(b) store 480/480", store), ("(c) store 480/240", overlap)):
            sources[name] = resolve_dataset({**spec, "prepared": str(st.root)})
            print(f"{name}: {st.n_tiles} tiles, {st.nbytes / 2**20:.0f} MB ({st.nbytes / 2**20 / decoded_mb:.2f}× "
                  f"decoded)")
        print(f"prepare (b): {prep_wall:.1f} s wall, {prep_cpu / args.images * 1e3:.0f} ms CPU per image")

        samplers = {name: PairSampler(ds, "sr-x4", args.patch, args.batch, seed=0) for name, ds in sources.items()}
        for s in samplers.values():
            s.batch(10_000)  # warmup: resize weights built, store pages touched once
        cpu: dict[str, list[float]] = {n: [] for n in samplers}
        wall: dict[str, list[float]] = {n: [] for n in samplers}
        cut_cpu: dict[str, list[float]] = {n: [] for n in samplers}
        names = list(samplers)
        for step in range(args.repeats):
            ref = None
            for name in names[step % len(names):] + names[: step % len(names)]:  # rotating order
                c, w, out = timed(functools.partial(samplers[name].batch, step))
                cpu[name].append(c)
                wall[name].append(w)
                # a GPU cell's share: the cut; the GPU degrades it (CutBatch.finish)
                cut_cpu[name].append(timed(functools.partial(samplers[name].cut, step))[0])
                if ref is None:
                    ref = out
                else:  # the same draws from the same pixels: the store changes nothing but the speed
                    assert all(torch.equal(a, b) for a, b in zip(ref, out)), f"{name}: batch {step} differs"

    base = statistics.median(cpu[names[0]])
    print(f"\nsr-x4, batch {args.batch} × {args.patch}² HR, median of {args.repeats} interleaved batches; "
          f"batches identical across sources\n")
    print("| source | CPU ms/batch | wall ms/batch | patches/s per core | steps/s one core feeds "
          f"| cores per GPU trial at {GPU_STEP_S} s/step | speed-up | CPU ms/batch, GPU degrades |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name in names:
        c, w = statistics.median(cpu[name]), statistics.median(wall[name])
        print(f"| {name} | {1e3 * c:.0f} | {1e3 * w:.0f} | {args.batch / c:.0f} | {1 / c:.2f} "
              f"| {c / GPU_STEP_S:.2f} | {base / c:.1f}× | {1e3 * statistics.median(cut_cpu[name]):.1f} |")


if __name__ == "__main__":
    main()
