"""Prepared stores (`ablate data prepare`): tiles hold the source pixels, the folder dataset samples the
same batches from them, a changed folder is noticed, a damaged store fails in one line."""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image
from skimage import data as skdata

from ablate.cli import main
from ablate.data import PairSampler, open_store, prepare_folder, read_image, resolve_dataset
from ablate.data._prepared import INDEX, STORE_DIR, TILES, tile_starts
from ablate.errors import DataError, SpecError
from ablate.spec import load_experiment

_SPEC = "name: t\nnorm: token_ln\nbackbone: swinir-tiny\ntask: sr-x2\n"


def _folder(root: Path) -> Path:
    """Real images in every mode the reader converts: RGB (one upscaled past a 2-tile width),
    8-bit and 16-bit grayscale, RGBA; one smaller than the test tile on one axis."""
    root.mkdir(parents=True)
    Image.fromarray(skdata.astronaut()).save(root / "a_astronaut.png")
    Image.fromarray(skdata.chelsea()).resize((1100, 733), Image.BICUBIC).save(root / "b_chelsea_big.png")
    Image.fromarray(skdata.coffee()).save(root / "c_coffee.jpg", quality=90)
    camera = skdata.camera()
    Image.fromarray(camera).save(root / "d_camera_gray.png")
    Image.fromarray(camera.astype(np.uint16) * 257).save(root / "e_camera_16bit.png")
    Image.fromarray(skdata.logo()).save(root / "f_logo_rgba.png")
    Image.fromarray(skdata.rocket()[:200]).save(root / "g_rocket_strip.png")  # 200 rows < tile
    (root / "notes.txt").write_text("not an image")
    return root


@pytest.fixture()
def folder(tmp_path: Path) -> Path:
    return _folder(tmp_path / "hr")


def test_tiles_hold_the_source_pixels(folder: Path) -> None:
    store = prepare_folder(folder, tile=256, stride=192)
    assert store.root == folder / STORE_DIR and store.names == sorted(p.name for p in folder.glob("*_*.*")
                                                                        if p.suffix != ".txt")
    # 1100 wide: starts 0, 192, 384, 576, 768 and 844 (the last aligned to the border)
    assert tile_starts(1100, 256, 192) == ((0, 192, 384, 576, 768, 844), 256)
    assert tile_starts(733, 256, 192) == ((0, 192, 384, 477), 256)
    assert tile_starts(200, 256, 192) == ((0,), 200)
    assert tile_starts(512, 256, 256) == ((0, 256), 256)  # an exact fit adds no border tile
    assert store.image("b_chelsea_big.png").n_tiles == 4 * 6
    total = 0
    rng = np.random.default_rng(0)
    for name in store.names:
        img, tiled = read_image(folder / name), store.image(name)
        assert tiled.shape == img.shape and img.dtype == np.uint8
        for i, r in enumerate(tiled.rows):
            for j, c in enumerate(tiled.cols):
                assert np.array_equal(tiled.tile(i, j), img[r: r + tiled.th, c: c + tiled.tw])
        total += tiled.n_tiles * tiled.th * tiled.tw * 3
        h, w = img.shape[:2]
        for _ in range(50):  # any window, across tile borders too, is the decoded image's window
            r0, c0 = int(rng.integers(0, h)), int(rng.integers(0, w))
            r1, c1 = int(rng.integers(r0, h + 1)), int(rng.integers(c0, w + 1))
            assert np.array_equal(tiled[r0:r1, c0:c1], img[r0:r1, c0:c1])
        assert np.array_equal(tiled[0:h, 0:w], img)
    assert store.n_tiles == sum(store.image(n).n_tiles for n in store.names)
    assert (folder / STORE_DIR / TILES).stat().st_size == total == store.nbytes
    # the reader's conversions carried over: 16-bit keeps its top byte, alpha is composited on white
    assert np.array_equal(store.image("e_camera_16bit.png")[0:512, 0:512][..., 0], skdata.camera())
    assert store.image("f_logo_rgba.png")[0:1, 0:1].tolist() == [[[255, 255, 255]]]
    # default stride = tile: no overlap
    plain = prepare_folder(folder, folder.parent / "plain", tile=256)
    assert plain.stride == 256 and plain.image("b_chelsea_big.png").cols == (0, 256, 512, 768, 844)
    with pytest.raises(TypeError, match="step 1"):
        plain.image("a_astronaut.png")[0:10:2, 0:10]


