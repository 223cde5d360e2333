"""``check_regularizer``: the contract every training regularizer keeps (built-in or plugin).

    from ablate.testing import check_regularizer
    check_regularizer("feature_kl", params={"weight": 1e-3})
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from ablate.params import Param, check_params
from ablate.regularizers import NoRegularizer, Regularizer, resolve_regularizer


class _ToyModel(nn.Module):
    """A tiny model with the probe-site layout of ablate's backbones: (B, 3, h, w) images in, residual
    blocks whose outputs are (B, h·w, C) token maps named ``g0.b{j}``, then ``final``."""

    def __init__(self, dim: int = 8, blocks: int = 3) -> None:
        super().__init__()
        self.embed = nn.Conv2d(3, dim, 3, padding=1)
        self.blocks = nn.ModuleList(_ToyBlock(dim) for _ in range(blocks))
        self.final_norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, 3)

    def probe_sites(self) -> dict[str, nn.Module]:
        return {**{f"g0.b{j}": block for j, block in enumerate(self.blocks)}, "final": self.final_norm}

    def forward(self, x: Tensor) -> Tensor:
        b, _, h, w = x.shape
        t = self.embed(x).flatten(2).transpose(1, 2)
        for block in self.blocks:
            t = block(t)
        return x + self.head(self.final_norm(t)).transpose(1, 2).reshape(b, 3, h, w)


class _ToyBlock(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.fc = nn.Linear(dim, dim)

    def forward(self, t: Tensor) -> Tensor:
        return t + torch.nn.functional.gelu(self.fc(t))


def check_regularizer(regularizer: str | Mapping[str, Any] | type[Regularizer], *,
                      params: Mapping[str, Any] | None = None, model: nn.Module | None = None,
                      size: tuple[int, int] = (6, 5), batch: int = 2, seed: int = 0) -> Regularizer:
    """Build ``regularizer``, attach it to ``model`` and check its contract; AssertionError if broken.

    ``regularizer`` is a registry key, a ``{name: ..., param: ...}`` mapping (resolved with
    :func:`ablate.regularizers.resolve_regularizer`) or a :class:`Regularizer` subclass (built with
    ``params``). ``model`` defaults to a tiny model with the probe sites of ablate's backbones; pass
    a backbone when the regularizer needs more of one. The regularizer must:

    - declare ``PARAMS`` as ``ablate.params.Param``s, ``weight`` among them (a number ≥ 0), and be
      built from its declared defaults; keep the ``weight`` it was given;
    - after a training forward pass, give ``value()``: a finite 0-dim floating tensor on the model's
      device that, with a weight > 0, passes a finite, non-zero gradient to the model's parameters;
    - ignore forward passes in eval mode under ``no_grad`` (probes and validation run those), and
      forget each pass once ``value()`` has read it: the value of a pass does not depend on either;
    - remove every hook it set on ``detach()``.

    Returns the regularizer (detached). The global torch RNG state is left as it was.
    """
    with torch.random.fork_rng(devices=[]):  # model inits must not advance the caller's RNG
        return _check_regularizer(regularizer, params, model, size, batch, seed)


def _check_regularizer(regularizer: Any, params: Mapping[str, Any] | None, model: nn.Module | None,
                       size: tuple[int, int], batch: int, seed: int) -> Regularizer:
    cls, given = _resolve(regularizer, params)
    where = f"regularizer {cls.__name__}"
    _check_class(cls, where)
    reg = cls(**given)
    _check(isinstance(reg.weight, float | int) and reg.weight == given.get("weight", reg.weight),
           f"{where}: weight is {reg.weight!r}, built with {given.get('weight')!r}")
    torch.manual_seed(seed)
    model = model if model is not None else _ToyModel()
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, 3, *size, generator=gen)
    other = 3.0 * torch.rand(batch, 3, *size, generator=gen)  # other features: a pass on it must not count
    hooks_before = _hook_count(model)
    reg.attach(model)
    try:
        model.train()
        value = _value_of_pass(reg, model, x, where)
        if reg.weight > 0:  # weight 0 only measures (none, or a regularizer switched off in a grid)
            _check_gradients(reg, model, x, where)
        _value_of_pass(reg, model, other, where)  # read: forgotten from here on
        model.eval()
        with torch.no_grad():
            model(other)  # what a probe or a validation pass does: must leave nothing behind
        model.train()
        again = _value_of_pass(reg, model, x, where)
        _check(torch.allclose(again, value, rtol=1e-5, atol=1e-7),
               f"{where}: value() of the same training pass changed from {float(value):.6g} to "
               f"{float(again):.6g} after a training pass that value() read and an eval-mode no_grad "
               "pass on other inputs: it must count training passes only and forget each once read")
    except AssertionError:
        raise
    except Exception as err:  # a crash inside the component is a broken contract too: say where
        raise AssertionError(f"{where}: raised {type(err).__name__}: {err}") from err
    finally:
        reg.detach()
    _check(_hook_count(model) == hooks_before,
           f"{where}: detach() left {_hook_count(model) - hooks_before} hook(s) on the model")
    return reg


def _resolve(regularizer: Any, params: Mapping[str, Any] | None) -> tuple[type[Regularizer], dict[str, Any]]:
    if isinstance(regularizer, type):
        if not issubclass(regularizer, Regularizer):
            raise AssertionError(f"check_regularizer: {regularizer.__name__} is not a Regularizer subclass")
        return regularizer, check_params(regularizer.__name__, regularizer.PARAMS, dict(params or {}), "params",
                                         defaults=False)
    if isinstance(regularizer, str):
        spec: Any = {"name": regularizer, **params} if params else regularizer
    elif isinstance(regularizer, Mapping):
        spec = {**regularizer, **(params or {})}
    else:
        raise TypeError(f"check_regularizer: expected a registry key, a mapping or a Regularizer subclass, "
                        f"got {regularizer!r}")
    return resolve_regularizer(spec, where="regularizer")


def _check_class(cls: type[Regularizer], where: str) -> None:
    _check(isinstance(cls.PARAMS, dict), f"{where}: PARAMS must be a dict name -> ablate.params.Param")
    for key, decl in cls.PARAMS.items():
        _check(isinstance(decl, Param), f"{where}: PARAMS[{key!r}] must be an ablate.params.Param, got {decl!r}")
    if cls is not NoRegularizer:
        weight = cls.PARAMS.get("weight")
        _check(weight is not None and weight.kind is float and weight.lo is not None and weight.lo >= 0,
               f"{where}: PARAMS must declare 'weight' as Param(<default>, float, ..., lo=0.0)")
    defaults = {key: decl.default for key, decl in cls.PARAMS.items()}
    try:  # the declared defaults must pass the declared validation and be accepted by the constructor
        cls(**check_params(cls.__name__, cls.PARAMS, defaults, f"{cls.__name__}.PARAMS"))
    except Exception as err:
        raise AssertionError(f"{where}: cannot be built with its declared parameter defaults "
                             f"{defaults}: {type(err).__name__}: {err}") from err


def _value_of_pass(reg: Regularizer, model: nn.Module, x: Tensor, where: str) -> Tensor:
    model.zero_grad(set_to_none=True)
    model(x)
    value = reg.value()
    _check(isinstance(value, Tensor) and value.dim() == 0 and value.is_floating_point(),
           f"{where}: value() must be a 0-dim floating tensor, got {value!r}")
    value = value.detach()
    _check(bool(torch.isfinite(value)), f"{where}: value() is not finite: {float(value)}")
    device = next(model.parameters()).device
    _check(value.device == device, f"{where}: value() is on {value.device}, the model on {device}")
    return value


def _check_gradients(reg: Regularizer, model: nn.Module, x: Tensor, where: str) -> None:
    model.zero_grad(set_to_none=True)
    model(x)
    value = reg.value()
    _check(value.requires_grad, f"{where}: value() carries no gradient (detached?): it cannot train the model")
    value.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    _check(bool(grads) and all(bool(torch.isfinite(g).all()) for g in grads),
           f"{where}: value() must give the model's parameters finite gradients")
    _check(any(bool(g.abs().sum() > 0) for g in grads), f"{where}: every gradient of value() is zero")
    model.zero_grad(set_to_none=True)


def _hook_count(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in model.modules())


def _check(cond: bool, message: str) -> None:
    if not cond:
        raise AssertionError(message)
