"""User image folders: HR-only (``folder``, degraded on the fly) and LQ/GT pairs (``paired``).

    from ablate.data import resolve_dataset
    hr = resolve_dataset({"name": "folder", "path": "~/data/DF2K_HR", "val_path": "~/data/Set14"})
    rain = resolve_dataset({"name": "paired", "lq": "Rain13K/input", "gt": "Rain13K/target",
                            "val_lq": "Rain100L/input", "val_gt": "Rain100L/target"})
    div2k = resolve_dataset({"name": "paired", "lq": "DIV2K_LR_bicubic/X2", "gt": "DIV2K_HR",
                             "lq_suffix": "x2"})                 # 0001x2.png ↔ 0001.png

Images: png, jpg/jpeg, bmp, tif/tiff directly in the folder (not recursive), sorted by name.
Relative paths are taken from the current directory at resolve time.

Held-out split without ``val_path`` (or ``val_lq``/``val_gt``): the *last* ``val_fraction`` of the
sorted files (at least one) are validation images, the rest train. ``val_fraction: 0`` validates
on the training images themselves (no held-out set).

Prepared store (``ablate data prepare FOLDER``, see :mod:`ablate.data._prepared`): the ``folder``
dataset reads training patches from ``<path>/.ablate-prepared/`` when it exists and matches the
folder, or from the store in ``prepared: DIR``. The same batches, no decoding; validation images are
still read from the files. A store that no longer matches the folder (a file added, removed or
touched) is reported in one warning line and the images are decoded instead.

Pairs are matched by file stem after removing ``lq_suffix`` from LQ stems and ``gt_suffix`` from
GT stems (extensions may differ): ``baby_LR.png`` ↔ ``baby.png`` with ``lq_suffix: _LR``. Every LQ
must have a GT partner and vice versa.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from ablate.errors import DataError, SpecError
from ablate.params import Param
from ablate.registry import DATASETS

from ._base import Dataset, Source, file_source, pair_source
from ._io import image_size, list_images
from ._prepared import PreparedStore, find_store


def _split(items: list[Source], fraction: float, key: str, folder: str) -> tuple[list[Source], list[Source]]:
    if fraction == 0:
        return items, items
    n_val = max(1, round(fraction * len(items)))
    if n_val >= len(items):
        raise DataError(f"{key}: {folder} has {len(items)} image(s), too few to hold out "
                        f"{n_val} for validation; give a separate validation folder or set val_fraction: 0")
    return items[:-n_val], items[-n_val:]


@DATASETS.register("folder")
class FolderDataset(Dataset):
    """HR images from a folder, degraded on the fly by the task; optional separate validation folder."""

    name = "folder"
    PARAMS = {
        "path": Param(None, str, "folder of HR training images", required=True),
        "val_path": Param(None, str, "folder of HR validation images", nullable=True),
        "val_fraction": Param(0.1, float, "share of the sorted images held out for validation "
                              "when val_path is not given", lo=0, hi=0.9),
        "prepared": Param(None, str, "folder of the store `ablate data prepare` wrote for path "
                          "(default: path/.ablate-prepared when it exists)", nullable=True),
    }

    def __init__(self, _where: str | None = None, **params: Any) -> None:
        super().__init__(_where, **params)
        p = self.params
        if p["val_path"] is not None and "val_fraction" in self._given:
            raise SpecError(self.key("val_fraction"), "no val_fraction when val_path is given",
                            p["val_fraction"])
        root = Path(p["path"]).expanduser().resolve()
        self.params["path"] = str(root)
        files = list_images(root, self.key("path"))
        items = [file_source(f, image_size(f)) for f in files]
        self.prepared = find_store(root, files, p["prepared"], self.key("prepared"))
        self.params["prepared"] = None if self.prepared is None else str(self.prepared.root)
        if p["val_path"] is not None:
            val_root = Path(p["val_path"]).expanduser().resolve()
            self.params["val_path"] = str(val_root)
            self.train = items
            self.val = [file_source(f, image_size(f)) for f in list_images(val_root, self.key("val_path"))]
        else:
            self.train, self.val = _split(items, p["val_fraction"], self.key("path"), str(root))
        if self.prepared is not None:
            self.train = [_tiled(src, self.prepared) for src in self.train]


def _tiled(src: Source, store: PreparedStore) -> Source:
    """``src`` reading its training patches from ``store`` (same name, size and mtime: checked)."""
    tiles = store.image(Path(src.key).name)
    if tiles.entry.size != src.size:  # the fingerprint matched, so the index itself is wrong
        raise DataError(f"{store.root}: {tiles.entry.name} is {tiles.entry.size[0]}×{tiles.entry.size[1]} "
                        f"in the prepared store but {src.size[0]}×{src.size[1]} on disk; re-run "
                        f"`ablate data prepare`")
    return dataclasses.replace(src, tiles=tiles)


def _match(lq_dir: Path, gt_dir: Path, lq_suffix: str, gt_suffix: str, lq_key: str,
           gt_key: str) -> list[Source]:
    def stems(files: list[Path], suffix: str, key: str) -> dict[str, Path]:
        out: dict[str, Path] = {}
        for f in files:
            stem = f.stem[: -len(suffix)] if suffix and f.stem.endswith(suffix) else f.stem
            if stem in out:
                raise DataError(f"{key}: {out[stem].name} and {f.name} in {f.parent} both match stem {stem!r}")
            out[stem] = f
        return out

    lq = stems(list_images(lq_dir, lq_key), lq_suffix, lq_key)
    gt = stems(list_images(gt_dir, gt_key), gt_suffix, gt_key)
    lonely_lq = sorted(set(lq) - set(gt))
    lonely_gt = sorted(set(gt) - set(lq))
    if lonely_lq or lonely_gt:
        parts = []
        if lonely_lq:
            ex = ", ".join(lq[s].name for s in lonely_lq[:3])
            parts.append(f"{len(lonely_lq)} LQ image(s) in {lq_dir} have no GT partner in {gt_dir} (e.g. {ex})")
        if lonely_gt:
            ex = ", ".join(gt[s].name for s in lonely_gt[:3])
            parts.append(f"{len(lonely_gt)} GT image(s) in {gt_dir} have no LQ partner in {lq_dir} (e.g. {ex})")
        rule = (f"pairs match by file stem after removing lq_suffix {lq_suffix!r} and gt_suffix "
                f"{gt_suffix!r}")
        raise DataError(f"{lq_key}: unmatched pairs: {'; '.join(parts)}; {rule}")
    return [pair_source(gt[s], image_size(gt[s]), lq[s], image_size(lq[s])) for s in sorted(gt)]


@DATASETS.register("paired")
class PairedDataset(Dataset):
    """LQ/GT image pairs from two folders, matched by file stem (real rain, real LR, real JPEG…)."""

    name = "paired"
    paired = True
    PARAMS = {
        "lq": Param(None, str, "folder of LQ training images", required=True),
        "gt": Param(None, str, "folder of GT training images", required=True),
        "val_lq": Param(None, str, "folder of LQ validation images", nullable=True),
        "val_gt": Param(None, str, "folder of GT validation images", nullable=True),
        "lq_suffix": Param("", str, "removed from LQ file stems before matching (x2, _LR, _rain…)"),
        "gt_suffix": Param("", str, "removed from GT file stems before matching (_HR, _clean…)"),
        "val_fraction": Param(0.1, float, "share of the sorted pairs held out for validation "
                              "when val_lq/val_gt are not given", lo=0, hi=0.9),
    }

    def __init__(self, _where: str | None = None, **params: Any) -> None:
        super().__init__(_where, **params)
        p = self.params
        for key in ("lq", "gt", "val_lq", "val_gt"):
            if p[key] is not None:
                p[key] = str(Path(p[key]).expanduser().resolve())
        if (p["val_lq"] is None) != (p["val_gt"] is None):
            missing = "val_gt" if p["val_gt"] is None else "val_lq"
            raise SpecError(self.key(missing), "a folder (val_lq and val_gt go together)", None)
        if p["val_lq"] is not None and "val_fraction" in self._given:
            raise SpecError(self.key("val_fraction"), "no val_fraction when val_lq/val_gt are given",
                            p["val_fraction"])
        pairs = _match(Path(p["lq"]), Path(p["gt"]), p["lq_suffix"], p["gt_suffix"], self.key("lq"),
                       self.key("gt"))
        if p["val_lq"] is not None:
            self.train = pairs
            self.val = _match(Path(p["val_lq"]), Path(p["val_gt"]), p["lq_suffix"], p["gt_suffix"],
                              self.key("val_lq"), self.key("val_gt"))
        else:
            self.train, self.val = _split(pairs, p["val_fraction"], self.key("lq"), p["lq"])
