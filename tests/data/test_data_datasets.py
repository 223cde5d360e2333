"""Datasets: the scikit-image default, user folders, LQ/GT pairs, and the errors bad paths give."""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ablate.data import (
    SKIMAGE_IMAGES,
    PairedDataset,
    available_skimage_images,
    load_skimage,
    read_image,
    resolve_dataset,
)
from ablate.errors import DataError, SpecError
from ablate.registry import DATASETS
from ablate.spec import Component


def _png(path: Path, h: int = 40, w: int = 50, seed: int = 0, mode: str = "RGB") -> np.ndarray:
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
    arr = rng.integers(0, 256, (h, w, channels), dtype=np.uint8)
    Image.fromarray(arr[..., 0] if channels == 1 else arr, mode).save(path)
    return arr


def test_skimage_default_split_and_cache() -> None:
    assert {"skimage", "folder", "paired"} <= set(DATASETS.keys())
    ds = resolve_dataset("skimage")
    assert [s.key for s in ds.val] == ["coffee", "chelsea"]
    train = [s.key for s in ds.train]
    assert "coffee" not in train and "chelsea" not in train
    names = available_skimage_images()
    # this install ships every listed image; a missing one would be skipped, not fatal
    assert names == list(SKIMAGE_IMAGES)
    assert set(train) == set(names) - {"coffee", "chelsea"}
    for src in ds.train + ds.val:
        gt, lq = src.load()
        assert lq is None and gt.dtype == np.uint8 and gt.ndim == 3 and gt.shape[2] == 3
        assert gt.shape[:2] == src.size and min(src.size) >= 300
    assert load_skimage("stereo_motorcycle_left").shape == load_skimage("stereo_motorcycle_right").shape
    assert not np.array_equal(load_skimage("stereo_motorcycle_left"), load_skimage("stereo_motorcycle_right"))
    logo = load_skimage("logo")
    assert logo.shape[2] == 3 and logo[0, 0].tolist() == [255, 255, 255]  # transparent → white
    t0 = time.perf_counter()
    again = resolve_dataset(Component("skimage"))
    assert time.perf_counter() - t0 < 0.2  # cached in memory after the first use
    assert again.train[0].load()[0] is ds.train[0].load()[0]


def test_skimage_sizes_from_file_headers_are_the_decoded_sizes() -> None:
    """Building the dataset reads sizes from the files' headers (no scikit-image import): each file
    named in ``_FILES`` has the height and width its decoded image has."""
    from ablate.data._skimage import _FILES, _data_dir

    folder = _data_dir()
    assert folder is not None and set(_FILES) == set(SKIMAGE_IMAGES)
    for name, file in _FILES.items():
        with Image.open(folder / file) as header:
            w, h = header.size
        assert (h, w) == load_skimage(name).shape[:2], name


def test_skimage_parameters() -> None:
    ds = resolve_dataset({"name": "skimage", "val": ["astronaut"], "train": ["rocket", "coffee"]})
    assert [s.key for s in ds.val] == ["astronaut"] and [s.key for s in ds.train] == ["rocket", "coffee"]
    with pytest.raises(SpecError, match=r"data\.val\[1\]: expected a scikit-image RGB image .*got 'chelsey'"
                                        r".*did you mean 'chelsea'"):
        resolve_dataset({"name": "skimage", "val": ["coffee", "chelsey"]})
    with pytest.raises(SpecError, match=r"data\.vall: .*accepted: val, train"):
        resolve_dataset({"name": "skimage", "vall": ["coffee"]})
    with pytest.raises(SpecError, match=r"data: expected a registered dataset, got 'skimag' \(did you mean"):
        resolve_dataset("skimag")


def test_folder_split_val_path_and_formats(tmp_path: Path) -> None:
    train = tmp_path / "hr"
    train.mkdir()
    for i in range(10):
        _png(train / f"{i:02d}.png", seed=i)
    Image.fromarray(np.full((40, 50, 3), 7, np.uint8)).save(train / "10.jpg", quality=95)
    Image.fromarray(np.full((40, 50, 3), 9, np.uint8)).save(train / "11.bmp")
    (train / "notes.txt").write_text("not an image")
    ds = resolve_dataset({"name": "folder", "path": str(train)})
    assert len(ds.train) + len(ds.val) == 12 and len(ds.val) == 1
    assert ds.val[0].key.endswith("11.bmp")  # the last of the sorted files is held out
    arr = _png(train / "00.png", seed=0)
    from ablate.data import clear_cache

    clear_cache()
    assert np.array_equal(ds.train[0].load()[0], arr)
    ds2 = resolve_dataset({"name": "folder", "path": str(train), "val_fraction": 0.25})
    assert len(ds2.val) == 3
    ds3 = resolve_dataset({"name": "folder", "path": str(train), "val_fraction": 0})
    assert ds3.val == ds3.train
    val = tmp_path / "val"
    val.mkdir()
    _png(val / "a.png", mode="RGBA")
    _png(val / "b.png", mode="L")
    ds4 = resolve_dataset({"name": "folder", "path": str(train), "val_path": str(val)})
    assert len(ds4.train) == 12 and len(ds4.val) == 2
    for src in ds4.val:
        assert src.load()[0].shape == (40, 50, 3)
    with pytest.raises(SpecError, match=r"data\.val_fraction: expected no val_fraction when val_path"):
        resolve_dataset({"name": "folder", "path": str(train), "val_path": str(val), "val_fraction": 0.2})


