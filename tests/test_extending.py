"""docs/extending.md, followed literally: its built-in norm and its plugin norm, accepted end to end.

    .venv/bin/python -m pytest tests/test_extending.py            # -m "not slow": without the sweep

The guide's code blocks are the source: each fenced block whose first line names a file is written
to that file. The built-in norm goes into a copy of the ``ablate`` package (one new module, as the
guide says; the checkout is never touched), the plugin is installed as ``pip install -e .`` would
install it (its module plus a ``*.dist-info`` holding the entry point of the guide's
``pyproject.toml``; pip itself would change the shared environment). Then ``ablate plugins``,
``validate``, ``plan`` and a two-cell sweep run on them as a user runs them, in subprocesses.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "extending.md"
EXPERIMENT = """\
name: extending
grid:
  norm: [plain_ln, plain_ln_plugin]
rescale: true
backbone: {name: swinir-tiny, embed_dim: 16, depths: [1, 1], num_heads: 2, window_size: 4}
task: sr-x2
train: {steps: 4, batch_size: 2, patch_size: 16, val_size: 32, eval_every: 4, lowprec_eval: false}
probes: {every: 2, patch_size: 16}
"""
# What a subprocess imported that the quick commands must not.
HEAVY = """
import sys
from ablate.cli import main
try:
    main(sys.argv[1:], prog_name="ablate", standalone_mode=False)
finally:
    print("TORCH", "torch" in sys.modules, file=sys.stderr)
"""


def guide_files() -> dict[str, str]:
    """The guide's fenced blocks whose first line is a comment naming a file: path -> text."""
    files = {}
    for body in re.findall(r"```(?:python|toml)\n(.*?)```", GUIDE.read_text(), re.S):
        first, _, rest = body.partition("\n")
        if first.startswith("# ") and "." in first and " " not in first[2:].strip():
            files[first[2:].strip()] = rest
    return files


@pytest.fixture(scope="module")
def checkout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the package with the guide's built-in norm added, and the guide's plugin installed
    beside it: the folder the commands run in (Ray's workers put it on their path too)."""
    root = tmp_path_factory.mktemp("extending")
    shutil.copytree(ROOT / "ablate", root / "ablate", ignore=shutil.ignore_patterns("__pycache__"))
    files = guide_files()
    builtin = [path for path in files if path.startswith("ablate/norms/")]
    assert len(builtin) == 1, f"the guide should show one built-in norm module, found {builtin}"
    (root / builtin[0]).write_text(files[builtin[0]])

    # The plugin: "import Normalizer from ablate.norms instead of ._base, drop the decorator".
    plugin = files[builtin[0]].replace("from ._base import Normalizer", "from ablate.norms import Normalizer")
    plugin = "\n".join(line for line in plugin.splitlines()
                       if not line.startswith(("@NORMS.register", "from ablate.registry import NORMS")))
    project = _toml_tables(files["pyproject.toml"])
    name, version = project["project"]["name"], project["project"]["version"]
    (entry_point,) = project['project.entry-points."ablate.norms"'].items()
    module = entry_point[1].split(":")[0]
    (root / f"{module}.py").write_text(plugin)
    info = root / f"{name.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[ablate.norms]\n{entry_point[0]} = {entry_point[1]}\n")
    (root / "extending.yaml").write_text(EXPERIMENT)
    return root


def _toml_tables(text: str) -> dict[str, dict[str, str]]:
    """The ``key = "string"`` lines of each ``[table]`` of a TOML file (what the guide's pyproject
    holds; tomllib is Python 3.11+, ablate supports 3.10)."""
    tables: dict[str, dict[str, str]] = {}
    table = ""
    for line in text.splitlines():
        if line.startswith("["):
            table = line.strip("[] ")
        elif (m := re.match(r'([\w.-]+) = "(.*)"$', line)):
            tables.setdefault(table, {})[m[1]] = m[2]
    return tables


