"""Test sets for ``ablate eval``: a dataset component whose validation images are scored whole.

    from ablate.data import eval_pairs, resolve_test_set
    ds = resolve_test_set({"name": "folder", "path": "/data/Set5/HR"})     # every image of the folder
    ds = resolve_test_set("skimage")                                        # coffee and chelsea, whole
    for key, lq, gt in eval_pairs(ds, "sr-x4", seed=1234):                  # one image at a time
        ...

The rule: a test set is any registered dataset; its *validation* images are the test images.

- ``skimage``: the images scikit-image ships that the default training split holds out (coffee,
  chelsea), used whole; ``{name: skimage, val: [astronaut, …]}`` picks others.
- ``folder``: every image in ``path`` (``val_fraction`` defaults to 0 here, not 0.1: a test set holds
  nothing out); ``val_path`` or an explicit ``val_fraction`` keep their training meaning.
- ``paired``: every LQ/GT pair of ``lq``/``gt``, likewise.

Images are read by the training reader (``ablate.data.read_image``): grayscale and palette images
become 3 equal channels; 16-bit grayscale is rounded to 8 bits (value · 255 / 65535, unless every
value fits in 8 bits), 16-bit RGB(A) keeps Pillow's high byte; alpha is composited on white.
Floating-point images are refused in one line naming the file. Sizes are cropped (bottom/right) to a
multiple of the task's scale, as published SR numbers are computed.
"""

from __future__ import annotations

from typing import Any

from ablate.errors import DataError
from ablate.params import split_spec

from ._base import Dataset, resolve_dataset

# datasets whose held-out split a test set turns off (every image is a test image), and the
# parameters that, when given, keep the training meaning of the split
_WHOLE_FOLDER = {"folder": ("val_path", "val_fraction"), "paired": ("val_lq", "val_gt", "val_fraction")}


def resolve_test_set(spec: Any, *, where: str = "eval.sets") -> Dataset:
    """A dataset component → the :class:`Dataset` whose ``val`` sources are the test images.

    SpecError for an unknown name or a bad parameter, DataError for a missing or empty folder.
    """
    if isinstance(spec, Dataset):
        return spec
    name, params = split_spec(spec, where, "dataset")
    keep_split = _WHOLE_FOLDER.get(name)
    if keep_split is not None and not any(k in params for k in keep_split):
        params["val_fraction"] = 0.0
    ds = resolve_dataset({"name": name, **params}, where=where)
    if not ds.val:
        raise DataError(f"{where}: dataset {name!r} has no test images")
    return ds
