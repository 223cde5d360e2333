"""Provenance tags: which distribution supplied each component of a cell.

    .venv/bin/python -m pytest tests/registry/test_provenance.py
"""

from __future__ import annotations

import ablate
from ablate.registry import NORMS, provenance_tags


def test_builtins_name_ablate_and_its_version() -> None:
    tags = provenance_tags(norm="token_ln", backbone="swinir-tiny", task="sr-x2", data="skimage")
    builtin = f"ablate {ablate.__version__}"
    assert tags == {"ablate.source.norm": builtin, "ablate.source.backbone": builtin,
                    "ablate.source.task": builtin, "ablate.source.data": builtin}


def test_a_key_that_does_not_resolve_is_unavailable() -> None:
    tags = provenance_tags(norm="no-such-norm", backbone="swinir-tiny", task="sr-x2", data="skimage")
    assert tags["ablate.source.norm"] == "unavailable"
    assert tags["ablate.source.backbone"] == f"ablate {ablate.__version__}"


def test_a_component_registered_in_code_names_its_module() -> None:
    class LocalNorm:
        """A norm defined outside any installed distribution."""

    LocalNorm.__module__ = "my_local_norms"
    NORMS.add("local_norm_for_provenance", LocalNorm)
    try:
        tags = provenance_tags(norm="local_norm_for_provenance", backbone="swinir-tiny", task="sr-x2",
                               data="skimage")
    finally:
        NORMS.unregister("local_norm_for_provenance")
    assert tags["ablate.source.norm"] == "my_local_norms"