def test_folder_errors_name_the_path(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"data\.path: expected a string"):
        resolve_dataset({"name": "folder"})
    missing = tmp_path / "nope"
    with pytest.raises(DataError, match=rf"data\.path: folder {re.escape(str(missing))} does not exist"):
        resolve_dataset({"name": "folder", "path": str(missing)})
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.md").write_text("x")
    with pytest.raises(DataError, match=rf"data\.path: folder {re.escape(str(empty))} holds no images"):
        resolve_dataset({"name": "folder", "path": str(empty)})
    bad = tmp_path / "bad"
    bad.mkdir()
    _png(bad / "good.png")
    (bad / "broken.png").write_bytes(b"this is not a png at all")
    with pytest.raises(DataError, match=rf"{re.escape(str(bad / 'broken.png'))}: not a readable image"):
        resolve_dataset({"name": "folder", "path": str(bad)})
    with pytest.raises(DataError, match=rf"{re.escape(str(bad / 'missing.png'))}: cannot read image"):
        read_image(bad / "missing.png")
    one = tmp_path / "one"
    one.mkdir()
    _png(one / "x.png")
    with pytest.raises(DataError, match=r"too few to hold out"):
        resolve_dataset({"name": "folder", "path": str(one)})


def test_truncated_image_fails_at_load_with_its_path(tmp_path: Path) -> None:
    folder = tmp_path / "trunc"
    folder.mkdir()
    _png(folder / "a.png", 64, 64)
    full = (folder / "a.png").read_bytes()
    (folder / "b.png").write_bytes(full[: len(full) // 2])  # a valid header, cut-off pixel data
    ds = resolve_dataset({"name": "folder", "path": str(folder), "val_fraction": 0})
    with pytest.raises(DataError, match=rf"{re.escape(str(folder / 'b.png'))}: not a readable image"):
        ds.train[1].load()


def _pairs(root: Path, names: list[str], lq_suffix: str = "", scale: int = 2) -> tuple[Path, Path]:
    lq, gt = root / "lq", root / "gt"
    lq.mkdir(parents=True)
    gt.mkdir(parents=True)
    for i, n in enumerate(names):
        _png(gt / f"{n}.png", 48, 64, seed=i)
        _png(lq / f"{n}{lq_suffix}.png", 48 // scale, 64 // scale, seed=100 + i)
    return lq, gt


def test_paired_matching_by_stem_with_suffix(tmp_path: Path) -> None:
    lq, gt = _pairs(tmp_path / "a", ["0001", "0002", "0003", "0004"], lq_suffix="x2")
    ds = resolve_dataset({"name": "paired", "lq": str(lq), "gt": str(gt), "lq_suffix": "x2",
                          "val_fraction": 0.25})
    assert isinstance(ds, PairedDataset) and ds.paired
    assert [Path(s.key).name for s in ds.train] == ["0001.png", "0002.png", "0003.png"]
    assert Path(ds.val[0].lq_key or "").name == "0004x2.png"
    g, q = ds.train[0].load()
    assert g.shape == (48, 64, 3) and q is not None and q.shape == (24, 32, 3)
    vlq, vgt = _pairs(tmp_path / "v", ["x", "y"], lq_suffix="x2")
    ds2 = resolve_dataset({"name": "paired", "lq": str(lq), "gt": str(gt), "lq_suffix": "x2",
                           "val_lq": str(vlq), "val_gt": str(vgt)})
    assert len(ds2.train) == 4 and len(ds2.val) == 2
    with pytest.raises(SpecError, match=r"data\.val_gt: expected a folder \(val_lq and val_gt go together\)"):
        resolve_dataset({"name": "paired", "lq": str(lq), "gt": str(gt), "val_lq": str(vlq)})


def test_unmatched_pairs_are_reported(tmp_path: Path) -> None:
    lq, gt = _pairs(tmp_path, ["a", "b", "c"], lq_suffix="_LR")
    with pytest.raises(DataError, match=r"data\.lq: unmatched pairs: 3 LQ image\(s\) in .* have no GT partner"
                                        r".*a_LR\.png.*lq_suffix ''"):
        resolve_dataset({"name": "paired", "lq": str(lq), "gt": str(gt)})
    _png(gt / "d.png")
    with pytest.raises(DataError, match=rf"1 GT image\(s\) in {re.escape(str(gt))} have no LQ partner in {re.escape(str(lq))} \(e\.g\. d\.png\)"):
        resolve_dataset({"name": "paired", "lq": str(lq), "gt": str(gt), "lq_suffix": "_LR"})
    with pytest.raises(DataError, match=r"data\.gt: folder .* does not exist"):
        resolve_dataset({"name": "paired", "lq": str(lq), "gt": str(tmp_path / "none")})
