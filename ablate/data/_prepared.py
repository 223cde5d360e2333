"""Prepared stores: a folder's images cut into tiles in one memory-mapped uint8 file, for random patches.

    ablate data prepare ~/data/DF2K_HR            # writes ~/data/DF2K_HR/.ablate-prepared/
    from ablate.data import open_store, prepare_folder
    store = prepare_folder("~/data/DF2K_HR")      # the same from Python
    img = store.image("0001.png")                 # a TiledImage, sliced like the decoded array
    patch = img[100:356, 200:456]                 # (256, 256, 3) uint8: the decoded image's own pixels

Why: a 2K PNG takes ~0.1 s to decode and DF2K decoded (~29 GB) does not fit the per-process image
cache, so random patches decode an image for nearly every sample. A store is decoded once; every
trial maps it read-only (``np.memmap``), so the trials on a node share one copy through the OS page
cache and a patch costs a memory copy.

Files: ``tiles.u8`` holds every tile's pixels ((th, tw, 3) uint8, C order), image after image in
name order, tiles row-major; ``index.json`` holds the format version, tile, stride, the source folder,
per image its name, file size, mtime and (H, W), and a fingerprint (SHA-256 of the names, sizes,
mtimes, tile and stride). Tiles follow BasicSR's ``extract_subimages``: starts 0, stride,
2·stride, … and one last tile aligned to the image border whenever pixels are left over (its
``thresh_size`` 0), so every pixel is stored; on an axis shorter than the tile an image is one tile
of its own extent.

Reads: a window inside one tile is a view of that tile; a window crossing tile borders is assembled
from the tiles it crosses (a copy). Either way it is exactly the decoded image's pixels, so patches
may cross tile borders and a sampler draws the same batches from a store as from the images.
Overlap (``stride`` < ``tile``, BasicSR's 480/240) only makes single-tile reads more common, at
about (tile/stride)² the disk and page cache; the default stride is the tile (no overlap).

Staleness: :func:`find_store` compares the fingerprint with the folder's current names, sizes and
mtimes (a ``stat`` per file, nothing read); on a mismatch it warns once, in one line, and the folder
dataset decodes the images instead. A corrupt or truncated store is a DataError naming the file.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from bisect import bisect_right
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ablate.errors import DataError, SpecError

from ._io import decode_image, image_size, list_images

FORMAT = 1
STORE_DIR = ".ablate-prepared"  # the default store of a folder, inside it (list_images skips folders)
INDEX, TILES = "index.json", "tiles.u8"
DEFAULT_TILE = 480

_WARNED: set[str] = set()


def tile_starts(n: int, tile: int, stride: int) -> tuple[tuple[int, ...], int]:
    """Tile starts along an axis of ``n`` pixels and the tile extent there (``min(tile, n)``)."""
    if n <= tile:
        return (0,), n
    starts = list(range(0, n - tile + 1, stride))
    if starts[-1] + tile < n:  # leftover pixels: one more tile, aligned to the border
        starts.append(n - tile)
    return tuple(starts), tile


def fingerprint(files: list[tuple[str, int, int]], tile: int, stride: int) -> str:
    """SHA-256 of (name, size, mtime_ns) per image plus the prepare parameters."""
    text = json.dumps([FORMAT, tile, stride, [list(f) for f in files]], separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _stat(path: Path) -> tuple[str, int, int]:
    try:
        st = path.stat()
    except OSError as err:
        raise DataError(f"{path}: cannot read image ({err.strerror or err})") from None
    return path.name, st.st_size, st.st_mtime_ns


@dataclass(frozen=True)
class StoredImage:
    """One image's index entry: its file's name, size and mtime when prepared, and its (H, W)."""

    name: str
    bytes: int
    mtime_ns: int
    size: tuple[int, int]


class TiledImage:
    """One image of a store: ``img[r0:r1, c0:c1]`` → (h, w, 3) uint8, the decoded image's pixels.

    Only 2-D slices with step 1 are supported (what the samplers use). Picklable: the store's
    memory map is reopened in the receiving process.
    """

    def __init__(self, store: PreparedStore, entry: StoredImage, offset: int) -> None:
        self.store, self.entry, self.offset = store, entry, offset
        h, w = entry.size
        self.rows, self.th = tile_starts(h, store.tile, store.stride)
        self.cols, self.tw = tile_starts(w, store.tile, store.stride)

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.entry.size[0], self.entry.size[1], 3

    @property
    def n_tiles(self) -> int:
        return len(self.rows) * len(self.cols)

    @property
    def nbytes(self) -> int:
        return self.n_tiles * self.th * self.tw * 3

    def tile(self, i: int, j: int) -> np.ndarray:
        """Tile (row i, column j): a read-only (th, tw, 3) view of the memory map."""
        n = self.th * self.tw * 3
        start = self.offset + (i * len(self.cols) + j) * n
        return self.store.pixels()[start: start + n].reshape(self.th, self.tw, 3)

    def __getitem__(self, key: tuple[slice, slice]) -> np.ndarray:
        h, w = self.entry.size
        if not (isinstance(key, tuple) and len(key) == 2 and all(isinstance(k, slice) for k in key)):
            raise TypeError("a TiledImage takes two slices: img[r0:r1, c0:c1]")
        r0, r1, rstep = key[0].indices(h)
        c0, c1, cstep = key[1].indices(w)
        if rstep != 1 or cstep != 1:
            raise TypeError("a TiledImage takes slices with step 1")
        r1, c1 = max(r0, r1), max(c0, c1)
        rows, cols, th, tw = self.rows, self.cols, self.th, self.tw
        # the tile with the last start ≤ r0 reaches furthest: if any tile holds the window, it does
        i, j = bisect_right(rows, r0) - 1, bisect_right(cols, c0) - 1
        if r1 <= rows[i] + th and c1 <= cols[j] + tw:
            return self.tile(i, j)[r0 - rows[i]: r1 - rows[i], c0 - cols[j]: c1 - cols[j]]
        out = np.empty((r1 - r0, c1 - c0, 3), np.uint8)
        y = r0
        while y < r1:
            i = bisect_right(rows, y) - 1
            y1 = min(r1, rows[i] + th)
            x = c0
            while x < c1:
                j = bisect_right(cols, x) - 1
                x1 = min(c1, cols[j] + tw)
                out[y - r0: y1 - r0, x - c0: x1 - c0] = \
                    self.tile(i, j)[y - rows[i]: y1 - rows[i], x - cols[j]: x1 - cols[j]]
                x = x1
            y = y1
        return out

    def __repr__(self) -> str:
        h, w = self.entry.size
        return f"TiledImage({self.entry.name!r}, {h}×{w}, {self.n_tiles} tiles)"


class PreparedStore:
    """An opened store (see the module doc): its tile, stride, images and the memory-mapped pixels."""

    def __init__(self, root: Path, tile: int, stride: int, source: str, images: list[StoredImage],
                 stored_fingerprint: str) -> None:
        self.root, self.tile, self.stride, self.source = root, tile, stride, source
        self.fingerprint = stored_fingerprint
        self._map: np.ndarray | None = None
        self._images: dict[str, TiledImage] = {}
        offset = 0
        for entry in images:
            img = TiledImage(self, entry, offset)
            self._images[entry.name] = img
            offset += img.nbytes
        self.nbytes = offset

    @property
    def names(self) -> list[str]:
        return list(self._images)

    @property
    def n_tiles(self) -> int:
        return sum(img.n_tiles for img in self._images.values())

    def image(self, name: str) -> TiledImage:
        try:
            return self._images[name]
        except KeyError:
            raise DataError(f"{self.root}: the prepared store holds no image {name!r}") from None

    def pixels(self) -> np.ndarray:
        """The whole ``tiles.u8`` as a flat read-only uint8 memory map, opened once per process."""
        if self._map is None:
            path = self.root / TILES
            try:
                self._map = np.memmap(path, dtype=np.uint8, mode="r", shape=(self.nbytes,))
            except (OSError, ValueError) as err:
                raise DataError(f"{path}: cannot map the prepared store ({err}); re-run "
                                f"`ablate data prepare {self.source}`") from None
        return self._map

    def mismatch(self, files: list[Path]) -> str | None:
        """None when ``files`` (a folder's images) are what was prepared; else what differs, briefly."""
        now = {name: (size, mtime) for name, size, mtime in map(_stat, files)}
        stats = [(name, *now[name]) for name in sorted(now)]
        if fingerprint(stats, self.tile, self.stride) == self.fingerprint:
            return None
        stored = {e.name: (e.bytes, e.mtime_ns) for e in (img.entry for img in self._images.values())}
        changed = sorted(n for n in now.keys() & stored.keys() if now[n] != stored[n])
        parts = [f"{len(names)} {label} (e.g. {names[0]})" for label, names in (
            ("changed", changed), ("new", sorted(now.keys() - stored.keys())),
            ("missing", sorted(stored.keys() - now.keys()))) if names]
        return ", ".join(parts) or "fingerprint differs"

    def __getstate__(self) -> dict[str, Any]:
        # a memmap pickles as a copy of its data: send the path, the receiver maps it again
        state = self.__dict__.copy()
        state["_map"] = None
        return state

    def __repr__(self) -> str:
        return (f"PreparedStore({str(self.root)!r}, {len(self._images)} images, {self.n_tiles} tiles of "
                f"{self.tile}, stride {self.stride})")


def _index_error(path: Path, why: str) -> DataError:
    return DataError(f"{path}: not a valid prepared-store index ({why}); re-run `ablate data prepare`")


def open_store(root: str | Path) -> PreparedStore:
    """Open the store in folder ``root``; DataError naming the file when it is missing, corrupt or truncated."""
    root = Path(root).expanduser().resolve()
    index = root / INDEX
    try:
        raw = json.loads(index.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{root}: no prepared store here (no {INDEX}); run `ablate data prepare FOLDER "
                        f"--out {root}`") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise _index_error(index, f"{type(err).__name__}: {err}") from None
    try:
        if raw["format"] != FORMAT:
            raise _index_error(index, f"format {raw['format']!r}, this ablate reads format {FORMAT}")
        tile, stride, source = int(raw["tile"]), int(raw["stride"]), str(raw["source"])
        images = [StoredImage(str(e["name"]), int(e["bytes"]), int(e["mtime_ns"]),
                              (int(e["height"]), int(e["width"]))) for e in raw["images"]]
        stored = str(raw["fingerprint"])
    except (KeyError, TypeError, ValueError) as err:
        raise _index_error(index, f"{type(err).__name__}: {err}") from None
    if not 1 <= stride <= tile or any(min(e.size) < 1 for e in images):
        raise _index_error(index, "tile, stride or image sizes out of range")
    if fingerprint([(e.name, e.bytes, e.mtime_ns) for e in images], tile, stride) != stored:
        raise _index_error(index, "its fingerprint does not match its entries")
    store = PreparedStore(root, tile, stride, source, images, stored)
    tiles = root / TILES
    try:
        size = tiles.stat().st_size
    except OSError as err:
        raise DataError(f"{tiles}: cannot read the prepared store ({err.strerror or err}); re-run "
                        f"`ablate data prepare {source}`") from None
    if size != store.nbytes:
        raise DataError(f"{tiles}: {size} bytes where the index expects {store.nbytes}: truncated or "
                        f"corrupt; re-run `ablate data prepare {source}`")
    store.pixels()  # map now: a prepare that replaces the files later cannot pair this index with new pixels
    return store


def _warn_once(message: str) -> None:
    # one line, once per process: a sweep resolves the dataset in every trial
    if message not in _WARNED:
        _WARNED.add(message)
        print(f"warning: {message}", file=sys.stderr)


def find_store(folder: Path, files: list[Path], prepared: str | None, key: str) -> PreparedStore | None:
    """The store to read ``folder``'s images ``files`` from, or None to decode them.

    ``prepared`` None looks in ``folder/.ablate-prepared`` (none there: None, silently); a folder
    given explicitly must hold a store (DataError naming ``key``). A store that does not match the
    files warns once and gives None; a corrupt one raises DataError.
    """
    if prepared is None:
        root = folder / STORE_DIR
        if not root.exists():
            return None
        if not (root / INDEX).exists():
            _warn_once(f"{root} has no {INDEX} (an interrupted prepare?); decoding the images of {folder} "
                       f"instead; run `ablate data prepare {folder}`")
            return None
    else:
        root = Path(prepared).expanduser().resolve()
        if not (root / INDEX).exists():
            raise DataError(f"{key}: {root} holds no prepared store (no {INDEX}); run "
                            f"`ablate data prepare {folder} --out {root}`")
    store = open_store(root)
    why = store.mismatch(files)
    if why is None:
        return store
    _warn_once(f"prepared store {root} is stale for {folder} ({why}); decoding the images instead; "
               f"re-run `ablate data prepare {folder}" + ("`" if prepared is None else f" --out {root}`"))
    return None


def _write_index(root: Path, folder: Path, tile: int, stride: int, images: list[StoredImage]) -> None:
    stats = [(e.name, e.bytes, e.mtime_ns) for e in images]
    raw = {"format": FORMAT, "tile": tile, "stride": stride, "source": str(folder),
           "fingerprint": fingerprint(stats, tile, stride),
           "images": [{"name": e.name, "bytes": e.bytes, "mtime_ns": e.mtime_ns, "height": e.size[0],
                       "width": e.size[1]} for e in images]}
    tmp = root / (INDEX + ".tmp")
    tmp.write_text(json.dumps(raw, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, root / INDEX)


Progress = Callable[[int, int, StoredImage, int], None]


def prepare_folder(folder: str | Path, out: str | Path | None = None, *, tile: int = DEFAULT_TILE,
                   stride: int | None = None, progress: Progress | None = None) -> PreparedStore:
    """Decode every image of ``folder`` once into a store at ``out`` (default ``folder/.ablate-prepared``).

    ``stride`` defaults to ``tile`` (no overlap). ``progress(k, n, entry, n_tiles)`` is called after
    each image. The store replaces any previous one only when complete: an interrupted prepare
    leaves no index, which the folder dataset treats as no store. Missing/empty folders, unreadable
    images and an unwritable or too small ``out`` raise DataError naming the path.
    """
    stride = tile if stride is None else stride
    if isinstance(tile, bool) or not isinstance(tile, int) or tile < 1:
        raise SpecError("tile", "an integer ≥ 1", tile)
    if isinstance(stride, bool) or not isinstance(stride, int) or not 1 <= stride <= tile:
        raise SpecError("stride", f"an integer in [1, tile = {tile}] (a larger stride would skip pixels)",
                        stride)
    src = Path(folder).expanduser().resolve()
    files = list_images(src, "FOLDER")
    root = src / STORE_DIR if out is None else Path(out).expanduser().resolve()
    need = 0
    for f in files:
        h, w = image_size(f)
        rows, th = tile_starts(h, tile, stride)
        cols, tw = tile_starts(w, tile, stride)
        need += len(rows) * len(cols) * th * tw * 3
    try:
        root.mkdir(parents=True, exist_ok=True)
        free = shutil.disk_usage(root).free
    except OSError as err:
        raise DataError(f"{root}: cannot create the prepared store here ({err.strerror or err})") from None
    if need > free:
        raise DataError(f"{root}: the prepared store needs {need / 1e9:.2f} GB, {free / 1e9:.2f} GB free")
    tmp = root / (TILES + ".tmp")
    images: list[StoredImage] = []
    try:
        # no index from here on: a prepare that stops half-way must not leave a valid-looking store
        (root / INDEX).unlink(missing_ok=True)
        with open(tmp, "wb") as fh:
            for k, f in enumerate(files):
                name, size, mtime = _stat(f)  # before decoding: an edit while we read shows as stale
                img = decode_image(f)
                h, w = img.shape[:2]
                rows, th = tile_starts(h, tile, stride)
                cols, tw = tile_starts(w, tile, stride)
                for r in rows:
                    for c in cols:
                        fh.write(np.ascontiguousarray(img[r: r + th, c: c + tw]).tobytes())
                entry = StoredImage(name, size, mtime, (h, w))
                images.append(entry)
                if progress is not None:
                    progress(k, len(files), entry, len(rows) * len(cols))
        os.replace(tmp, root / TILES)
        _write_index(root, src, tile, stride, images)
    except DataError:
        raise
    except OSError as err:
        raise DataError(f"{root}: cannot write the prepared store ({err.strerror or err})") from None
    finally:
        tmp.unlink(missing_ok=True)
    return open_store(root)