def test_folder_dataset_reads_the_store_with_the_same_batches(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    plain = resolve_dataset({"name": "folder", "path": str(folder), "val_fraction": 0.3})
    assert plain.prepared is None  # type: ignore[attr-defined]
    prepare_folder(folder)
    ds = resolve_dataset({"name": "folder", "path": str(folder), "val_fraction": 0.3})
    store = ds.prepared  # type: ignore[attr-defined]
    assert store is not None and ds.params["prepared"] == str(folder / STORE_DIR)
    assert [s.key for s in ds.train] == [s.key for s in plain.train] and len(ds.val) == 2
    assert all(s.tiles is not None for s in ds.train) and all(s.tiles is None for s in ds.val)
    expected = [PairSampler(plain, "sr-x4", patch_size=64, batch_size=6, seed=3).batch(step) for step in (0, 5)]

    def no_decoding(path: object) -> None:
        raise AssertionError(f"decoded {path} although a prepared store matches")

    monkeypatch.setattr("ablate.data._base.read_image", no_decoding)
    a = PairSampler(ds, "sr-x4", patch_size=64, batch_size=6, seed=3)
    b = PairSampler(resolve_dataset({"name": "folder", "path": str(folder), "val_fraction": 0.3}), "sr-x4",
                    patch_size=64, batch_size=6, seed=3)
    for step, (lq, gt) in zip((0, 5), expected):
        for sampler in (a, b, pickle.loads(pickle.dumps(a))):  # a pickled sampler maps the store again
            got = sampler.batch(step)
            assert torch.equal(got[0], lq) and torch.equal(got[1], gt)
    assert not torch.equal(a.batch(1)[1], expected[0][1])


def test_prepared_param_points_elsewhere(folder: Path, tmp_path: Path) -> None:
    prepare_folder(folder, tmp_path / "store", tile=300)
    ds = resolve_dataset({"name": "folder", "path": str(folder), "prepared": str(tmp_path / "store")})
    assert ds.prepared is not None and ds.prepared.tile == 300  # type: ignore[attr-defined]
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError, match=rf"data\.prepared: {re.escape(str(missing))} holds no prepared store"):
        resolve_dataset({"name": "folder", "path": str(folder), "prepared": str(missing)})
    # in a YAML file, a relative prepared: is relative to the file, like path:
    spec = tmp_path / "exp.yaml"
    spec.write_text(f"{_SPEC}data: {{name: folder, path: hr, prepared: store}}\n")
    data = load_experiment(spec).data
    assert dict(data.params)["prepared"] == str(tmp_path / "store")


