"""The Dataset base class, image sources and :func:`resolve_dataset`.

    from ablate.data import resolve_dataset
    ds = resolve_dataset({"name": "folder", "path": "~/data/DIV2K_HR", "val_fraction": 0.05})
    gt, lq = ds.train[0].load()          # (H, W, 3) uint8, and None unless the dataset is paired

A dataset is two lists of sources (train, val). Each source knows its GT size from the file
header and loads 8-bit RGB arrays on demand (cached per process). HR-only datasets are degraded
on the fly by the task; paired datasets (``paired = True``) bring their own LQ images.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from ablate.errors import SpecError
from ablate.params import Param, check_params, split_spec
from ablate.registry import DATASETS

from ._io import read_image
from ._prepared import TiledImage


@dataclass(frozen=True)
class Source:
    """One training/validation image (or LQ/GT pair): a key for messages, its GT (H, W), and a loader.

    ``tiles``: the same image in a prepared store; training patches are read from it instead of
    decoding the file (validation always loads the file).
    """

    key: str
    size: tuple[int, int]
    loader: Callable[[], tuple[np.ndarray, np.ndarray | None]] = field(compare=False, repr=False)
    lq_size: tuple[int, int] | None = None
    lq_key: str | None = None
    tiles: TiledImage | None = field(default=None, compare=False, repr=False)

    def load(self) -> tuple[np.ndarray, np.ndarray | None]:
        """(gt (H, W, 3) uint8, lq (h, w, 3) uint8 or None); read-only arrays, cached."""
        return self.loader()


# module-level loaders (bound with functools.partial, not lambdas) keep sources picklable
def _load_file(path: Path) -> tuple[np.ndarray, None]:
    return read_image(path), None


def _load_pair(gt: Path, lq: Path) -> tuple[np.ndarray, np.ndarray]:
    return read_image(gt), read_image(lq)


def file_source(path: Path, size: tuple[int, int]) -> Source:
    return Source(str(path), size, functools.partial(_load_file, path))


def pair_source(gt: Path, gt_size: tuple[int, int], lq: Path, lq_size: tuple[int, int]) -> Source:
    return Source(str(gt), gt_size, functools.partial(_load_pair, gt, lq), lq_size, str(lq))


class Dataset:
    """Train and validation image sources.

    Subclasses set ``name`` (the registry key), ``PARAMS`` and ``paired``, and fill ``self.train``
    and ``self.val`` in ``__init__`` (after calling ``super().__init__``).
    """

    name: ClassVar[str] = ""
    PARAMS: ClassVar[dict[str, Param]] = {}
    paired: ClassVar[bool] = False  # sources carry their own LQ images; the task's degrade is skipped

    def __init__(self, _where: str | None = None, **params: Any) -> None:
        self._where = self.name if _where is None else _where
        self._given = dict(params)
        self.params: dict[str, Any] = check_params(f"dataset {self.name!r}", self.PARAMS, params, self._where)
        self.train: list[Source] = []
        self.val: list[Source] = []

    def key(self, param: str) -> str:
        """The spec key path of one parameter, for messages (``data.path``)."""
        return f"{self._where}.{param}" if self._where else param

    def describe(self) -> dict[str, Any]:
        """Plain values only (JSON/YAML/MLflow-safe)."""
        return {
            "dataset": self.name,
            "params": {k: v for k, v in self.params.items()},
            "paired": self.paired,
            "train": [s.key for s in self.train] if len(self.train) <= 32 else len(self.train),
            "val": [s.key for s in self.val] if len(self.val) <= 32 else len(self.val),
        }

    def __repr__(self) -> str:
        return f"{type(self).__name__}(train={len(self.train)}, val={len(self.val)})"


def resolve_dataset(spec: Any, *, where: str = "data") -> Dataset:
    """``"skimage"``, ``{name: folder, path: DIR}`` or a ``Component`` → a :class:`Dataset`.

    Unknown names and bad parameters raise :class:`SpecError`; missing, empty or unreadable folders
    and unmatched pairs raise :class:`DataError` naming the path. A Dataset is returned unchanged.
    """
    if isinstance(spec, Dataset):
        return spec
    name, params = split_spec(spec, where, "dataset")
    name_path = f"{where}.name" if not isinstance(spec, str) else where
    cls = DATASETS.lookup(name, name_path).obj
    if not (isinstance(cls, type) and issubclass(cls, Dataset)):
        raise SpecError(name_path, "a Dataset subclass registered under this key", name)
    return cls(_where=where, **params)
