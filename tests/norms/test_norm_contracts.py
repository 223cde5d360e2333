"""Every registered norm variant (built-ins and installed plugins) keeps the Normalizer contract.

    pytest tests/norms/test_norm_contracts.py

New variants are tested for free: the cases come from ``NORMS.keys()``.
"""

from __future__ import annotations

import pytest

from ablate.norms import Normalizer, NormPreset
from ablate.registry import NORMS
from ablate.testing import check_norm


def _cases() -> list[tuple[str, bool | None]]:
    cases: list[tuple[str, bool | None]] = []
    for key in NORMS.keys():
        obj = NORMS.get(key)
        if isinstance(obj, NormPreset):  # a preset fixes its own rescale
            cases.append((key, None))
        else:
            # rescale=True on a normalizer without σ checks that the rescale is refused
            cases += [(key, False), (key, True)]
    return cases


@pytest.mark.parametrize(("key", "rescale"), _cases(), ids=lambda v: str(v))
def test_norm_contract(key: str, rescale: bool | None) -> None:
    variant = check_norm(key, rescale=rescale)
    obj = NORMS.get(key)
    if rescale and isinstance(obj, type) and issubclass(obj, Normalizer) and obj.sigma is None:
        assert variant is None  # refused, as it must be
    else:
        assert variant is not None
        if rescale is not None:
            assert variant.rescale is rescale


@pytest.mark.parametrize("key", ["group_norm", "global_ln", "batch_norm"])
def test_norm_contract_other_shapes(key: str) -> None:
    # another channel count, a single-token map and a square map: no hidden assumptions on L or C
    check_norm(key, dim=24, size=(1, 1), batch=2)
    check_norm(key, dim=8, size=(4, 4), rescale=True)


def test_batch_norm_eval_with_batch_statistics() -> None:
    check_norm("batch_norm", params={"eval_stats": "batch"}, rescale=True)


def test_every_builtin_is_covered() -> None:
    # guards the parametrization itself: an empty registry would make the contract tests vacuous
    keys = set(NORMS.keys())
    assert {"token_ln", "global_ln", "rms_norm", "batch_norm", "instance_norm", "group_norm", "layer_scale",
            "rezero", "dyt", "affine", "none", "i_ln"} <= keys
