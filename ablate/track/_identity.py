"""How a cell's MLflow run is named and tagged: one definition for `ablate run`, `ablate search` and
`ablate train`, so the same cell gets the same run name whichever command ran it.

    from ablate.track import cell_run_identity
    name, tags = cell_run_identity(cell, "i_ln")
    name   # "i_ln·swinir-tiny·sr-x2·s0"
    tags   # {"ablate.norm": "i_ln", "ablate.pairing": "…", "ablate.source.norm": "ablate 0.1.0", …}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from ablate.registry import provenance_tags

from ._names import Tag

if TYPE_CHECKING:
    from ablate.spec import CellSpec


def cell_run_name(cell: CellSpec, norm_label: str) -> str:
    """``<variant>·<backbone>·<task>·s<seed>``: what the MLflow UI lists for the cell's run."""
    return f"{norm_label}·{cell.backbone.label()}·{cell.task.label()}·s{cell.seed}"


def cell_run_identity(cell: CellSpec, norm_label: str,
                      extra_tags: Mapping[str, str] | None = None) -> tuple[str, dict[str, str]]:
    """The run name and the tags :meth:`Tracker.start_cell` gets for ``cell``.

    ``norm_label`` is the variant's label (``cell.norm_label()``, e.g. ``global_ln+rescale``).
    Tags: ``ablate.norm``, ``ablate.pairing`` (cells equal but for the norm share it) and
    ``ablate.source.<kind>`` (see :func:`ablate.registry.provenance_tags`), then ``extra_tags``
    (a search adds ``ablate.search``), which win over the others.
    """
    tags = {Tag.NORM: norm_label, Tag.PAIRING: cell.pairing_key,
            **provenance_tags(norm=cell.norm.name, backbone=cell.backbone.name, task=cell.task.name,
                              data=cell.data.name)}
    tags.update(extra_tags or {})
    return cell_run_name(cell, norm_label), tags


def impl_tags(provenance: Mapping[str, str]) -> dict[str, str]:
    """A cell's ``Trainer.provenance()`` as run tags (``ablate.impl.attention: fused``, …): how the run was
    computed — attention path, norm kernel, compile, precision, optimizer, where batches were degraded —
    which the cell id leaves out, since every path computes the same math within float rounding."""
    return {f"{Tag.IMPL}{key}": str(value)[:250] for key, value in provenance.items()}
