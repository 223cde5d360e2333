"""Test sets: which images a set holds, and the rule for every kind of image a folder may hold.

Grayscale → 3 equal channels; 16-bit → 8-bit as the training reader does it (grayscale rounded,
v·255/65535; RGB keeps Pillow's high byte); alpha composited on white; odd sizes cropped to the scale;
floating-point, corrupt and too-small images refused in one line naming the file — never a traceback.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from ablate.cli import main
from ablate.data import clear_cache, eval_pairs, resolve_test_set, validation_pairs
from ablate.errors import DataError


def _png16(path: Path, arr: np.ndarray) -> None:
    """A 16-bit PNG (gray, RGB or RGBA by the channel count), written by hand: Pillow cannot write 16-bit RGB."""
    h, w, c = arr.shape
    raw = b"".join(b"\x00" + arr[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", w, h, 16, {1: 0, 3: 2, 4: 6}[c], 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw))
                     + chunk(b"IEND", b""))


def _gt(folder: Path, task: str = "sr-x2") -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    clear_cache()
    return {Path(k).name: (lq, gt) for k, lq, gt in eval_pairs(resolve_test_set({"name": "folder",
                                                                                 "path": str(folder)}), task, 0)}


def _u8(t: torch.Tensor) -> np.ndarray:
    return np.round(t.permute(1, 2, 0).numpy() * 255).astype(np.uint8)


def test_a_folder_set_is_every_image_and_skimage_the_held_out_pictures(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(tmp_path / "only.png")
    ds = resolve_test_set({"name": "folder", "path": str(tmp_path)})  # one image: nothing held out
    assert [Path(s.key).name for s in ds.val] == ["only.png"]
    assert [s.key for s in resolve_test_set("skimage").val] == ["coffee", "chelsea"]
    assert [s.key for s in resolve_test_set({"name": "skimage", "val": ["astronaut"]}).val] == ["astronaut"]
    # an explicit split keeps its training meaning
    for i in range(9):
        Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(tmp_path / f"x{i}.png")
    assert len(resolve_test_set({"name": "folder", "path": str(tmp_path), "val_fraction": 0.2}).val) == 2


def test_whole_pairs_are_the_trainers_validation_pairs_one_at_a_time(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (30 + i, 41, 3), dtype=np.uint8)).save(tmp_path / f"{i}.png")
    ds = resolve_test_set({"name": "folder", "path": str(tmp_path)})
    for task in ("sr-x3", "dn-s25"):
        got = list(eval_pairs(ds, task, 1234))
        want = validation_pairs(ds, task, 0, 1234)
        assert len(got) == len(want) == 3
        for (_, lq, gt), (lq2, gt2) in zip(got, want):
            assert torch.equal(lq, lq2) and torch.equal(gt, gt2)


def test_image_kinds_are_converted_by_the_training_readers_rule(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    gray = rng.integers(0, 256, (20, 25), dtype=np.uint8)  # odd width: cropped to 24 for ×2
    Image.fromarray(gray, "L").save(tmp_path / "gray.png")
    g16 = rng.integers(0, 65536, (20, 24, 1), dtype=np.uint16)
    _png16(tmp_path / "gray16.png", g16)
    rgb16 = rng.integers(0, 65536, (20, 24, 3), dtype=np.uint16)
    _png16(tmp_path / "rgb16.png", rgb16)
    rgba = rng.integers(0, 256, (20, 24, 4), dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    pal = Image.fromarray(rng.integers(0, 256, (21, 24, 3), dtype=np.uint8)).convert("P")
    pal.save(tmp_path / "palette.png")
    pairs = _gt(tmp_path)
    assert _u8(pairs["gray.png"][1]).tolist() == np.repeat(gray[:, :24, None], 3, 2).tolist()
    want16 = np.round(g16[..., 0] / 65535 * 255).astype(np.uint8)
    assert _u8(pairs["gray16.png"][1]).tolist() == np.repeat(want16[..., None], 3, 2).tolist()
    assert _u8(pairs["rgb16.png"][1]).tolist() == (rgb16 >> 8).astype(np.uint8).tolist()
    a = rgba[..., 3:4] / 255.0
    want_rgba = np.round(rgba[..., :3] * a + 255.0 * (1 - a)).astype(np.uint8)
    assert _u8(pairs["rgba.png"][1]).tolist() == want_rgba.tolist()
    assert pairs["palette.png"][1].shape == (3, 20, 24) and pairs["palette.png"][0].shape == (3, 10, 12)
    for lq, gt in pairs.values():
        assert gt.shape[0] == 3 and gt.shape[1] % 2 == 0 and gt.shape[2] % 2 == 0
        assert lq.shape[1:] == (gt.shape[1] // 2, gt.shape[2] // 2)


def test_odd_sizes_are_cropped_to_the_scale_and_paired_gt_to_its_lq(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    gt_img = rng.integers(0, 256, (31, 47, 3), dtype=np.uint8)
    Image.fromarray(gt_img).save(tmp_path / "odd.png")
    lq, gt = _gt(tmp_path, "sr-x3")["odd.png"]
    assert gt.shape == (3, 30, 45) and lq.shape == (3, 10, 15)
    # paired: the GT is cropped to 3 × its LQ (Set5-style 256×256 GT with an 85×85 LR)
    (tmp_path / "lq").mkdir()
    (tmp_path / "gt").mkdir()
    Image.fromarray(gt_img).save(tmp_path / "gt" / "a.png")
    Image.fromarray(gt_img[:30:3, :45:3]).save(tmp_path / "lq" / "a.png")
    ds = resolve_test_set({"name": "paired", "lq": str(tmp_path / "lq"), "gt": str(tmp_path / "gt")})
    [(_, lq, gt)] = list(eval_pairs(ds, "sr-x3", 0))
    assert gt.shape == (3, 30, 45) and lq.shape == (3, 10, 15)


def _float_tiff(path: Path) -> None:
    Image.fromarray(np.random.default_rng(4).random((20, 24)).astype(np.float32)).save(path)


def _truncated_png(path: Path) -> None:
    Image.fromarray(np.random.default_rng(5).integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(path)
    path.write_bytes(path.read_bytes()[:120])  # the header survives, the pixels do not


def _tiny_png(path: Path) -> None:
    Image.fromarray(np.zeros((4, 30, 3), dtype=np.uint8)).save(path)  # 4 rows: 2·crop border + 1 = 5 needed


BAD: dict[str, tuple[Any, str]] = {
    "float.tif": (_float_tiff, "floating-point pixels (mode F) have no 8-bit rule"),
    "cut.png": (_truncated_png, "not a readable image"),
    "tiny.png": (_tiny_png, "is too small to score for sr-x2"),
}


@pytest.mark.parametrize("name", list(BAD))
def test_an_unusable_image_is_refused_in_one_line_naming_it(name: str, tmp_path: Path) -> None:
    make, message = BAD[name]
    make(tmp_path / name)
    clear_cache()
    with pytest.raises(DataError) as err:
        list(eval_pairs(resolve_test_set({"name": "folder", "path": str(tmp_path)}), "sr-x2", 0))
    text = str(err.value)
    assert str(tmp_path / name) in text and message in text and "\n" not in text


def test_ablate_eval_refuses_a_bad_test_image_in_one_line(trained: Any, tmp_path: Path) -> None:
    t = trained.copy(tmp_path / "state")
    bad = tmp_path / "bad"
    bad.mkdir()
    Image.fromarray(np.zeros((24, 24, 3), dtype=np.uint8)).save(bad / "a.png")
    _float_tiff(bad / "b.tif")
    text = (t.root / "spec.yaml").read_text().replace(f"path: {t.root / 'test'}}}\n  precisions",
                                                      f"path: {bad}}}\n  precisions")
    assert str(bad) in text
    (tmp_path / "spec.yaml").write_text(text)
    res = CliRunner().invoke(main, ["eval", str(tmp_path / "spec.yaml"), "--local", "--state-dir", str(t.state)])
    assert res.exit_code == 2, res.output
    assert res.output.strip().splitlines()[-1] == (f"error: {bad / 'b.tif'}: floating-point pixels (mode F) have "
                                                   f"no 8-bit rule; save it as an 8- or 16-bit image")
    assert "Traceback" not in res.output
