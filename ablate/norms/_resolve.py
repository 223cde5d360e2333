from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ablate.errors import RegistryError, SpecError
from ablate.registry import NORMS

from ._base import SITES, Normalizer, NormPreset, NormVariant, check_params

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
    if isinstance(spec, str):
        name, params = spec, {}
    elif isinstance(spec, Mapping):
        if "name" not in spec or not isinstance(spec["name"], str):
            raise SpecError(f"{where}.name", "a norm name", spec.get("name"))
        params = {k: v for k, v in spec.items() if k != "name"}
        name = spec["name"]
    else:
        raise SpecError(where, "a norm name or a mapping with 'name'", spec)

    own_rescale = params.pop("rescale", None)
    if own_rescale is not None and not isinstance(own_rescale, bool):
        raise SpecError(f"{where}.rescale", "true or false", own_rescale)
    if rescale is not None and not isinstance(rescale, bool):
        raise SpecError("rescale", "true or false", rescale)
    sites_override = params.pop("sites", {})
    if not isinstance(sites_override, Mapping):
        raise SpecError(f"{where}.sites", "a mapping of site -> norm name", sites_override)

    obj = _normalizer_class(name, f"{where}.name" if isinstance(spec, Mapping) else where)
    sites: dict[str, str] = {}
    if isinstance(obj, NormPreset):
        preset = obj
        base = _normalizer_class(preset.normalizer, f"{where} (preset {name})")
        assert not isinstance(base, NormPreset)
        cls = base
        merged = {**preset.params, **params}
        want = preset.rescale if rescale is None and own_rescale is None else bool(
            rescale if rescale is not None else own_rescale)
        if want != preset.rescale:
            raise SpecError("rescale", f"{str(preset.rescale).lower()} for preset {name!r}, which fixes it",
                            want, hint=f"use {preset.normalizer!r} to choose rescale freely")
        sites.update(preset.sites)
    else:
        cls = obj
        merged = params
        want = bool(rescale if rescale is not None else (own_rescale or False))
    checked = check_params(cls, merged, where)
    if want and cls.sigma is None:
        raise SpecError("rescale", f"false for norm {name!r}: it divides by no σ, so there is nothing to "
                        "rescale by", True)
    for site, key in sites_override.items():
        if site not in SITES:
            raise SpecError(f"{where}.sites.{site}", f"a site name ({', '.join(SITES)})", site)
        sites[site] = key
    site_classes: dict[str, tuple[type[Normalizer], Mapping[str, Any]]] = {}
    for site, key in sites.items():
        sc = _normalizer_class(key, f"{where}.sites.{site}")
        if isinstance(sc, NormPreset):
            raise SpecError(f"{where}.sites.{site}", "a normalizer, not a preset", key)
        site_classes[site] = (sc, {})
    label = name if isinstance(obj, NormPreset) or not want else f"{name}+rescale"
    return NormVariant(label, cls, want, checked, site_classes)
