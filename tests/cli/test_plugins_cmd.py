"""`ablate plugins`: every component with its source distribution; broken plugins as warning lines.

    pytest tests/cli/test_plugins_cmd.py
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import pytest
from click.testing import CliRunner

import ablate
from ablate.cli import main
from ablate.registry import REGISTRIES

GOOD = '''
from ablate.norms import Normalizer

class GoodNorm(Normalizer):
    """Centers each token over its channels (a plugin test norm).

    More text that the listing leaves out.
    """

    def normalize(self, x):
        return x - x.mean(dim=-1, keepdim=True), None
'''


def _dist(root: Path, dist: str, version: str, key: str, target: str) -> None:
    info = root / f"{dist}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[ablate.norms]\n{key} = {target}\n")


@pytest.fixture(autouse=True)
def _own_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test lists with an empty plugin-listing cache of its own (not the user's)."""
    monkeypatch.setenv("ABLATE_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture
def plugins(tmp_path: Path) -> Iterator[Path]:
    """One working and one broken plugin distribution on sys.path, registries rescanned."""
    _dist(tmp_path, "cligood", "3.1.4", "cli_good_norm", "cligood_mod:GoodNorm")
    (tmp_path / "cligood_mod.py").write_text(GOOD)
    _dist(tmp_path, "clibroken", "0.0.1", "cli_broken_norm", "clibroken_mod:Norm")
    (tmp_path / "clibroken_mod.py").write_text("import a_module_that_does_not_exist_anywhere\n")
    sys.path.insert(0, str(tmp_path))
    importlib.invalidate_caches()
    for registry in REGISTRIES.values():
        registry.reload_plugins()
    try:
        yield tmp_path
    finally:
        sys.path.remove(str(tmp_path))
        for name in ("cligood_mod", "clibroken_mod"):
            sys.modules.pop(name, None)
        for registry in REGISTRIES.values():
            registry.reload_plugins()


def _rows(output: str) -> dict[str, list[str]]:
    """key -> [kind, key, source, version, description…] from the table."""
    rows = {}
    for line in output.splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[0] in REGISTRIES:
            rows[parts[1]] = parts
    return rows


def test_lists_builtins_and_plugins_with_provenance(plugins: Path) -> None:
    result = CliRunner().invoke(main, ["plugins", "--kind", "norms"])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0].split() == ["kind", "key", "source", "version", "description"]
    rows = _rows(result.stdout)
    assert rows["token_ln"][:4] == ["norms", "token_ln", "ablate", ablate.__version__]
    assert rows["i_ln"][2] == "ablate"
    assert rows["cli_good_norm"][:4] == ["norms", "cli_good_norm", "cligood", "3.1.4"]
    line = next(x for x in result.stdout.splitlines() if "cli_good_norm" in x)
    assert line.endswith("Centers each token over its channels (a plugin test norm).")  # first paragraph only
    assert {r[0] for r in rows.values()} == {"norms"}  # --kind filters
    assert "cli_broken_norm" not in rows


def test_broken_plugin_is_a_warning_line_not_a_traceback(plugins: Path) -> None:
    result = CliRunner().invoke(main, ["plugins", "--kind", "norms"])
    assert result.exit_code == 0
    assert "Traceback" not in result.output
    warnings = [x for x in result.stderr.splitlines() if x.startswith("warning:")]
    assert len(warnings) == 1, result.stderr
    assert "cli_broken_norm" in warnings[0] and "clibroken 0.0.1" in warnings[0]
    assert "ModuleNotFoundError" in warnings[0] and "a_module_that_does_not_exist_anywhere" in warnings[0]
    assert "UserWarning" not in result.output  # python's own warning format is not leaked


def test_all_kinds_by_default(plugins: Path) -> None:
    result = CliRunner().invoke(main, ["plugins"])
    assert result.exit_code == 0, result.output
    kinds = {r[0] for r in _rows(result.stdout).values()}
    assert {"norms", "backbones", "tasks"} <= kinds
    assert "components" in result.stdout.splitlines()[-1]


def test_autoload_disabled(plugins: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ABLATE_DISABLE_PLUGIN_AUTOLOAD", "1")
    for registry in REGISTRIES.values():
        registry.reload_plugins()
    result = CliRunner().invoke(main, ["plugins", "--kind", "norms"])
    assert result.exit_code == 0
    assert "cli_good_norm" not in result.stdout and "warning:" not in result.output
    assert "autoload is disabled" in result.stdout


def test_installed_example_plugin_is_listed() -> None:
    try:
        version = metadata.version("ablate-scalenorm")
    except metadata.PackageNotFoundError:
        if os.environ.get("CI"):  # CI installs it (make setup): there its absence is a failure
            pytest.fail("plugins/ablate-scalenorm is not installed; `make setup` installs it")
        pytest.skip("plugins/ablate-scalenorm is not installed (pip install -e plugins/ablate-scalenorm)")
    result = CliRunner().invoke(main, ["plugins", "--kind", "norms"])
    assert _rows(result.stdout)["scale_norm"][:4] == ["norms", "scale_norm", "ablate-scalenorm", version]


def test_help_opens_with_runnable_examples() -> None:
    result = CliRunner().invoke(main, ["plugins", "--help"])
    assert result.exit_code == 0
    lines = [x.strip() for x in result.output.splitlines() if x.strip()]
    assert lines[2].startswith("ablate plugins")  # usage, one-line summary, then the example
    assert "ablate plugins --kind norms" in result.output


def test_wrong_kind_is_a_usage_error() -> None:
    result = CliRunner().invoke(main, ["plugins", "--kind", "norm"])
    assert result.exit_code == 2
    assert "Invalid value for '--kind'" in result.output and "'norms'" in result.output
