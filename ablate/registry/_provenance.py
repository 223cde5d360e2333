"""Where each component of a cell came from, as the tags a cell's MLflow run carries.

    from ablate.registry import provenance_tags
    provenance_tags(norm="token_ln", backbone="swinir-tiny", task="sr-x2", data="skimage")
    # {"ablate.source.norm": "ablate 0.1.0", ..., "ablate.source.data": "ablate 0.1.0"}

Takes component keys, not a ``CellSpec``: ``ablate.spec`` imports this package, so this package does
not import ``ablate.spec``.
"""

from __future__ import annotations

from ._registry import BACKBONES, DATASETS, NORMS, TASKS


def provenance_tags(*, norm: str, backbone: str, task: str, data: str) -> dict[str, str]:
    """``ablate.source.<kind>`` = ``"<distribution> <version>"`` for each registry key (``ablate 0.1.0``
    for a built-in, the plugin's distribution otherwise); ``"unavailable"`` for a key that does not resolve."""
    tags = {}
    for kind, reg, key in (("norm", NORMS, norm), ("backbone", BACKBONES, backbone), ("task", TASKS, task),
                           ("data", DATASETS, data)):
        try:
            e = reg.entry(key)
            tags[f"ablate.source.{kind}"] = f"{e.source} {e.version}".strip()
        except Exception:  # the cell will fail with its own, clearer error
            tags[f"ablate.source.{kind}"] = "unavailable"
    return tags
