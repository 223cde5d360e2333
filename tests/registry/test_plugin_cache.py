"""`ablate plugins` lists entry-point plugins from a cache (ablate/registry/_plugin_cache.py).

    pytest tests/registry/test_plugin_cache.py

In-process: a listing is cached, a second one (the registries rescanned, the plugin module
forgotten) comes from the cache without importing, a broken plugin still warns, a bad cache never
fails the command and using a plugin listed from the cache imports it. That a warm cache spares
torch in a fresh interpreter is tests/cli/test_fast_imports.py's check.
"""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from ablate.cache import cache_dir
from ablate.cli import main
from ablate.registry import NORMS, REGISTRIES, _plugin_cache

GOOD = '''
from ablate.norms import Normalizer

class CacheNorm(Normalizer):
    """Centers each token (a plugin-cache test norm).

    Not listed.
    """

    def normalize(self, x):
        return x - x.mean(dim=-1, keepdim=True), None
'''
MODULES = ("cachegood_mod", "cachebroken_mod")


def _dist(root: Path, dist: str, key: str, target: str) -> None:
    info = root / f"{dist}-2.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 2.0\n")
    (info / "entry_points.txt").write_text(f"[ablate.norms]\n{key} = {target}\n")


def _forget() -> None:
    """A fresh interpreter's view: the plugin modules not imported, the entry points not scanned."""
    for name in MODULES:
        sys.modules.pop(name, None)
    for registry in REGISTRIES.values():
        registry.reload_plugins()


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A good and a broken plugin on sys.path, and an empty cache folder of their own."""
    monkeypatch.setenv("ABLATE_CACHE_DIR", str(tmp_path / "cache"))
    root = tmp_path / "site"
    root.mkdir()
    _dist(root, "cachegood", "cache_good_norm", "cachegood_mod:CacheNorm")
    (root / "cachegood_mod.py").write_text(GOOD)
    _dist(root, "cachebroken", "cache_broken_norm", "cachebroken_mod:Norm")
    (root / "cachebroken_mod.py").write_text("import a_module_nobody_has_installed\n")
    sys.path.insert(0, str(root))
    importlib.invalidate_caches()
    _forget()
    try:
        yield root
    finally:
        sys.path.remove(str(root))
        _forget()


def _list() -> tuple[str, list[str]]:
    """(stdout, warning lines) of `ablate plugins --kind norms`."""
    result = CliRunner().invoke(main, ["plugins", "--kind", "norms"])
    assert result.exit_code == 0, result.output
    return result.stdout, [x for x in result.stderr.splitlines() if x.startswith("warning:")]


def _cache_file(site: Path) -> Path:
    return site.parent / "cache" / _plugin_cache.CACHE_FILE


def test_second_listing_comes_from_the_cache(site: Path) -> None:
    first, warned = _list()
    assert "cache_good_norm" in first and "a plugin-cache test norm" in first
    assert _cache_file(site).is_file()
    _forget()
    second, warned_again = _list()
    assert second == first and warned_again == warned
    assert "cachegood_mod" not in sys.modules and "cachebroken_mod" not in sys.modules


def test_broken_plugin_warns_from_the_cache_too(site: Path) -> None:
    for _ in range(2):
        _, warned = _list()
        assert len(warned) == 1, warned
        assert "cache_broken_norm" in warned[0] and "cachebroken 2.0" in warned[0]
        assert "ModuleNotFoundError" in warned[0] and "a_module_nobody_has_installed" in warned[0]
        _forget()


def test_an_edited_plugin_is_imported_again(site: Path) -> None:
    _list()
    _forget()
    (site / "cachegood_mod.py").write_text(GOOD.replace("a plugin-cache test norm", "edited since"))
    listed, _ = _list()
    assert "edited since" in listed
    assert "cachegood_mod" in sys.modules


def test_a_fixed_plugin_is_imported_again(site: Path) -> None:
    _list()
    _forget()
    (site / "cachebroken_mod.py").write_text(GOOD.replace("class CacheNorm", "class Norm"))  # other size, mtime
    listed, warned = _list()
    assert warned == [] and "cache_broken_norm" in listed


@pytest.mark.parametrize("bad", ["not json", "records not a mapping", "records malformed"])
def test_a_corrupt_cache_is_ignored_and_rewritten(site: Path, bad: str) -> None:
    expected, _ = _list()
    _forget()
    path = _cache_file(site)
    records = json.loads(path.read_text())["records"]
    path.write_text({"not json": "{not json",
                     "records not a mapping": '{"format": 1, "records": []}',
                     "records malformed": json.dumps({"format": 1, "records": {k: {"rows": 3} for k in records}}),
                     }[bad])
    _plugin_cache._loaded.clear()  # what a fresh interpreter reads
    listed, _ = _list()
    assert listed == expected
    assert "cachegood_mod" in sys.modules  # imported, not listed from the bad cache
    assert json.loads(path.read_text())["format"] == 1


def test_an_unwritable_cache_never_fails_the_command(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = site.parent / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("ABLATE_CACHE_DIR", str(blocker / "cache"))  # mkdir fails: a file is in the way
    for _ in range(2):
        listed, warned = _list()
        assert "cache_good_norm" in listed and len(warned) == 1
        _forget()


def test_using_a_plugin_listed_from_the_cache_imports_it(site: Path) -> None:
    _list()
    _forget()
    entries, _ = NORMS.listing()
    listed = next(e for e in entries if e.key == "cache_good_norm")
    assert "cachegood_mod" not in sys.modules
    assert listed.obj.__name__ == "CacheNorm" and "cachegood_mod" in sys.modules
    assert NORMS.get("cache_good_norm") is listed.obj


def test_cache_dir_follows_the_environment(tmp_path: Path) -> None:
    assert cache_dir({"ABLATE_CACHE_DIR": str(tmp_path)}) == tmp_path
    assert cache_dir({"XDG_CACHE_HOME": str(tmp_path)}) == tmp_path / "ablate"
    assert cache_dir({}) == Path.home() / ".cache" / "ablate"
