"""The quick commands import no heavy library: torch, mlflow, ray, pandas, matplotlib, scipy, scikit-image.

    .venv/bin/python -m pytest tests/cli/test_fast_imports.py

Each command runs in a fresh interpreter (as the ``ablate`` script does, with click's
``standalone_mode=False``) against the quickstart's 7 cells logged as synthetic runs, and the
interpreter then lists the heavy top-level packages in ``sys.modules``. How long the commands take
is benchmarks/bench_commands.py's to measure; this keeps the imports that cost the time from
creeping back. ``plugins`` runs with entry-point plugins off: a plugin norm brings torch itself.
``report`` reads the store directly and computes its statistics in numpy: nothing heavy either.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "experiments" / "quickstart.yaml"
HEAVY = ("torch", "mlflow", "ray", "pandas", "matplotlib", "scipy", "skimage")
SCRIPT = f"""\
import json, sys
from ablate.cli import main
try:
    main(sys.argv[1:], prog_name="ablate", standalone_mode=False)
finally:
    heavy = sorted({{m.split(".")[0] for m in sys.modules}} & set({HEAVY!r}))
    print("HEAVY " + json.dumps(heavy), file=sys.stderr)
"""


@pytest.fixture(scope="module")
def state(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A state folder whose MLflow store holds the quickstart's cells, finished (synthetic traces), and
    an experiment ``seeds`` with two seeds per variant (its report computes t-intervals and p-values)."""
    from ablate.spec import expand, load_experiment
    from ablate.testing.synthetic import experiment_cells, log_synthetic, prepared_store, synthetic_cells
    from ablate.track import Tracker

    folder = tmp_path_factory.mktemp("fast") / "state"
    cache = getattr(request.config, "cache", None)
    uri = prepared_store(folder, cache.mkdir("ablate-mlflow") if cache is not None else folder.parent / "template")
    spec = load_experiment(QUICKSTART)
    tracker = Tracker(uri, folder)
    log_synthetic(tracker, spec.name, experiment_cells(expand(spec)))
    log_synthetic(tracker, "seeds", synthetic_cells(("token_ln", "i_ln"), (0, 1), steps=5))
    return folder


def _heavy(args: list[str], env: dict[str, str] | None = None) -> tuple[list[str], str]:
    """(heavy packages imported, stdout) of ``ablate ARGS`` in a fresh interpreter."""
    environ = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    proc = subprocess.run([sys.executable, "-c", SCRIPT, *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env={**environ, **(env or {})})
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = [ln for ln in proc.stderr.splitlines() if ln.startswith("HEAVY ")][-1]
    return json.loads(line[len("HEAVY "):]), proc.stdout


@pytest.mark.parametrize("args", [
    ["--help"],
    ["validate", str(QUICKSTART)],
    ["plan", str(QUICKSTART)],
    ["plan", str(QUICKSTART), "--format", "json"],
], ids=lambda a: " ".join(Path(x).name if "/" in x else x for x in a))
def test_spec_commands_import_nothing_heavy(args: list[str]) -> None:
    heavy, out = _heavy(args)
    assert heavy == [], f"ablate {' '.join(args)} imported {heavy}"
    assert out


@pytest.mark.parametrize("args", [
    ["status", str(QUICKSTART)],
])
def test_status_imports_nothing_heavy(args: list[str], state: Path) -> None:
    heavy, out = _heavy([*args, "--state-dir", str(state)])
    assert heavy == [], f"ablate {' '.join(args)} imported {heavy}"
    assert "swinir-tiny" in out
    assert "quickstart: 7 finished" in out  # the cells were found: read from the store, not reported pending


@pytest.mark.parametrize("args", [
    ["report", "quickstart"],
    ["report", "quickstart", "--format", "csv"],
    ["report", "quickstart", "--format", "latex"],
    ["report", "seeds"],
], ids=lambda a: " ".join(Path(x).name if "/" in x else x for x in a))
def test_report_imports_nothing_heavy(args: list[str], state: Path) -> None:
    heavy, out = _heavy([*args, "--state-dir", str(state)])
    assert heavy == [], f"ablate {' '.join(args)} imported {heavy}"
    assert out


@pytest.mark.parametrize("kind", [None, "norms", "backbones", "tasks", "datasets", "regularizers"])
def test_plugins_import_nothing_heavy(kind: str | None) -> None:
    heavy, out = _heavy(["plugins", *(["--kind", kind] if kind else [])], {"ABLATE_DISABLE_PLUGIN_AUTOLOAD": "1"})
    assert heavy == [], f"ablate plugins imported {heavy}"
    assert "from plugins" in out


PLUGIN = '''
import torch  # what a real plugin norm brings: listing it from the cache must not

from ablate.norms import Normalizer


class CachedNorm(Normalizer):
    """Scales each token by a constant (a listing-cache test norm)."""

    def normalize(self, x):
        return x * torch.ones(()), None
'''


def test_plugins_with_a_warm_cache_import_no_torch(tmp_path: Path) -> None:
    """The first listing imports the plugin (and torch) and caches its row; the next lists it from the
    cache without importing; an edit to the plugin's module imports it again."""
    site = tmp_path / "site"
    info = site / "cachedplugin-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: cachedplugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[ablate.norms]\ncached_norm = cachedplugin_mod:CachedNorm\n")
    module = site / "cachedplugin_mod.py"
    module.write_text(PLUGIN)
    env = {"ABLATE_CACHE_DIR": str(tmp_path / "cache"),
           "PYTHONPATH": os.pathsep.join([str(ROOT), str(site), *filter(None, [os.environ.get("PYTHONPATH")])])}

    cold, listed = _heavy(["plugins", "--kind", "norms"], env)
    assert "torch" in cold
    assert "cachedplugin" in listed and "a listing-cache test norm" in listed
    warm, again = _heavy(["plugins", "--kind", "norms"], env)
    assert warm == [], f"ablate plugins with a warm cache imported {warm}"
    assert again == listed

    stat = module.stat()
    os.utime(module, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    edited, _ = _heavy(["plugins", "--kind", "norms"], env)
    assert "torch" in edited  # a changed fingerprint imports the plugin again


DRIVER = f"""\
import sys
import ablate.cli.cmd_run, ablate.cli.cmd_resume, ablate.cli.cmd_search
from ablate.tune import _callback, _search, _storage, _sweep, _trial
from ablate.spec import expand, load_experiment
labels = [cell.norm_label() for cell in expand(load_experiment({str(QUICKSTART)!r}))]  # the callback's run names
assert labels[0] == "token_ln", labels
print(sorted({{m.split(".")[0] for m in sys.modules}} & {{"torch", "matplotlib", "scipy", "skimage"}}))
"""


def test_the_sweep_driver_imports_no_torch() -> None:
    """``ablate run/resume/search`` drive Ray and MLflow; only the trials train. Keeping torch out of the
    driver saves each sweep start about two CPU-seconds (the interpreters of the fault tests, too)."""
    proc = subprocess.run([sys.executable, "-c", DRIVER], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == "[]", proc.stdout