def test_a_changed_folder_makes_the_store_stale(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    prepare_folder(folder)
    capsys.readouterr()
    st = (folder / "c_coffee.jpg").stat()
    os.utime(folder / "c_coffee.jpg", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # touched: same bytes
    for _ in range(2):
        ds = resolve_dataset({"name": "folder", "path": str(folder), "val_fraction": 0})
        assert ds.prepared is None and all(s.tiles is None for s in ds.train)  # type: ignore[attr-defined]
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1, lines  # once, in one line
    assert lines[0].startswith(f"warning: prepared store {folder / STORE_DIR} is stale for {folder} "
                               f"(1 changed (e.g. c_coffee.jpg)); decoding the images instead")
    assert PairSampler(ds, "sr-x2", patch_size=48, batch_size=2, seed=0).batch(0)[1].shape == (2, 3, 48, 48)
    prepare_folder(folder)  # prepared again: fresh
    Image.fromarray(skdata.astronaut()).save(folder / "z_new.png")
    ds = resolve_dataset({"name": "folder", "path": str(folder)})
    assert ds.prepared is None  # type: ignore[attr-defined]
    assert "(1 new (e.g. z_new.png))" in capsys.readouterr().err
    (folder / "z_new.png").unlink()
    (folder / "a_astronaut.png").unlink()
    resolve_dataset({"name": "folder", "path": str(folder)})
    assert "(1 missing (e.g. a_astronaut.png))" in capsys.readouterr().err
    # an interrupted prepare leaves a folder without index: not used, said once
    (folder / STORE_DIR / INDEX).unlink()
    ds = resolve_dataset({"name": "folder", "path": str(folder)})
    assert ds.prepared is None and "an interrupted prepare?" in capsys.readouterr().err  # type: ignore[attr-defined]


def test_damaged_store_is_a_one_line_error(folder: Path) -> None:
    store = prepare_folder(folder)
    tiles, index = store.root / TILES, store.root / INDEX
    spec = {"name": "folder", "path": str(folder)}
    size = tiles.stat().st_size
    with open(tiles, "r+b") as fh:
        fh.truncate(size - 1000)
    with pytest.raises(DataError, match=rf"^{re.escape(str(tiles))}: {size - 1000} bytes where the index "
                                        rf"expects {size}: truncated or corrupt; re-run `ablate data prepare"):
        resolve_dataset(spec)
    tiles.unlink()
    with pytest.raises(DataError, match=rf"^{re.escape(str(tiles))}: cannot read the prepared store"):
        resolve_dataset(spec)
    prepare_folder(folder)
    raw = json.loads(index.read_text())
    index.write_text(index.read_text()[:100])
    with pytest.raises(DataError, match=rf"^{re.escape(str(index))}: not a valid prepared-store index"):
        resolve_dataset(spec)
    raw["images"][0]["height"] = 100  # an edited index: sizes no longer add up to the tiles file
    index.write_text(json.dumps(raw))
    with pytest.raises(DataError, match="truncated or corrupt"):
        open_store(store.root)
    raw["images"][0]["bytes"] += 1  # an edited entry no longer matches the index's own fingerprint
    index.write_text(json.dumps(raw))
    with pytest.raises(DataError, match="its fingerprint does not match its entries"):
        open_store(store.root)


def test_prepare_errors(folder: Path, tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"stride: expected an integer in \[1, tile = 100\]"):
        prepare_folder(folder, tile=100, stride=101)
    broken = tmp_path / "broken"
    shutil.copytree(folder, broken)
    data = (broken / "a_astronaut.png").read_bytes()
    (broken / "a_astronaut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=rf"{re.escape(str(broken / 'a_astronaut.png'))}: not a readable image"):
        prepare_folder(broken)
    assert not (broken / STORE_DIR / INDEX).exists() and not list((broken / STORE_DIR).glob("*.tmp"))


def _one_line_error(result: object, *fragments: str) -> str:
    assert result.exit_code == 2, result.output  # type: ignore[attr-defined]
    lines = [line for line in result.output.splitlines() if line.strip()]  # type: ignore[attr-defined]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output  # type: ignore[attr-defined]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def test_cli_prepare(folder: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    assert "prepare" in runner.invoke(main, ["data", "--help"]).output
    result = runner.invoke(main, ["data", "prepare", str(folder), "--tile", "256"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert len(lines) == 7 + 2 and lines[0].startswith("[1/7] a_astronaut.png  512×512  4 tiles")
    assert lines[1].startswith("[2/7] b_chelsea_big.png  1100×733  15 tiles")
    assert lines[7].startswith(f"prepared 7 images: {open_store(folder / STORE_DIR).n_tiles} tiles of 256×256 "
                               f"(stride 256)") and str(folder / STORE_DIR) in lines[7]
    assert lines[8] == f"the folder dataset with path: {folder} now reads it"
    out = tmp_path / "elsewhere"
    result = runner.invoke(main, ["data", "prepare", str(folder), "--out", str(out), "--stride", "240"])
    assert result.exit_code == 0 and open_store(out).stride == 240, result.output
    assert result.output.splitlines()[-1] == f"use it with data: {{name: folder, path: {folder}, prepared: {out}}}"

    _one_line_error(runner.invoke(main, ["data", "prepare", str(tmp_path / "nope")]),
                    f"FOLDER: folder {tmp_path / 'nope'} does not exist")
    empty = tmp_path / "empty"
    empty.mkdir()
    _one_line_error(runner.invoke(main, ["data", "prepare", str(empty)]), f"folder {empty} holds no images")
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    _one_line_error(runner.invoke(main, ["data", "prepare", str(folder), "--out", str(blocker / "store")]),
                    f"{blocker / 'store'}: cannot create the prepared store here")
    _one_line_error(runner.invoke(main, ["data", "prepare", str(folder), "--stride", "500"]),
                    "stride: expected an integer in [1, tile = 480]")
    with open(out / TILES, "r+b") as fh:
        fh.truncate(10)
    spec = tmp_path / "exp.yaml"
    spec.write_text(f"{_SPEC}data: {{name: folder, path: {folder}, prepared: {out}}}\n")
    _one_line_error(runner.invoke(main, ["validate", str(spec)]), f"{out / TILES}: 10 bytes where the index")
