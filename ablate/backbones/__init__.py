"""The IR-transformer model zoo: SwinIR, HAT and DRCT presets, any norm variant, any input size.

    import torch
    from ablate.backbones import build_backbone, validate_backbone
    from ablate.norms import resolve_norm
    validate_backbone({"name": "swinir-tiny", "embed_dim": 64})
    model = build_backbone({"name": "swinir-tiny", "embed_dim": 64}, resolve_norm("i_ln"), scale=2)
    print(model(torch.rand(2, 3, 24, 24)).shape, model.num_parameters())   # (2, 3, 48, 48)

Presets (``BACKBONES.keys()``): swinir-tiny, swinir-light, swinir, hat-tiny, hat-mini, hat, drct-tiny,
drct, drct-l. Every hyperparameter of a preset can be overridden in the spec (``embed_dim``, ``depths``,
``num_heads``, ``window_size``, ``mlp_ratio``, ``upsampler``, ``num_feat``, ``qkv_bias``, ``stdnorm``;
HAT adds ``compress_ratio``, ``squeeze_factor``, ``conv_scale``, ``overlap_ratio``; DRCT adds ``gc``).

A built-in backbone is one ``BACKBONES.add(key, BackbonePreset(...))`` in ``_presets`` (its family class
named by import path, so validating it imports no torch). A plugin backbone registers a factory ``factory(norm, scale, **params) -> IRModel`` in the
``ablate.backbones`` entry-point group; a ``configure(params, where)`` method, if it has one, is used
to validate params, otherwise its signature is.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast

from ablate.errors import AblateError, SpecError
from ablate.lazy import lazy_exports
from ablate.norms import resolve_norm
from ablate.params import Param, check_params, split_spec
from ablate.registry import BACKBONES

from ._config import SCALES, BackboneConfig, DRCTConfig, HATConfig
from ._presets import BackbonePreset

if TYPE_CHECKING:
    from ablate.norms import NormVariant

    from ._common import IRModel, ResidualGroup, ResidualGroupModel, attention_kernel, attention_path
    from .drct import DRCT
    from .hat import HAT
    from .swinir import SwinIR

__all__ = [
    "DRCT",
    "HAT",
    "BackboneConfig",
    "BackbonePreset",
    "DRCTConfig",
    "HATConfig",
    "IRModel",
    "ResidualGroup",
    "ResidualGroupModel",
    "SwinIR",
    "attention_kernel",
    "attention_path",
    "build_backbone",
    "validate_backbone",
]


def _split(spec: Any, where: str) -> tuple[str, dict[str, Any], str]:
    """(name, params, key path of the name) from a str, a mapping or a Component."""
    name, params = split_spec(spec, where, "backbone")
    return name, params, f"{where}.name" if isinstance(spec, Mapping) else where


def _factory(name: str, where: str) -> Any:
    return BACKBONES.lookup(name, where).obj


def _check_params(factory: Any, name: str, params: dict[str, Any], where: str) -> None:
    configure = getattr(factory, "configure", None)
    if callable(configure):
        configure(params, where)
        return
    declared = _signature_params(factory)
    if declared is not None:
        check_params(f"backbone {name!r}", declared, params, where, defaults=False)


def _signature_params(factory: Any) -> dict[str, Param] | None:
    """A plugin factory's keyword parameters (any value: the factory checks its own); None when its
    signature cannot be read (a builtin or C callable) or takes ``**kwargs``."""
    try:
        sig = inspect.signature(factory)
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values()):
        return None
    return {p.name: Param(None if p.default is p.empty else p.default, object, nullable=True)
            for p in sig.parameters.values() if p.name not in ("norm", "scale")}


def validate_backbone(spec: Any, *, where: str = "backbone") -> None:
    """Check a backbone spec without building it: known preset, known params, right types.

    Raises :class:`SpecError` with the key path (``backbone.depths: expected …, got …``).
    """
    name, params, name_path = _split(spec, where)
    _check_params(_factory(name, name_path), name, params, where)


def build_backbone(spec: Any, norm: NormVariant | str | Mapping[str, Any], scale: int, *,
                   where: str = "backbone") -> IRModel:
    """Build the backbone ``spec`` (name, mapping or Component) with norm variant ``norm``.

    ``norm`` is normally a resolved :class:`NormVariant`; a norm spec is resolved for convenience.
    ``scale`` ∈ {1, 2, 3, 4}: 1 restores at the same size (denoising, JPEG), else super-resolves.
    """
    if isinstance(scale, bool) or scale not in SCALES:
        raise SpecError("scale", f"one of {', '.join(map(str, SCALES))}", scale)
    from torch import nn

    from ablate.norms import NormVariant

    if not isinstance(norm, NormVariant):
        norm = resolve_norm(norm)
    name, params, name_path = _split(spec, where)
    factory = _factory(name, name_path)
    _check_params(factory, name, params, where)
    model = factory(norm=norm, scale=scale, **params)
    if not isinstance(model, nn.Module) or not hasattr(model, "probe_sites"):
        raise AblateError(f"backbone {name!r}: its factory returned {type(model).__name__}, not an IRModel")
    return cast("IRModel", model)

# the model code imports torch: loaded on first use, so validating a spec does not
__getattr__, __dir__ = lazy_exports(__name__, {
    "IRModel": "._common", "ResidualGroup": "._common", "ResidualGroupModel": "._common",
    "attention_kernel": "._common", "attention_path": "._common",
    "DRCT": ".drct", "HAT": ".hat", "SwinIR": ".swinir"})
BACKBONES.declare_package(__name__)
