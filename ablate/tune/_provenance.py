from __future__ import annotations

from ablate.registry import BACKBONES, DATASETS, NORMS, TASKS
from ablate.spec import CellSpec


def provenance_tags(cell: CellSpec) -> dict[str, str]:
    """``ablate.source.<kind>`` = "distribution version" for each component the cell uses."""
    tags = {}
    for kind, reg, name in (("norm", NORMS, cell.norm.name), ("backbone", BACKBONES, cell.backbone.name),
                            ("task", TASKS, cell.task.name), ("data", DATASETS, cell.data.name)):
        try:
            e = reg.entry(name)
            tags[f"ablate.source.{kind}"] = f"{e.source} {e.version}".strip()
        except Exception:  # the cell will fail with its own, clearer error
            tags[f"ablate.source.{kind}"] = "unavailable"
    return tags
