"""The registry: did-you-mean errors, duplicates, entry-point plugins (broken ones too), provenance.

    pytest tests/registry/test_registry_plugins.py

Plugins are real distributions as importlib.metadata sees them: a ``*.dist-info`` folder with
``METADATA`` and ``entry_points.txt`` plus a module, in a temporary folder put on ``sys.path``.
"""

from __future__ import annotations

import importlib
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

import ablate
from ablate.errors import RegistryError, SpecError
from ablate.norms import Normalizer, resolve_norm
from ablate.norms._normalizers import TokenLayerNorm
from ablate.registry import NORMS, REGISTRIES, Registry
from ablate.testing import check_norm

GOOD = '''
from ablate.norms import Normalizer

class GoodNorm(Normalizer):
    """Centers each token over its channels (a plugin test norm)."""

    def normalize(self, x):
        return x - x.mean(dim=-1, keepdim=True), None
'''
BROKEN = 'raise RuntimeError("boom: this plugin is broken")\n'
DECORATED = '''
from ablate.norms import Normalizer
from ablate.registry import NORMS

@NORMS.register("{key}")
class DecoNorm(Normalizer):
    """Registered by decorator at import time."""

    def normalize(self, x):
        return x, None
'''


def make_dist(root: Path, dist: str, version: str, entry_points: dict[str, str], module: str | None = None,
              source: str = "", group: str = "ablate.norms") -> None:
    """Write an installed-distribution layout that importlib.metadata finds on sys.path."""
    info = root / f"{dist}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    lines = "".join(f"{key} = {value}\n" for key, value in entry_points.items())
    (info / "entry_points.txt").write_text(f"[{group}]\n{lines}")
    if module:
        (root / f"{module}.py").write_text(source)


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Path]:
    """A folder on sys.path for fake distributions; the global registries forget them afterwards."""
    before = set(sys.modules)
    sys.path.insert(0, str(tmp_path))
    importlib.invalidate_caches()
    try:
        yield tmp_path
    finally:
        if str(tmp_path) in sys.path:
            sys.path.remove(str(tmp_path))
        for name in set(sys.modules) - before:
            if getattr(sys.modules[name], "__file__", "") and str(tmp_path) in sys.modules[name].__file__:
                del sys.modules[name]
        for registry in REGISTRIES.values():
            registry.reload_plugins()


# --- keys, did-you-mean, duplicates -----------------------------------------------------------

def test_unknown_key_lists_valid_keys_and_the_closest_match() -> None:
    with pytest.raises(RegistryError) as info:
        NORMS.get("globl_ln")
    message = str(info.value)
    assert "unknown norm 'globl_ln'" in message
    assert "did you mean 'global_ln'?" in message
    assert "valid: " in message and all(key in message for key in ("token_ln", "rms_norm", "i_ln"))
    # through the spec layer it becomes a SpecError naming the key path, with the same hint
    with pytest.raises(SpecError, match=r"norm\.name: expected a registered norm, got 'globl_ln'.*global_ln"):
        resolve_norm({"name": "globl_ln"})


def test_unknown_key_far_from_everything_has_no_suggestion() -> None:
    with pytest.raises(RegistryError) as info:
        NORMS.get("zzzzzzzz")
    assert "did you mean" not in str(info.value)


def test_duplicate_key_names_both_sources() -> None:
    reg: Registry[object] = Registry("widgets")
    reg.add("w", TokenLayerNorm, source="first-dist", version="1.0")

    class Other:
        """Another widget."""

    with pytest.raises(RegistryError) as info:
        reg.register("w")(Other)
    message = str(info.value)
    assert "duplicate widgets key 'w'" in message
    assert "first-dist" in message and "TokenLayerNorm" in message
    assert "Other" in message and __name__ in message


def test_duplicate_builtin_key_is_refused() -> None:
    class Impostor(Normalizer):
        """Not the real token LN."""

    with pytest.raises(RegistryError, match=r"already registered by ablate .*TokenLayerNorm.*Impostor"):
        NORMS.register("token_ln")(Impostor)
    assert NORMS.get("token_ln") is TokenLayerNorm


def test_empty_key_is_refused() -> None:
    with pytest.raises(RegistryError, match="non-empty string"):
        NORMS.register("")


def test_builtins_record_ablate_as_their_source() -> None:
    for key in ("token_ln", "global_ln", "i_ln"):
        entry = NORMS.entry(key)
        assert (entry.source, entry.version) == ("ablate", ablate.__version__)
        assert entry.kind == "norms" and entry.description
    assert NORMS.entry("i_ln").description.startswith("i-LN preset")


# --- entry-point plugins ----------------------------------------------------------------------

def test_plugin_is_loaded_lazily_with_its_distribution_and_version(site: Path) -> None:
    make_dist(site, "fakegood", "2.0.1", {"good_norm": "fakegood_mod:GoodNorm"}, "fakegood_mod", GOOD)
    reg: Registry[object] = Registry("norms")
    assert "good_norm" in reg.keys()
    assert "fakegood_mod" not in sys.modules  # listing keys imports nothing
    entry = reg.entry("good_norm")
    assert (entry.source, entry.version) == ("fakegood", "2.0.1")
    assert entry.description == "Centers each token over its channels (a plugin test norm)."
    assert entry.obj.__name__ == "GoodNorm"


def test_plugin_in_the_global_registry_passes_the_contract(site: Path) -> None:
    make_dist(site, "fakegood", "2.0.1", {"good_norm": "fakegood_mod:GoodNorm"}, "fakegood_mod", GOOD)
    NORMS.reload_plugins()
    assert "good_norm" in NORMS.keys()
    check_norm("good_norm")  # sigma None: the contract includes refusing rescale
    check_norm("good_norm", rescale=True)
    assert NORMS.entry("good_norm").source == "fakegood"


