"""Tests of the ScaleNorm plugin: ablate's contract checks plus the formula.

    pytest plugins/ablate-scalenorm/tests
"""

from __future__ import annotations

import math

import pytest
import torch
from ablate_scalenorm import ScaleNorm

from ablate.errors import SpecError
from ablate.norms import resolve_norm
from ablate.registry import NORMS
from ablate.testing import check_norm


@pytest.mark.parametrize("rescale", [False, True])
def test_contract_through_the_registry(rescale: bool) -> None:
    variant = check_norm("scale_norm", rescale=rescale)
    assert variant is not None and variant.normalizer is ScaleNorm


def test_contract_of_the_class_with_params() -> None:
    check_norm(ScaleNorm, dim=12, rescale=True, params={"eps": 1e-6})


def test_registered_with_provenance() -> None:
    entry = NORMS.entry("scale_norm")
    assert entry.obj is ScaleNorm
    assert entry.source == "ablate-scalenorm"
    assert entry.version == "0.1.0"
    assert entry.description.startswith("ScaleNorm per token")


def test_formula_and_sigma() -> None:
    torch.manual_seed(0)
    dim = 8
    norm = resolve_norm("scale_norm", rescale=True)(dim, site="ffn")
    assert float(norm.g.detach()) == pytest.approx(math.sqrt(dim))
    with torch.no_grad():
        norm.g.fill_(1.7)
    x = torch.randn(2, 5, dim) * 3 + 1
    y, sigma = norm.normalize(x)
    length = x.pow(2).sum(-1, keepdim=True).sqrt()
    torch.testing.assert_close(y, 1.7 * x / length)
    torch.testing.assert_close(sigma, length / math.sqrt(dim))
    # every output token has L2 norm g, whatever the input token's scale
    torch.testing.assert_close(y.norm(dim=-1), torch.full((2, 5), 1.7))
    # rescale: x + σ · f(norm(x))
    out = norm.residual(x, lambda t: 2 * t)
    torch.testing.assert_close(out, x + sigma * 2 * y)


def test_at_init_divides_by_the_rms() -> None:
    x = torch.randn(3, 4, 16)
    y, _ = ScaleNorm(16).normalize(x)
    torch.testing.assert_close(y, x / x.pow(2).mean(-1, keepdim=True).sqrt())


def test_zero_token_stays_finite() -> None:
    x = torch.zeros(1, 3, 4)
    assert torch.isfinite(ScaleNorm(4)(x)).all()


def test_bad_parameter_is_a_spec_error() -> None:
    with pytest.raises(SpecError, match="norm.eps"):
        resolve_norm({"name": "scale_norm", "eps": "tiny"})
