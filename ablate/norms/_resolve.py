"""Norm specs → a checked :class:`NormChoice` (no torch) → a buildable :class:`NormVariant`.

    from ablate.norms import check_norm, resolve_norm
    check_norm("group_norm", rescale=True).name        # "group_norm+rescale": validated, nothing imported
    variant = resolve_norm("group_norm", rescale=True)  # the same checks, then the classes (torch)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ablate.errors import SpecError
from ablate.params import check_params, split_spec
from ablate.registry import NORMS

from ._info import SITES, NormInfo, NormPreset

if TYPE_CHECKING:
    from ._base import Normalizer, NormVariant


@dataclass(frozen=True)
class NormChoice:
    """A norm spec checked against the registry's declarations: the variant label, the resolved
    rescale flag and what :func:`resolve_norm` builds from, before any normalizer class is imported."""

    name: str  # the variant label: "token_ln", "global_ln+rescale", "i_ln"
    normalizer: str  # registry key of the normalizer (a preset's base)
    rescale: bool
    params: Mapping[str, Any]  # checked, converted
    sites: Mapping[str, str]  # site -> normalizer key (a preset's and the spec's overrides)


def _info(key: str, where: str) -> NormInfo | NormPreset:
    """What ``key`` declares; a declared built-in's class is not imported (a plugin's module is)."""
    entry = NORMS.lookup(key, where)
    if isinstance(entry.info, NormInfo):
        return entry.info
    obj = entry.obj
    if isinstance(obj, NormPreset):
        return obj
    if isinstance(obj, type):
        from ._base import Normalizer  # a class registered in code: its module imported torch already

        if issubclass(obj, Normalizer):
            return NormInfo.of(obj)
    raise SpecError(where, "a Normalizer subclass or NormPreset registered under this key", key)


def check_norm(spec: str | Mapping[str, Any], rescale: bool | None = None, *, where: str = "norm") -> NormChoice:
    """Validate ``"global_ln"`` or ``{name: group_norm, groups: 8, rescale: true}`` without torch.

    ``rescale`` (the grid axis) overrides the mapping's own ``rescale``; None keeps the default
    (the preset's, or false). Raises :class:`SpecError` naming the key path on any bad value.
    """
    name, params = split_spec(spec, where, "norm")
    own_rescale = params.pop("rescale", None)
    if own_rescale is not None and not isinstance(own_rescale, bool):
        raise SpecError(f"{where}.rescale", "true or false", own_rescale)
    if rescale is not None and not isinstance(rescale, bool):
        raise SpecError("rescale", "true or false", rescale)
    sites_override = params.pop("sites", {})
    if not isinstance(sites_override, Mapping):
        raise SpecError(f"{where}.sites", "a mapping of site -> norm name", sites_override)
    asked = rescale if rescale is not None else own_rescale

    obj = _info(name, f"{where}.name" if isinstance(spec, Mapping) else where)
    if isinstance(obj, NormPreset):
        key, info, merged, want, sites = _apply_preset(obj, name, params, asked, where)
    else:
        key, info, merged, want, sites = name, obj, params, bool(asked or False), {}
    checked = check_params(info.name, info.params, merged, where, defaults=False)
    if want and info.sigma is None:
        raise SpecError("rescale", f"false for norm {name!r}: it divides by no σ, so there is nothing to "
                        "rescale by", True)
    for site, site_key in sites_override.items():
        if site not in SITES:
            raise SpecError(f"{where}.sites.{site}", f"a site name ({', '.join(SITES)})", site)
        sites[site] = site_key
    for site, site_key in sites.items():
        if isinstance(_info(site_key, f"{where}.sites.{site}"), NormPreset):
            raise SpecError(f"{where}.sites.{site}", "a normalizer, not a preset", site_key)
    label = name if isinstance(obj, NormPreset) or not want else f"{name}+rescale"
    return NormChoice(label, key, want, checked, sites)


def _apply_preset(preset: NormPreset, name: str, params: Mapping[str, Any], asked: bool | None,
                  where: str) -> tuple[str, NormInfo, dict[str, Any], bool, dict[str, str]]:
    """(normalizer key, its info, merged params, rescale flag, site overrides) of a preset; a preset
    fixes its rescale flag, so asking for the other value is an error."""
    base = _info(preset.normalizer, f"{where} (preset {name})")
    if isinstance(base, NormPreset):
        raise SpecError(f"{where} (preset {name})", "a normalizer, not a preset", preset.normalizer)
    want = preset.rescale if asked is None else bool(asked)
    if want != preset.rescale:
        raise SpecError("rescale", f"{str(preset.rescale).lower()} for preset {name!r}, which fixes it",
                        want, hint=f"use {preset.normalizer!r} to choose rescale freely")
    return preset.normalizer, base, {**preset.params, **params}, want, dict(preset.sites)


def _normalizer_class(key: str, where: str) -> type[Normalizer]:
    from ._base import Normalizer

    obj = NORMS.get(key)
    if not (isinstance(obj, type) and issubclass(obj, Normalizer)):
        raise SpecError(where, "a Normalizer subclass or NormPreset registered under this key", key)
    return obj


def resolve_norm(spec: str | Mapping[str, Any], rescale: bool | None = None, *,
                 where: str = "norm") -> NormVariant:
    """Turn ``"global_ln"`` or ``{name: group_norm, groups: 8, rescale: true}`` into a NormVariant.

    The checks of :func:`check_norm`, then the normalizer classes are imported (torch). ``rescale``
    (the grid axis) overrides the mapping's own ``rescale``; None keeps the default (the preset's,
    or false). Raises :class:`SpecError` naming the key path on any bad value.
    """
    from ._base import NormVariant

    choice = check_norm(spec, rescale, where=where)
    sites: dict[str, tuple[type[Normalizer], Mapping[str, Any]]] = {
        site: (_normalizer_class(key, f"{where}.sites.{site}"), {}) for site, key in choice.sites.items()}
    return NormVariant(choice.name, _normalizer_class(choice.normalizer, where), choice.rescale, choice.params,
                       sites)
