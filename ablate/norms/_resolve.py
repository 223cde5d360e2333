from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ablate.errors import RegistryError, SpecError
from ablate.params import check_params, split_spec
from ablate.registry import NORMS

from ._base import SITES, Normalizer, NormPreset, NormVariant

NORMS.add(
    "i_ln",
    NormPreset(
        normalizer="global_ln",
        rescale=True,
        sites={"embed": "affine", "final": "affine"},
        description="i-LN preset: global_ln + input-adaptive rescale, affine-only embedding and final norms",
    ),
)


def _normalizer_class(key: str, where: str) -> type[Normalizer] | NormPreset:
    try:
        obj = NORMS.get(key)
    except RegistryError as err:
        raise SpecError(where, "a registered norm", key, hint=str(err)) from None
    if isinstance(obj, NormPreset):
        return obj
    if not (isinstance(obj, type) and issubclass(obj, Normalizer)):
        raise SpecError(where, "a Normalizer subclass or NormPreset registered under this key", key)
    return obj


def resolve_norm(spec: str | Mapping[str, Any], rescale: bool | None = None, *,
                 where: str = "norm") -> NormVariant:
    """Turn ``"global_ln"`` or ``{name: group_norm, groups: 8, rescale: true}`` into a NormVariant.

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

    obj = _normalizer_class(name, f"{where}.name" if isinstance(spec, Mapping) else where)
    if isinstance(obj, NormPreset):
        cls, merged, want, sites = _apply_preset(obj, name, params, asked, where)
    else:
        cls, merged, want, sites = obj, params, bool(asked or False), {}
    checked = check_params(cls.__name__, cls.PARAMS, merged, where, defaults=False)
    if want and cls.sigma is None:
        raise SpecError("rescale", f"false for norm {name!r}: it divides by no σ, so there is nothing to "
                        "rescale by", True)
    for site, key in sites_override.items():
        if site not in SITES:
            raise SpecError(f"{where}.sites.{site}", f"a site name ({', '.join(SITES)})", site)
        sites[site] = key
    label = name if isinstance(obj, NormPreset) or not want else f"{name}+rescale"
    return NormVariant(label, cls, want, checked, _site_classes(sites, where))


def _apply_preset(preset: NormPreset, name: str, params: Mapping[str, Any], asked: bool | None,
                  where: str) -> tuple[type[Normalizer], dict[str, Any], bool, dict[str, str]]:
    """(normalizer class, merged params, rescale flag, site overrides) of a preset; a preset fixes
    its rescale flag, so asking for the other value is an error."""
    base = _normalizer_class(preset.normalizer, f"{where} (preset {name})")
    assert not isinstance(base, NormPreset)
    want = preset.rescale if asked is None else bool(asked)
    if want != preset.rescale:
        raise SpecError("rescale", f"{str(preset.rescale).lower()} for preset {name!r}, which fixes it",
                        want, hint=f"use {preset.normalizer!r} to choose rescale freely")
    return base, {**preset.params, **params}, want, dict(preset.sites)


def _site_classes(sites: Mapping[str, str], where: str) -> dict[str, tuple[type[Normalizer], Mapping[str, Any]]]:
    out: dict[str, tuple[type[Normalizer], Mapping[str, Any]]] = {}
    for site, key in sites.items():
        sc = _normalizer_class(key, f"{where}.sites.{site}")
        if isinstance(sc, NormPreset):
            raise SpecError(f"{where}.sites.{site}", "a normalizer, not a preset", key)
        out[site] = (sc, {})
    return out