def test_plugin_registering_by_decorator_records_its_distribution(site: Path) -> None:
    make_dist(site, "fakedeco", "0.3", {"deco_norm": "fakedeco_mod:DecoNorm"}, "fakedeco_mod",
              DECORATED.format(key="deco_norm"))
    NORMS.reload_plugins()
    entry = NORMS.entry("deco_norm")
    assert (entry.source, entry.version) == ("fakedeco", "0.3")
    sys.path.remove(str(site))  # "uninstall" it: reloading forgets the key, not the built-ins
    NORMS.reload_plugins()
    with pytest.raises(RegistryError, match="unknown norm 'deco_norm'"):
        NORMS.get("deco_norm")
    assert "token_ln" in NORMS.keys()


def test_plugin_decorating_a_builtin_key_is_skipped_and_the_builtin_survives_a_reload(site: Path) -> None:
    make_dist(site, "fakehijack", "0.1", {"hijack": "fakehijack_mod:DecoNorm"}, "fakehijack_mod",
              DECORATED.format(key="token_ln"))
    NORMS.reload_plugins()
    with pytest.warns(UserWarning, match=r"fakehijack: duplicate norms key 'token_ln': already registered by ablate"):
        NORMS.entries()
    assert [k for k, _, _ in NORMS.broken()] == ["hijack"]
    NORMS.reload_plugins()
    assert NORMS.get("token_ln") is TokenLayerNorm


def test_broken_plugin_warns_until_used_then_errors_naming_the_distribution(site: Path) -> None:
    make_dist(site, "fakebroken", "1.2.3", {"broken_norm": "fakebroken_mod:Norm"}, "fakebroken_mod", BROKEN)
    make_dist(site, "fakegood", "2.0.1", {"good_norm": "fakegood_mod:GoodNorm"}, "fakegood_mod", GOOD)
    reg: Registry[object] = Registry("norms")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # listing keys must not even warn: nothing is imported yet
        assert {"broken_norm", "good_norm"} <= set(reg.keys())
    with pytest.warns(UserWarning, match=r"fakebroken 1\.2\.3 .*failed to import.*boom"):
        entries = reg.entries()  # the host carries on: a warning, not an error
    assert "good_norm" in {e.key for e in entries} and "broken_norm" not in {e.key for e in entries}
    assert [(k, d) for k, d, _ in reg.broken()] == [("broken_norm", "fakebroken 1.2.3")]
    assert "broken_norm" not in reg.keys() and "broken_norm" not in reg
    with pytest.raises(RegistryError, match=r"norms 'broken_norm' comes from plugin fakebroken 1\.2\.3.*boom"):
        reg.get("broken_norm")


def test_broken_plugin_fails_an_experiment_only_when_used(site: Path) -> None:
    make_dist(site, "fakebroken", "1.2.3", {"broken_norm": "fakebroken_mod:Norm"}, "fakebroken_mod", BROKEN)
    NORMS.reload_plugins()
    resolve_norm("global_ln")  # other keys are unaffected
    with pytest.warns(UserWarning, match="fakebroken"), \
            pytest.raises(SpecError, match=r"norm: expected a registered norm, got 'broken_norm'.*fakebroken"):
        resolve_norm("broken_norm")


def test_autoload_can_be_disabled(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_dist(site, "fakegood", "2.0.1", {"good_norm": "fakegood_mod:GoodNorm"}, "fakegood_mod", GOOD)
    monkeypatch.setenv("ABLATE_DISABLE_PLUGIN_AUTOLOAD", "1")
    reg: Registry[object] = Registry("norms")
    assert "good_norm" not in reg.keys()
    with pytest.raises(RegistryError, match="unknown norm 'good_norm'"):
        reg.get("good_norm")
    monkeypatch.delenv("ABLATE_DISABLE_PLUGIN_AUTOLOAD")
    assert "good_norm" in Registry("norms").keys()


def test_plugin_key_clashing_with_a_builtin_is_reported_not_loaded(site: Path) -> None:
    make_dist(site, "fakeclash", "0.9", {"token_ln": "fakegood_mod:GoodNorm"}, "fakegood_mod", GOOD)
    reg: Registry[object] = Registry("norms")
    reg.add("token_ln", TokenLayerNorm)  # a built-in, as ablate.norms registers it
    with pytest.warns(UserWarning, match=r"duplicate norms key 'token_ln'.*ablate.*fakeclash 0\.9"):
        keys = reg.keys()
    assert "token_ln" in keys and reg.get("token_ln") is TokenLayerNorm
    [(key, dist, error)] = reg.broken()
    assert (key, dist) == ("token_ln", "fakeclash 0.9") and "already registered by ablate" in error


def test_two_plugins_with_one_key_make_the_key_an_error(site: Path) -> None:
    make_dist(site, "fakeone", "1.0", {"twin": "fakegood_mod:GoodNorm"}, "fakegood_mod", GOOD)
    make_dist(site, "faketwo", "2.0", {"twin": "fakegood_mod:GoodNorm"})
    reg: Registry[object] = Registry("norms")
    with pytest.warns(UserWarning, match="duplicate norms key 'twin'"):
        reg.keys()
    with pytest.raises(RegistryError, match=r"fake(one|two) .*fake(one|two) .*uninstall one"):
        reg.get("twin")


def test_entry_points_of_other_groups_are_ignored(site: Path) -> None:
    make_dist(site, "fakebb", "1.0", {"bb": "fakegood_mod:GoodNorm"}, "fakegood_mod", GOOD,
              group="ablate.backbones")
    assert "bb" not in Registry("norms").keys()
    assert "bb" in Registry("backbones").keys()
