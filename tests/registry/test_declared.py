"""Built-ins declared without importing them say what the imported objects say.

    .venv/bin/python -m pytest tests/registry/test_declared.py

A declaration (``Registry.declare``: norms and regularizers by import path; backbone presets by their
family's import path) lets ``ablate validate``/``plan``/``plugins`` list and check a component without
importing torch; these tests import every declared object and compare.
"""

from __future__ import annotations

import pytest

from ablate.backbones import BackbonePreset
from ablate.errors import RegistryError
from ablate.norms import NormInfo
from ablate.registry import BACKBONES, REGISTRIES, Registry
from ablate.registry._registry import _first_line

DECLARED = [(kind, e.key) for kind, reg in REGISTRIES.items() for e in reg.entries() if e.target]


def test_every_builtin_norm_and_regularizer_class_is_declared() -> None:
    assert {key for kind, key in DECLARED if kind == "norms"} == {
        "token_ln", "global_ln", "rms_norm", "batch_norm", "instance_norm", "group_norm", "dyt", "affine",
        "none", "layer_scale", "rezero"}
    assert {key for kind, key in DECLARED if kind == "regularizers"} == {"none", "feature_kl"}


@pytest.mark.parametrize(("kind", "key"), DECLARED)
def test_declaration_matches_the_imported_object(kind: str, key: str) -> None:
    declared = REGISTRIES[kind].entry(key)
    obj = declared.obj
    assert f"{obj.__module__}:{obj.__qualname__}" == declared.target
    assert declared.description == _first_line(obj)
    if kind == "norms":
        assert declared.info == NormInfo.of(obj)
    loaded = REGISTRIES[kind].entry(key)  # the entry now holds the object, and keeps the declaration
    assert loaded.obj is obj and (loaded.target, loaded.info) == (declared.target, declared.info)


@pytest.mark.parametrize("key", [k for k in BACKBONES.keys() if isinstance(BACKBONES.get(k), BackbonePreset)])
def test_a_backbone_preset_names_its_family(key: str) -> None:
    preset = BACKBONES.get(key)
    family = preset.family
    assert f"{family.__module__}:{family.__qualname__}" == preset.family_path
    assert isinstance(preset.config, family.config_class)


def test_a_declaration_that_its_module_does_not_register_is_an_error() -> None:
    reg: Registry[object] = Registry("widgets")
    reg.declare("decoder", "json.decoder:JSONDecoder", description="A JSON decoder.")
    entry = reg.entry("decoder")
    assert (entry.source, entry.description) == ("ablate", "A JSON decoder.")
    with pytest.raises(RegistryError, match=r"declared as json.decoder:JSONDecoder, but importing it did not "
                                            r"register 'decoder'"):
        _ = entry.obj


def test_a_declared_key_is_taken() -> None:
    reg: Registry[object] = Registry("widgets")
    reg.declare("w", "json.decoder:JSONDecoder", description="A JSON decoder.")
    with pytest.raises(RegistryError, match=r"duplicate widgets key 'w': already registered by ablate "
                                            r"\(json.decoder.JSONDecoder\)"):
        reg.add("w", dict)
    with pytest.raises(RegistryError, match=r"duplicate widgets key 'w'"):
        reg.declare("w", "json.decoder:JSONDecoder", description="again")
