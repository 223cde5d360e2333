"""Every registered backbone (built-ins and installed plugins) keeps the IRModel contract.

    pytest tests/testing/test_backbone_contracts.py

The published-size presets are checked with two residual groups of two blocks (their own width,
heads, window, upsampler and HAT's conv/overlap settings otherwise): 0.1-0.6 s per check on 2 idle
CPU cores, against 0.5-4 s at full depth (10-60 s on a busy machine); the full-depth models only
repeat the same blocks.
"""

from __future__ import annotations

import pytest

from ablate.registry import BACKBONES
from ablate.testing import check_backbone

# A shallower stack for the large presets; two groups keep per-group indexing (heads, …) covered.
SHALLOW = {"depths": [2, 2]}
LARGE = {"swinir", "swinir-light", "hat", "hat-mini", "drct", "drct-l"}


@pytest.mark.parametrize("key", BACKBONES.keys())
def test_backbone_contract(key: str) -> None:
    # i-LN exercises the site policy (affine embed/final norms) and σ-rescaled residuals
    model = check_backbone(key, norm="i_ln", params=SHALLOW if key in LARGE else None)
    assert model.scale == 2


@pytest.mark.parametrize("norm", ["batch_norm", "layer_scale", {"name": "group_norm", "groups": 4, "rescale": True}])
def test_backbone_contract_with_other_norms(norm: object) -> None:
    # batch statistics (and token_ln for the independence check), gate parameters (LayerScale, whose
    # gate is unused at the embed/final sites) and a grouped σ through both families
    check_backbone("swinir-tiny", norm=norm, scales=(2,))  # type: ignore[arg-type]
    check_backbone("hat-tiny", norm=norm, scales=(1,), size=(9, 7))  # type: ignore[arg-type]


def test_the_large_presets_are_all_known() -> None:
    # guards LARGE: a renamed preset would silently be checked at full depth (slow) or not at all
    assert LARGE <= set(BACKBONES.keys())
