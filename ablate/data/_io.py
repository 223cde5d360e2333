"""Reading images from disk into 8-bit RGB arrays, with a per-process in-memory cache.

    from ablate.data._io import list_images, read_image
    paths = list_images("~/data/DIV2K_train_HR", "data.path")   # DataError if missing or empty
    img = read_image(paths[0])                                   # (H, W, 3) uint8, cached

The cache keeps decoded images up to ``ABLATE_IMAGE_CACHE_MB`` (default 2048) per process, least
recently used first out, keyed by path, size and mtime so an edited file is read again.

To 8-bit RGB: grayscale and palette images become three equal channels; 16-bit (and 32-bit integer)
grayscale is scaled, v · 255 / 65535, and rounded (one whose values all fit in 8 bits is taken as
8-bit); 16-bit RGB(A) keeps the high byte (Pillow's decoder); alpha is composited on white;
floating-point images are refused (DataError naming the file).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ablate.errors import DataError

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
_FLOAT_MODES = ("F", "F;16", "F;32")

_CACHE: OrderedDict[tuple[str, int, int], np.ndarray] = OrderedDict()
_CACHE_BYTES = 0


def _cache_limit() -> int:
    try:
        return int(float(os.environ.get("ABLATE_IMAGE_CACHE_MB", "2048")) * 2 ** 20)
    except ValueError:
        return 2048 * 2 ** 20


def list_images(folder: str | Path, key: str) -> list[Path]:
    """Image files (by extension, case-insensitive) directly in ``folder``, sorted by name.

    ``key`` is the spec key that named the folder (``data.path``), for the error message.
    """
    path = Path(folder).expanduser()
    if not path.exists():
        raise DataError(f"{key}: folder {path} does not exist")
    if not path.is_dir():
        raise DataError(f"{key}: {path} is not a folder")
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS)
    if not files:
        raise DataError(f"{key}: folder {path} holds no images ({', '.join(e[1:] for e in IMAGE_EXTS)})")
    return files


def image_size(path: Path) -> tuple[int, int]:
    """(H, W) from the file header, without decoding the pixels."""
    try:
        with Image.open(path) as img:
            w, h = img.size
    except (UnidentifiedImageError, OSError, ValueError) as err:
        raise DataError(f"{path}: not a readable image ({type(err).__name__}: {err})") from None
    return h, w


def _to_rgb8(img: Image.Image) -> np.ndarray:
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit grayscale: keep the top 8 bits rather than let convert("RGB") saturate
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if arr.max() > 255 else 255.0
        g = np.round(np.clip(arr / top, 0, 1) * 255).astype(np.uint8)
        return np.repeat(g[..., None], 3, axis=2)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        # transparent pixels become white, the way a viewer shows a logo on a page
        rgba = np.asarray(img.convert("RGBA"), dtype=np.float64)
        a = rgba[..., 3:4] / 255.0
        return np.round(rgba[..., :3] * a + 255.0 * (1 - a)).astype(np.uint8)
    return np.asarray(img.convert("RGB"), dtype=np.uint8)


def decode_image(path: Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB of an image file, decoded now and not cached (``read_image`` caches)."""
    try:
        with Image.open(path) as img:
            img.load()
            mode = img.mode
            arr = None if mode in _FLOAT_MODES else np.ascontiguousarray(_to_rgb8(img))
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
        raise DataError(f"{path}: not a readable image ({type(err).__name__}: {err})") from None
    if arr is None:  # Pillow's conversion would clip [0, 1] floats to black: no image, silently
        raise DataError(f"{path}: floating-point pixels (mode {mode}) have no 8-bit rule; save it as an "
                        f"8- or 16-bit image")
    return arr


def read_image(path: str | Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB of an image file (grayscale replicated, alpha composited on white)."""
    global _CACHE_BYTES
    p = Path(path)
    try:
        st = p.stat()
    except OSError as err:
        raise DataError(f"{p}: cannot read image ({err.strerror or err})") from None
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    hit = _CACHE.get(key)
    if hit is not None:
        _CACHE.move_to_end(key)
        return hit
    arr = decode_image(p)
    arr.setflags(write=False)  # shared by every caller: nobody may edit it in place
    limit = _cache_limit()
    if arr.nbytes <= limit:
        _CACHE[key] = arr
        _CACHE_BYTES += arr.nbytes
        while _CACHE_BYTES > limit:
            _, old = _CACHE.popitem(last=False)
            _CACHE_BYTES -= old.nbytes
    return arr


def clear_cache() -> None:
    """Drop every cached image (tests; or after editing files with the same mtime)."""
    global _CACHE_BYTES
    _CACHE.clear()
    _CACHE_BYTES = 0
