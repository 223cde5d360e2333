"""``ablate.testing.check_regularizer`` passes correct regularizers and catches each broken rule.

    pytest tests/testing/test_check_regularizer.py
"""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
import torch
from torch import Tensor, nn

from ablate.params import Param
from ablate.regularizers import Regularizer
from ablate.testing import check_regularizer


class BlockMeanSquare(Regularizer):
    """A correct regularizer, written plainly: the mean square of the block outputs of training passes."""

    PARAMS: ClassVar[dict[str, Param]] = {"weight": Param(1.0, float, "weight", lo=0.0)}

    def __init__(self, weight: float = 1.0) -> None:
        super().__init__(weight)
        self.terms: list[Tensor] = []
        self.handles: list[Any] = []

    def attach(self, model: nn.Module) -> None:
        blocks = [m for name, m in model.probe_sites().items() if name != "final"]  # type: ignore[operator]
        self.handles = [m.register_forward_hook(self.collect) for m in blocks]

    def collect(self, module: nn.Module, inputs: Any, out: Tensor) -> None:
        if module.training and torch.is_grad_enabled():
            self.terms.append(out.pow(2).mean())

    def value(self) -> Tensor:
        terms, self.terms = self.terms, []
        return torch.stack(terms).mean()

    def detach(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []


class Detached(BlockMeanSquare):
    def value(self) -> Tensor:
        return super().value().detach()


class CountsEvalPasses(BlockMeanSquare):
    def collect(self, module: nn.Module, inputs: Any, out: Tensor) -> None:
        self.terms.append(out.pow(2).mean())


class NeverForgets(BlockMeanSquare):
    def value(self) -> Tensor:
        return torch.stack(self.terms).mean()


class KeepsItsHooks(BlockMeanSquare):
    def detach(self) -> None:
        pass


class NoWeight(BlockMeanSquare):
    PARAMS: ClassVar[dict[str, Param]] = {}


class NotFinite(BlockMeanSquare):
    def value(self) -> Tensor:
        return super().value() * float("inf")


class Vector(BlockMeanSquare):
    def value(self) -> Tensor:
        return torch.stack([super().value()] * 2)


def test_a_correct_regularizer_passes_and_is_returned_detached() -> None:
    reg = check_regularizer(BlockMeanSquare, params={"weight": 0.5})
    assert isinstance(reg, BlockMeanSquare) and reg.weight == 0.5 and reg.handles == []


@pytest.mark.parametrize(("cls", "message"), [
    (Detached, "carries no gradient"),
    (CountsEvalPasses, "training passes only"),
    (NeverForgets, "forget each once read"),
    (KeepsItsHooks, r"left 3 hook\(s\)"),  # the toy model has 3 blocks
    (NoWeight, "must declare 'weight'"),
    (NotFinite, "not finite"),
    (Vector, "0-dim floating tensor"),
])
def test_each_broken_rule_is_caught_and_named(cls: type[Regularizer], message: str) -> None:
    with pytest.raises(AssertionError, match=message) as info:
        check_regularizer(cls)
    assert cls.__name__ in str(info.value)


def test_registry_keys_and_mappings_resolve_like_a_spec() -> None:
    assert check_regularizer({"name": "feature_kl", "stat": "token"}).stat == "token"  # type: ignore[attr-defined]
    with pytest.raises(Exception, match="did you mean 'feature_kl'"):
        check_regularizer("feture_kl")
