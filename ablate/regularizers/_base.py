"""The regularizer contract, the ``none`` default, and resolving a ``train.regularizer`` value.

    from ablate.regularizers import build_regularizer
    reg = build_regularizer({"name": "feature_kl", "weight": 1e-4})   # None for "none"
    reg.attach(model)                       # once, before training
    loss = data_loss + reg.weight * reg.value()   # after each training forward pass
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from ablate.errors import SpecError
from ablate.params import Param, check_params, split_spec
from ablate.registry import REGULARIZERS

# The weight every regularizer declares: what its value is multiplied by in the training loss.
WEIGHT_DOC = "the term's weight in the training loss (0 measures it without training on it)"


class Regularizer(ABC):
    """Base class of every training regularizer: a penalty computed during the training forward pass.

    The trainer builds one per cell from ``train.regularizer`` (``{name: ..., weight: ..., <params>}``),
    calls :meth:`attach` once before training, and after each training forward pass adds
    ``weight · value()`` to the data loss (with weight 0 it only reports ``value()``, as ``train/reg``).
    Subclasses declare their constructor's keyword parameters in ``PARAMS`` (``weight`` included),
    observe the model with hooks set in :meth:`attach`, and must ignore forward passes that are not
    training ones (probes and validation run in eval mode under ``no_grad``).
    """

    # accepted constructor parameters (keyword arguments of __init__, same defaults)
    PARAMS: ClassVar[dict[str, Param]] = {"weight": Param(1.0, float, WEIGHT_DOC, lo=0.0)}

    def __init__(self, weight: float = 1.0) -> None:
        self.weight = weight

    @abstractmethod
    def attach(self, model: nn.Module) -> None:
        """Start observing ``model``'s training forward passes (register hooks); called once, before training."""

    @abstractmethod
    def value(self) -> Tensor:
        """The unweighted penalty of the training forward pass just run: a finite 0-dim float tensor on
        the model's device that carries gradients to the model; forgets what that pass left behind."""

    @abstractmethod
    def detach(self) -> None:
        """Stop observing the model (remove every hook :meth:`attach` set); called when training ends."""


@REGULARIZERS.register("none")
class NoRegularizer(Regularizer):
    """No regularizer: the data loss alone (the default; the trainer attaches nothing and adds nothing)."""

    PARAMS: ClassVar[dict[str, Param]] = {}

    def __init__(self) -> None:
        super().__init__(weight=0.0)

    def attach(self, model: nn.Module) -> None:
        return None

    def value(self) -> Tensor:
        return torch.zeros(())

    def detach(self) -> None:
        return None


def _regularizer_class(name: str, where: str) -> type[Regularizer]:
    obj = REGULARIZERS.lookup(name, where).obj
    if not (isinstance(obj, type) and issubclass(obj, Regularizer)):
        raise SpecError(where, "a Regularizer subclass registered under this key", name)
    return obj


def resolve_regularizer(spec: str | Mapping[str, Any] | Any, *, where: str = "train.regularizer",
                        ) -> tuple[type[Regularizer], dict[str, Any]]:
    """``"feature_kl"`` or ``{name: feature_kl, weight: 1e-4}`` → (its class, the given params, checked).

    The params are those written (converted to their declared types, defaults not filled in), so a
    spec's canonical form is what its author wrote. SpecError naming ``where`` for an unknown name
    (with did-you-mean) or an invalid parameter.
    """
    name, params = split_spec(spec, where, "regularizer")
    cls = _regularizer_class(name, f"{where}.name" if isinstance(spec, Mapping) else where)
    if cls is NoRegularizer and params:  # e.g. a grid of train.regularizer.weight over the default
        raise SpecError(f"{where}.{next(iter(params))}", "no parameters for regularizer 'none' (the default)",
                        hint="name one first, e.g. train: {regularizer: {name: feature_kl}}")
    return cls, check_params(f"regularizer {name!r}", cls.PARAMS, params, where, defaults=False)


def build_regularizer(spec: str | Mapping[str, Any] | Any, *, where: str = "train.regularizer",
                      ) -> Regularizer | None:
    """The regularizer a ``train.regularizer`` value names, ready to attach; None for ``none``."""
    cls, params = resolve_regularizer(spec, where=where)
    return None if cls is NoRegularizer else cls(**params)
