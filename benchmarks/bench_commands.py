"""Benchmark: how long the quick commands take on a quickstart-sized store (target ≤ 1.0 s each on
the slower 2-core machines, issue 12).

    .venv/bin/python benchmarks/bench_commands.py                  # 7 runs of each command
    .venv/bin/python benchmarks/bench_commands.py --repeats 3 --keep /tmp/cmd-store
    .venv/bin/python benchmarks/bench_commands.py --quick          # smoke: 1 run each

What it does:
1. Logs the 7 cells of ``experiments/quickstart.yaml`` as synthetic runs (their real cell ids, probe
   and validation steps; ``ablate.testing.synthetic.experiment_cells``) through the real ``Tracker``
   into an MLflow SQLite store in a temporary state folder.
2. Runs each command as a fresh process, ``python -c "from ablate.cli import main; main()" ARGS``
   (what the ``ablate`` script runs), once untimed — so every module's bytecode is written, as an installed package has it
   (``PYTHONDONTWRITEBYTECODE`` is dropped for these processes) — then ``--repeats`` times,
   interleaved (each round runs every command once), from the repository root.
3. Prints per command the median wall time, the median CPU time of the process (user + system:
   robust to other load on a shared machine, where wall times swing) and the heavy modules the
   command imported (torch, mlflow, ray, pandas, matplotlib, scipy, skimage), from one more run
   that lists ``sys.modules`` at exit.

``ablate plugins`` is timed twice: as installed (the ablate-scalenorm plugin that ``make setup``
installs is imported, with torch, by the untimed run only: the timed ones list it from the user's
plugin-listing cache) and with ABLATE_DISABLE_PLUGIN_AUTOLOAD=1.

``--root DIR`` runs the commands of another checkout of ablate (e.g. ``git archive BASE | tar -x -C
DIR``) against the same store, for a before/after comparison in one sitting.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ablate.spec import expand, load_experiment  # noqa: E402
from ablate.testing.synthetic import experiment_cells, log_synthetic, prepared_store  # noqa: E402
from ablate.track import Tracker  # noqa: E402

HEAVY = ("torch", "mlflow", "ray", "pandas", "matplotlib", "scipy", "skimage")
SPEC = ROOT / "experiments" / "quickstart.yaml"
# runs the command as `ablate` does, then names the heavy top-level packages it imported
LIST_HEAVY = f"""\
import sys
from ablate.cli import main
try:
    main(sys.argv[1:], prog_name="ablate", standalone_mode=False)
finally:
    print("heavy:", *sorted({{m.split(".")[0] for m in sys.modules}} & set({HEAVY!r})), file=sys.stderr)
"""


NO_PLUGINS = "ABLATE_DISABLE_PLUGIN_AUTOLOAD=1"


def commands(state: Path) -> dict[str, list[str]]:
    """{what the table shows: the arguments}; the state folder is passed as --state-dir. A leading
    ``VAR=value`` is set in the command's environment."""
    spec = str(SPEC.relative_to(ROOT))
    return {
        "ablate --help": ["--help"],
        "ablate validate quickstart.yaml": ["validate", spec],
        "ablate plan quickstart.yaml": ["plan", spec],
        "ablate status quickstart.yaml": ["status", spec, "--state-dir", str(state)],
        "ablate report quickstart": ["report", "quickstart", "--state-dir", str(state)],
        "ablate plugins": ["plugins"],
        "ablate plugins (autoload off)": [NO_PLUGINS, "plugins"],
    }


def make_store(state: Path) -> str:
    """The quickstart's cells as finished synthetic runs (what `ablate run` leaves, minus artifacts)."""
    spec = load_experiment(SPEC)
    uri = prepared_store(state, Path(tempfile.gettempdir()) / "ablate-bench-mlflow")
    tracker = Tracker(uri, state)
    log_synthetic(tracker, spec.name, experiment_cells(expand(spec)))
    return uri


def environment(root: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "MLFLOW_TRACKING_URI")}
    env["PYTHONPATH"] = os.pathsep.join([str(root), *filter(None, [os.environ.get("PYTHONPATH")])])
    return env


def _split_env(args: list[str], env: dict[str, str]) -> tuple[list[str], dict[str, str]]:
    extra = dict(a.split("=", 1) for a in args if "=" in a and a.split("=", 1)[0].isupper())
    return [a for a in args if a.split("=", 1)[0] not in extra], {**env, **extra}


def run_once(args: list[str], env: dict[str, str], root: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one ``ablate ARGS`` process, run in ``root`` (whose ablate the
    interpreter then imports first)."""
    args, env = _split_env(args, env)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", "from ablate.cli import main; main(prog_name='ablate')", *args],
                          cwd=root, env=env, capture_output=True, text=True, timeout=300)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"ablate {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def heavy_modules(args: list[str], env: dict[str, str], root: Path) -> str:
    args, env = _split_env(args, env)
    proc = subprocess.run([sys.executable, "-c", LIST_HEAVY, *args], cwd=root, env=env, capture_output=True,
                          text=True, timeout=300)
    line = [ln for ln in proc.stderr.splitlines() if ln.startswith("heavy:")][-1]
    return line[len("heavy:"):].strip() or "—"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=7, help="timed runs per command (default 7)")
    ap.add_argument("--keep", type=Path, default=None, help="state folder to keep (and reuse when filled)")
    ap.add_argument("--quick", action="store_true", help="smoke: one timed run each")
    ap.add_argument("--root", type=Path, default=ROOT, help="the ablate checkout whose commands to run")
    args = ap.parse_args()
    repeats = 1 if args.quick else args.repeats
    state = (args.keep or Path(tempfile.mkdtemp(prefix="ablate-bench-cmd-"))).resolve()
    t0 = time.perf_counter()
    if not (state / "mlflow.db").exists():
        make_store(state)
        print(f"store: the quickstart's 7 cells, synthetic, in {state} ({time.perf_counter() - t0:.1f} s)")
    root = args.root.resolve()
    env = environment(root)
    cmds = commands(state)
    for cmd in cmds.values():  # untimed: writes the bytecode
        run_once(cmd, env, root)
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in cmds}
    for _ in range(repeats):
        for name, cmd in cmds.items():
            times[name].append(run_once(cmd, env, root))
    print(f"\n{root}: {repeats} runs per command, interleaved; load average "
          f"{os.getloadavg()[0]:.1f} at the end\n")
    print("| command | median wall s | min wall s | median CPU s | heavy modules imported |")
    print("|---|---:|---:|---:|---|")
    for name, cmd in cmds.items():
        walls = [w for w, _ in times[name]]
        cpus = [c for _, c in times[name]]
        print(f"| `{name}` | {statistics.median(walls):.2f} | {min(walls):.2f} | {statistics.median(cpus):.2f} "
              f"| {heavy_modules(cmd, env, root)} |")
    if args.keep is None:
        shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    main()
