"""Training data: image sources, seeded patch sampling, validation and probe batches.

    from ablate.data import PairSampler, resolve_dataset, validation_pairs
    ds = resolve_dataset("skimage")                       # or {name: folder, path: DIR}
    sampler = PairSampler(ds, "sr-x2", patch_size=48, batch_size=4, seed=0)
    lq, gt = sampler.batch(step=0)                        # a pure function of (seed, step)
    pairs = validation_pairs(ds, "sr-x2", size=96, seed=0)

Built-in datasets: ``skimage`` (the RGB images scikit-image ships, offline; the default),
``folder`` (HR images, degraded on the fly by the task), ``paired`` (LQ/GT folders matched by stem).
Test sets (``ablate eval``): :func:`resolve_test_set` (a dataset whose validation images are the
test images; a folder's every image) and :func:`eval_pairs` (whole images, one at a time).
``ablate data prepare FOLDER`` (:func:`prepare_folder`) decodes a folder once into a memory-mapped
store that the ``folder`` dataset then samples training patches from (the same batches, no decoding).
Missing, empty or unreadable folders/files and unmatched pairs raise :class:`ablate.errors.DataError`.
A built-in dataset is added in one place, ``@DATASETS.register("key")`` on its class in a module of
this package. Importing this package imports no torch (the CLI validates datasets without it); the
sampler, which makes tensors, loads on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ablate.lazy import lazy_exports
from ablate.registry import DATASETS

from ._base import Dataset, Source, resolve_dataset
from ._folder import FolderDataset, PairedDataset
from ._io import IMAGE_EXTS, clear_cache, read_image
from ._prepared import PreparedStore, StoredImage, TiledImage, open_store, prepare_folder
from ._skimage import SKIMAGE_IMAGES, SkimageDataset, available_skimage_images, load_skimage
from ._testsets import resolve_test_set

if TYPE_CHECKING:
    from ._sampler import CutBatch, PairSampler, crop_pair, eval_pairs, probe_batch, validation_pairs

__all__ = [
    "IMAGE_EXTS",
    "SKIMAGE_IMAGES",
    "CutBatch",
    "Dataset",
    "FolderDataset",
    "PairSampler",
    "PairedDataset",
    "PreparedStore",
    "SkimageDataset",
    "Source",
    "StoredImage",
    "TiledImage",
    "available_skimage_images",
    "clear_cache",
    "crop_pair",
    "eval_pairs",
    "load_skimage",
    "open_store",
    "prepare_folder",
    "probe_batch",
    "read_image",
    "resolve_dataset",
    "resolve_test_set",
    "validation_pairs",
]

# torch at module level: imported on first use
__getattr__, __dir__ = lazy_exports(__name__, {name: "._sampler" for name in (
    "CutBatch", "PairSampler", "crop_pair", "eval_pairs", "probe_batch", "validation_pairs")})
DATASETS.declare_package(__name__)