def _ablate(checkout: Path, *args: str, script: str = "from ablate.cli import main; main()",
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items()
               if k not in ("MLFLOW_TRACKING_URI", "ABLATE_STATE_DIR", "ABLATE_DISABLE_PLUGIN_AUTOLOAD")}
    environ["PYTHONPATH"] = os.pathsep.join([str(checkout), *filter(None, [os.environ.get("PYTHONPATH")])])
    return subprocess.run([sys.executable, "-c", script, *args], cwd=checkout, env={**environ, **(env or {})},
                          capture_output=True, text=True, timeout=600)


def test_the_guide_names_every_extension() -> None:
    rows = [line.split("|")[1].strip() for line in GUIDE.read_text().splitlines()
            if line.startswith("| ") and not line.startswith("| extension")]
    for kind in ("norm, plugin", "norm, built-in", "backbone, built-in", "task", "dataset", "regularizer",
                 "CLI command", "tracking backend"):
        assert kind in rows, kind
    assert "extending.md" in (ROOT / "README.md").read_text()


def test_the_builtin_norm_is_listed_without_importing_torch(checkout: Path) -> None:
    listed = _ablate(checkout, "plugins", "--kind", "norms", script=HEAVY, env={"ABLATE_DISABLE_PLUGIN_AUTOLOAD": "1"})
    assert listed.returncode == 0, listed.stderr[-3000:]
    assert "TORCH False" in listed.stderr
    row = next(line for line in listed.stdout.splitlines() if line.split()[1:2] == ["plain_ln"])
    assert "ablate" in row and "Per-token LayerNorm over C without the learnable γ and β" in row


def test_validate_and_plan_accept_both_norms(checkout: Path) -> None:
    plugins = _ablate(checkout, "plugins", "--kind", "norms")
    assert plugins.returncode == 0, plugins.stderr[-3000:]
    assert re.search(r"^norms +plain_ln_plugin +ablate-plainln +0\.1\.0 +Per-token LayerNorm", plugins.stdout, re.M)
    validate = _ablate(checkout, "validate", "extending.yaml", script=HEAVY)
    assert validate.returncode == 0 and validate.stdout == "ok: 2 cells, extending\n", validate.stderr[-3000:]
    assert "TORCH False" not in validate.stderr  # the plugin's module is imported to validate it: torch
    plan = _ablate(checkout, "plan", "extending.yaml")
    assert plan.returncode == 0, plan.stderr[-3000:]
    rows = [line.split()[1:3] for line in plan.stdout.splitlines()[2:] if line.strip() and "cells" not in line]
    assert rows == [["plain_ln", "true"], ["plain_ln_plugin", "true"]], plan.stdout


def test_the_builtin_norm_keeps_the_contract_and_its_declaration(checkout: Path) -> None:
    script = textwrap.dedent("""
        from ablate.norms import NormInfo
        from ablate.registry import NORMS
        from ablate.testing import check_norm
        declared = NORMS.entry("plain_ln").info
        for rescale in (False, True):
            check_norm("plain_ln", rescale=rescale)
        assert declared == NormInfo.of(NORMS.get("plain_ln")), declared
        print("ok")
    """)
    result = _ablate(checkout, script=script)
    assert result.returncode == 0 and result.stdout == "ok\n", result.stderr[-3000:]


@pytest.mark.slow
def test_a_two_cell_sweep_runs_both_norms(checkout: Path, ray_session: str, request: pytest.FixtureRequest) -> None:
    from ablate.testing.synthetic import prepared_store

    cache = getattr(request.config, "cache", None)
    prepared_store(checkout / "state", cache.mkdir("ablate-mlflow") if cache is not None else checkout / "template")
    run = _ablate(checkout, "run", "extending.yaml", "--state-dir", "state", "--no-dashboard", "--max-concurrent", "1",
                  env={"RAY_ADDRESS": ray_session})  # one trial worker, the cells one after the other
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "extending: 2 finished in" in run.stdout
    status = _ablate(checkout, "status", "extending.yaml", "--state-dir", "state")
    rows = [line.split() for line in status.stdout.splitlines() if re.match(r"[0-9a-f]{10} ", line)]
    assert sorted((row[1], row[6]) for row in rows) == [("plain_ln+rescale", "finished"),
                                                        ("plain_ln_plugin+rescale", "finished")], status.stdout
