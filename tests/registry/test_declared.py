"""Built-ins are declared by their decorator alone, and the declarations say what the imported objects say.

    .venv/bin/python -m pytest tests/registry/test_declared.py

Each built-in package calls ``REG.declare_package(__name__)``: the ``@REG.register("key")`` decorators
of its modules are read from their source (``ablate/registry/_scan.py``), so ``ablate validate``,
``plan`` and ``plugins`` know every built-in without importing torch. These tests import every module
of every built-in package, found with ``pkgutil`` (no hand-written list), and compare: a key
registered but not declared, declared but not registered, or declared differently from what its
class says fails here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ablate.backbones import BackbonePreset
from ablate.errors import RegistryError
from ablate.norms import Normalizer, NormInfo
from ablate.registry import BACKBONES, REGISTRIES, Registry
from ablate.registry._registry import _BUILTIN_PACKAGES, _first_line

ROOT = Path(__file__).resolve().parents[2]

# In a fresh interpreter: the built-ins each registry knows, then every module of every built-in
# package imported (in the order given), then the built-ins again.
SCRIPT = textwrap.dedent("""
    import importlib, json, pkgutil, sys
    from ablate.errors import RegistryError
    from ablate.registry import REGISTRIES
    from ablate.registry._registry import _BUILTIN_PACKAGES

    def modules():
        for packages in _BUILTIN_PACKAGES.values():
            for package in packages:
                yield package
                path = importlib.import_module(package).__path__
                yield from (m.name for m in pkgutil.walk_packages(path, package + "."))

    def builtins():
        out = {}
        for kind, registry in REGISTRIES.items():
            out[kind] = {e.key: [e.target, e.info is not None] for e in registry.entries() if e.source == "ablate"}
        return out

    first = sys.argv[1]
    if first == "modules":
        for name in list(modules()):
            importlib.import_module(name)
    declared = builtins()
    torch = "torch" in sys.modules
    imported = list(modules())
    for name in imported:
        importlib.import_module(name)
    failed = {}
    for kind, registry in REGISTRIES.items():
        for entry in registry.entries():
            try:
                entry.obj
            except RegistryError as err:
                failed[f"{kind} {entry.key}"] = str(err)
    print(json.dumps({"declared": declared, "registered": builtins(), "torch": torch, "modules": imported,
                      "failed": failed}))
""")


def _census(first: str) -> dict[str, Any]:
    env = {**os.environ, "ABLATE_DISABLE_PLUGIN_AUTOLOAD": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    proc = subprocess.run([sys.executable, "-c", SCRIPT, first], capture_output=True, text=True, env=env,
                          timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.splitlines()[-1])  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def registry_first() -> dict[str, Any]:
    return _census("registry")


def test_every_registered_builtin_is_declared_before_its_module_is_imported(registry_first: dict[str, Any]) -> None:
    census = registry_first
    assert not census["torch"], "listing the built-ins imported torch"
    assert len(census["modules"]) > 30 and "ablate.norms._normalizers" in census["modules"]  # pkgutil found them
    for kind in REGISTRIES:
        declared, registered = census["declared"][kind], census["registered"][kind]
        assert set(registered) - set(declared) == set(), (
            f"{kind}: registered when their module is imported, unknown before (ablate validate would call them "
            "unknown): register them with @REG.register('key') on a top-level class, or in a module without torch")
        assert set(declared) - set(registered) == set(), f"{kind}: declared but gone after importing every module"
    assert census["failed"] == {}, "declared but not registered by the module they name"
    # the norms' sigma and PARAMS are read from the source, so validating them imports no torch
    assert all(has_info for target, has_info in census["declared"]["norms"].values() if target)


def test_the_builtins_are_the_same_whatever_is_imported_first(registry_first: dict[str, Any]) -> None:
    modules_first = _census("modules")
    assert modules_first["declared"] == registry_first["registered"] == modules_first["registered"]


def test_the_builtins_include_each_kind_of_registration(registry_first: dict[str, Any]) -> None:
    """Decorated classes (declared from source), presets and aliases (registered by their module)."""
    declared = registry_first["declared"]
    assert declared["norms"]["group_norm"] == ["ablate.norms._normalizers:GroupNorm", True]
    assert declared["norms"]["i_ln"] == ["", False]
    assert declared["regularizers"]["feature_kl"][0] == "ablate.regularizers._feature_kl:FeatureKL"
    assert declared["tasks"]["sr"][0] == "ablate.tasks._sr:SRTask" and "sr-x2" in declared["tasks"]
    assert declared["datasets"]["skimage"][0] == "ablate.data._skimage:SkimageDataset"
    assert "swinir-tiny" in declared["backbones"]
    assert set(_BUILTIN_PACKAGES) == set(REGISTRIES)


def _declared() -> Iterator[tuple[str, str]]:
    for kind, registry in REGISTRIES.items():
        for entry in registry.entries():
            if entry.target:
                yield kind, entry.key


@pytest.mark.parametrize(("kind", "key"), list(_declared()))
def test_declaration_matches_the_imported_object(kind: str, key: str) -> None:
    declared = REGISTRIES[kind].entry(key)
    obj = declared.obj
    assert f"{obj.__module__}:{obj.__qualname__}" == declared.target
    assert declared.description == _first_line(obj), "give the class its own docstring"
    if isinstance(obj, type) and issubclass(obj, Normalizer):
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
