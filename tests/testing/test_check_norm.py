"""``ablate.testing.check_norm`` passes correct normalizers and catches each broken rule.

    pytest tests/testing/test_check_norm.py
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import Tensor, nn

from ablate.norms import Normalizer, resolve_norm
from ablate.norms._normalizers import GlobalLayerNorm, TokenLayerNorm
from ablate.params import Param
from ablate.testing import check_norm


class SampleNorm(Normalizer):
    """A correct per-image normalizer, written plainly (the base of the broken ones below)."""

    sigma = "sample"

    def __init__(self, dim: int, *, rescale: bool = False) -> None:
        super().__init__(dim, rescale=rescale)
        self.weight = nn.Parameter(torch.ones(dim))

    def stats(self, x: Tensor) -> tuple[Tensor, Tensor]:
        mean = x.mean(dim=(1, 2), keepdim=True)
        return mean, (x - mean).pow(2).mean(dim=(1, 2), keepdim=True).add(1e-5).sqrt()

    def normalize(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        mean, sigma = self.stats(x)
        return (x - mean) / sigma * self.weight, sigma


class DetachedSigma(SampleNorm):
    def normalize(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        y, sigma = super().normalize(x)
        return y, sigma.detach()


class SigmaWrongShape(SampleNorm):
    def normalize(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        y, sigma = super().normalize(x)
        return y, sigma.expand(-1, 1, x.shape[2])  # (B, 1, C) while declaring "sample" (B, 1, 1)


class ResidualIgnoresSigma(SampleNorm):
    def residual(self, x: Tensor, branch: Any) -> Tensor:
        return x + branch(self(x))


class ResidualDetachesSigma(SampleNorm):
    def residual(self, x: Tensor, branch: Any) -> Tensor:
        if not self.rescale:
            return super().residual(x, branch)
        y, sigma = self.normalize(x)
        return x + branch(y) * sigma.detach()  # the value is right, the gradient is not


class SecretlyBatchDependent(SampleNorm):
    def stats(self, x: Tensor) -> tuple[Tensor, Tensor]:
        mean = x.mean(dim=(0, 1, 2), keepdim=True).expand(x.shape[0], 1, 1)
        return mean, (x - mean).pow(2).mean(dim=(1, 2), keepdim=True).add(1e-5).sqrt()


class SecretlyTrainEvalDiffer(SampleNorm):
    def normalize(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        y, sigma = super().normalize(x)
        return (y if self.training else 0.5 * y), sigma


class DropsAToken(SampleNorm):
    def normalize(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        y, sigma = super().normalize(x)
        return y[:, 1:], sigma


class Crashes(SampleNorm):
    def normalize(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        return x.reshape(-1, 11), None


class UnusedParameter(SampleNorm):
    def __init__(self, dim: int, *, rescale: bool = False) -> None:
        super().__init__(dim, rescale=rescale)
        self.bias = nn.Parameter(torch.zeros(dim))  # never used: gets no gradient


class NoGradToInput(SampleNorm):
    def normalize(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        y, sigma = super().normalize(x.detach())
        return y, sigma


class NaNs(SampleNorm):
    def normalize(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        y, sigma = super().normalize(x)
        return torch.log(y) * self.weight, sigma  # log of negative values


class AcceptsRescaleWithoutSigma(Normalizer):
    """Divides by nothing, yet switches rescale on behind the base class's back."""

    def __init__(self, dim: int, *, rescale: bool = False) -> None:
        super().__init__(dim)
        self.rescale = rescale

    def normalize(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        return x, None


class GateEverywhere(SampleNorm):
    """A residual gate, without an at_site override: its gate is dead at the embed/final sites."""

    def __init__(self, dim: int, *, rescale: bool = False) -> None:
        super().__init__(dim, rescale=rescale)
        self.gamma = nn.Parameter(torch.full((dim,), 0.1))

    def gate(self, out: Tensor) -> Tensor:
        return out * self.gamma


class BadDefault(SampleNorm):
    PARAMS = {"momentum": Param("fast", float)}


class BadSigmaKind(SampleNorm):
    sigma = "pixel"  # type: ignore[assignment]


class LosesDtype(SampleNorm):
    def normalize(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        y, sigma = super().normalize(x.float())
        return y, sigma


def test_a_correct_normalizer_passes() -> None:
    variant = check_norm(SampleNorm, rescale=True)
    assert variant is not None and variant.normalizer is SampleNorm and variant.rescale
    check_norm(SampleNorm, dim=5, size=(3, 3), batch=2)
    check_norm(GateEverywhere, sites=("attn", "ffn"))  # the gate is fine where there is a branch


@pytest.mark.parametrize(("cls", "rescale", "message"), [
    (DetachedSigma, True, "σ is detached"),
    (SigmaWrongShape, True, r"σ has shape \(3, 1, 16\), but sigma='sample' declares"),
    (ResidualIgnoresSigma, True, r"residual\(x, f\) != x \+ gate\(σ · f\(norm\(x\)\)\)"),
    (ResidualDetachesSigma, True, "gradients must flow through σ"),
    (SecretlyBatchDependent, False, "declares batch_dependent=False, but in train mode the output for sample 0"),
    (SecretlyTrainEvalDiffer, False, "declares train_eval_differ=False"),
    (DropsAToken, False, r"norm\(x\) has shape \(3, 34, 16\) .* the shape must be kept"),
    (UnusedParameter, False, "'bias' gets? no gradient"),
    (NoGradToInput, False, r"no gradient reaches the input through norm\(x\)"),
    (Crashes, False, "at site 'embed' .*raised RuntimeError: shape '\\[-1, 11\\]' is invalid"),
    (NaNs, False, "is not finite in float32"),
    (AcceptsRescaleWithoutSigma, False, "declares sigma=None .* yet accepted rescale=True"),
    (GateEverywhere, False, r"at site 'embed' .*parameter\(s\) 'gamma' get no gradient through forward\(\)"),
    (BadDefault, False, r"cannot be built with its declared parameter defaults \{'momentum': 'fast'\}"),
    (BadSigmaKind, False, "sigma = 'pixel', expected None or one of token"),
    (LosesDtype, False, "returned torch.float32 for a bfloat16 input"),
])
def test_each_broken_rule_is_caught(cls: type[Normalizer], rescale: bool, message: str) -> None:
    with pytest.raises(AssertionError, match=message) as info:
        check_norm(cls, rescale=rescale)
    assert cls.__name__ in str(info.value)  # the message names the component and the site
    assert "at site" in str(info.value) or "sigma" in str(info.value) or "defaults" in str(info.value)


def test_accepts_keys_mappings_variants_and_classes() -> None:
    assert check_norm("token_ln").name == "token_ln"  # type: ignore[union-attr]
    assert check_norm({"name": "group_norm", "groups": 2}).params == {"groups": 2}  # type: ignore[union-attr]
    assert check_norm("group_norm", params={"groups": 8}).params == {"groups": 8}  # type: ignore[union-attr]
    assert check_norm(resolve_norm("global_ln"), rescale=True).rescale  # type: ignore[union-attr]
    assert check_norm(TokenLayerNorm, params={"eps": 1e-3}).params == {"eps": 1e-3}  # type: ignore[union-attr]
    assert check_norm(GlobalLayerNorm, rescale=True) is not None


def test_rescale_without_sigma_returns_none_after_checking_the_refusal() -> None:
    assert check_norm("dyt", rescale=True) is None
    assert check_norm(resolve_norm("rezero"), rescale=True) is None
    with pytest.raises(AssertionError, match="accepted rescale=True"):
        check_norm(AcceptsRescaleWithoutSigma, rescale=True)


def test_bad_arguments() -> None:
    with pytest.raises(TypeError, match="expected a registry key"):
        check_norm(42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown site 'atn'"):
        check_norm("token_ln", sites=("atn",))


def test_leaves_the_global_rng_alone() -> None:
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    check_norm("layer_scale", rescale=True)
    assert torch.equal(torch.random.get_rng_state(), before)
