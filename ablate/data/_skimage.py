"""The RGB natural images scikit-image ships (offline): the default dataset.

    from ablate.data import resolve_dataset
    ds = resolve_dataset("skimage")                          # val: coffee, chelsea; train: the rest
    ds = resolve_dataset({"name": "skimage", "val": ["astronaut"]})

Images: astronaut, coffee, chelsea, rocket, immunohistochemistry, hubble_deep_field, retina,
stereo_motorcycle_left, stereo_motorcycle_right, logo (alpha composited on white), colorwheel.
Each is loaded once per process and kept in memory (about 15 MB in all); one that fails to load
(an install without its file) is left out of the defaults.

Default split: val = coffee and chelsea — two natural photographs with fine texture and smooth
regions, small enough (400×600, 300×451) to evaluate whole; train = every other image.

Building the dataset decodes nothing: sizes come from the image files' headers in scikit-image's
data folder (read with Pillow, without importing scikit-image), so ``ablate validate`` stays fast;
an image whose file is not there is loaded to learn its size, and left out of the defaults when
that fails.
"""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from ablate.errors import DataError, SpecError, did_you_mean
from ablate.params import Param
from ablate.registry import DATASETS

from ._base import Dataset, Source


def _logo() -> np.ndarray:
    from skimage import data

    rgba = data.logo().astype(np.float64)
    a = rgba[..., 3:4] / 255.0
    return np.round(rgba[..., :3] * a + 255.0 * (1.0 - a)).astype(np.uint8)


def _getter(name: str, index: int | None = None) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from skimage import data

        out = getattr(data, name)()
        return out[index] if index is not None else out

    return load


_LOADERS: dict[str, Callable[[], np.ndarray]] = {
    "astronaut": _getter("astronaut"),
    "coffee": _getter("coffee"),
    "chelsea": _getter("chelsea"),
    "rocket": _getter("rocket"),
    "immunohistochemistry": _getter("immunohistochemistry"),
    "hubble_deep_field": _getter("hubble_deep_field"),
    "retina": _getter("retina"),
    "stereo_motorcycle_left": _getter("stereo_motorcycle", 0),
    "stereo_motorcycle_right": _getter("stereo_motorcycle", 1),
    "logo": _logo,
    "colorwheel": _getter("colorwheel"),
}
SKIMAGE_IMAGES = tuple(_LOADERS)
# the file in scikit-image's data folder each image is decoded from (same height and width)
_FILES = {"astronaut": "astronaut.png", "coffee": "coffee.png", "chelsea": "chelsea.png", "rocket": "rocket.jpg",
          "immunohistochemistry": "ihc.png", "hubble_deep_field": "hubble_deep_field.jpg", "retina": "retina.jpg",
          "stereo_motorcycle_left": "motorcycle_left.png", "stereo_motorcycle_right": "motorcycle_right.png",
          "logo": "logo.png", "colorwheel": "color.png"}
DEFAULT_VAL = ("coffee", "chelsea")

# module-level: every PairSampler/validation in this process shares one decoded copy
_IMAGES: dict[str, np.ndarray] = {}
_FAILED: dict[str, str] = {}


def load_skimage(name: str) -> np.ndarray:
    """(H, W, 3) uint8 read-only array of one scikit-image image; DataError if it cannot load."""
    if name in _IMAGES:
        return _IMAGES[name]
    if name not in _FAILED:
        try:
            img = np.ascontiguousarray(_LOADERS[name]())
            if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
                raise ValueError(f"expected (H, W, 3) uint8, got {img.shape} {img.dtype}")
            img.setflags(write=False)
            _IMAGES[name] = img
            return img
        except Exception as err:  # a missing data file or a changed skimage API: skip the image
            _FAILED[name] = f"{type(err).__name__}: {err}"
    raise DataError(f"scikit-image image {name!r} cannot be loaded here ({_FAILED[name]})")


def _load_source(name: str) -> tuple[np.ndarray, None]:
    return load_skimage(name), None


@functools.cache
def _data_dir() -> Path | None:
    spec = importlib.util.find_spec("skimage")  # locates the package without importing it (nor scipy)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "data"


@functools.cache
def skimage_size(name: str) -> tuple[int, int] | None:
    """(H, W) of one image, from its file header when the file is in scikit-image's data folder,
    else by loading it; None when it cannot be loaded here."""
    folder = _data_dir()
    if folder is not None and name not in _IMAGES:
        try:
            with Image.open(folder / _FILES[name]) as header:
                w, h = header.size
            return h, w
        except (OSError, UnidentifiedImageError):
            pass  # fetched elsewhere by scikit-image, or unreadable: load it
    try:
        img = load_skimage(name)
    except DataError:
        return None
    return int(img.shape[0]), int(img.shape[1])


def available_skimage_images() -> list[str]:
    """The images of :data:`SKIMAGE_IMAGES` that load on this install (loads them all once)."""
    out = []
    for name in SKIMAGE_IMAGES:
        try:
            load_skimage(name)
            out.append(name)
        except DataError:
            pass
    return out


@DATASETS.register("skimage")
class SkimageDataset(Dataset):
    """The RGB images scikit-image ships; no download. val = coffee, chelsea; train = the rest."""

    name = "skimage"
    PARAMS = {
        "val": Param(list(DEFAULT_VAL), list, "validation images"),
        "train": Param(None, list, "training images (default: every loadable image not in val)",
                       nullable=True),
    }

    def __init__(self, _where: str | None = None, **params: Any) -> None:
        super().__init__(_where, **params)
        val = self._names("val")
        train = self._names("train") if self.params["train"] is not None else None
        if train is None:
            train = [n for n in SKIMAGE_IMAGES if n not in val and skimage_size(n) is not None]
        if not val:
            raise SpecError(self.key("val"), "at least one validation image", [])
        if not train:
            raise SpecError(self.key("train"), "at least one training image", train)
        self.val = [self._source(n) for n in val]
        self.train = [self._source(n) for n in train]

    def _names(self, param: str) -> list[str]:
        names = self.params[param]
        for i, name in enumerate(names):
            if name not in _LOADERS:
                raise SpecError(f"{self.key(param)}[{i}]", "a scikit-image RGB image ("
                                + ", ".join(SKIMAGE_IMAGES) + ")", name,
                                hint=did_you_mean(name, SKIMAGE_IMAGES).strip(" ()") or None)
        return list(dict.fromkeys(names))  # drop repeats, keep order

    @staticmethod
    def _source(name: str) -> Source:
        size = skimage_size(name)
        if size is None:
            load_skimage(name)  # raises the DataError that says why
        assert size is not None
        return Source(name, size, functools.partial(_load_source, name))
