"""What a killed driver costs: the quickstart run undisturbed, then run again and SIGKILLed at 50%, then resumed.

    .venv/bin/python benchmarks/bench_resume.py                         # experiments/quickstart.yaml as it is
    .venv/bin/python benchmarks/bench_resume.py --checkpoint-every 0 50  # as it is, and with a checkpoint every 50 steps
    .venv/bin/python benchmarks/bench_resume.py --at 0.25 --at 0.75     # other kill points
    .venv/bin/python benchmarks/bench_resume.py --quick                 # smoke: 2 tiny cells

For each ``train.checkpoint_every`` asked (default: the spec's own), three ``ablate run``/``resume`` commands
run as a user runs them, each a subprocess that starts its own local Ray and writes a fresh SQLite store:

1. **undisturbed**: ``ablate run SPEC``: wall ``T`` (the dashboard included, as ``resume`` builds one too).
2. **killed**: the same in another state folder, SIGKILLed (the driver only, as a lost login node or an OOM
   killer does) once the steps in MLflow reach the kill point ``at`` of the sweep's steps (Σ over cells of
   each cell's last logged step ÷ Σ of their steps; the driver writes every 5 s, so the progress read is a
   little behind the cells). Its wall until the kill: ``t_kill``, the progress read then: ``p``.
3. **resumed**: ``ablate resume SPEC`` on that state folder: wall ``R``. Finished cells are skipped, cells
   with a checkpoint continue from it, the others start over (the quickstart writes no checkpoint before a
   cell's end unless ``train.checkpoint_every`` is set).

Reported: ``R / (T − t_kill)``: the resume's wall over the wall the undisturbed run spent after the same
point, i.e. what finishing costs after a kill relative to not having been killed (1.0: nothing lost; the
excess is the second start-up and the work redone since the last checkpoint); and ``(t_kill + R) / T``,
the whole job's wall with a kill over without. Every command's statuses are checked: all cells finished.
``RAY_ADDRESS`` and ``MLFLOW_TRACKING_URI`` are removed from the commands' environment; each command's Ray
uses its own temporary folder (``RAY_TMPDIR``) so that the killed driver's Ray processes are waited for, not
anyone else's.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
QUICK = {"grid": {"norm": ["token_ln", "global_ln"]},
         "backbone": {"name": "swinir-tiny", "embed_dim": 16, "depths": [1, 1], "num_heads": 2, "window_size": 4},
         "train": {"steps": 40, "batch_size": 2, "patch_size": 16, "val_size": 16, "eval_every": 20,
                   "lowprec_eval": False},
         "probes": {"every": 5, "patch_size": 16}}


def _spec_file(src: Path, folder: Path, checkpoint_every: int | None, quick: bool) -> tuple[Path, str, int]:
    """A copy of the spec (with the overrides) in ``folder``; its experiment name and Σ of its cells' steps."""
    from ablate.spec import expand, parse_experiment

    raw: dict[str, Any] = yaml.safe_load(src.read_text())
    raw.pop("eval", None)
    if quick:
        raw.update(QUICK)
        raw.pop("include", None)
    if checkpoint_every is not None:
        raw.setdefault("train", {})["checkpoint_every"] = checkpoint_every
    raw["name"] = f"{raw['name']}-resume-bench"
    path = folder / "spec.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    cells = expand(parse_experiment(raw))
    return path, raw["name"], sum(c.train.steps for c in cells)


def _env(ray_tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI", "ABLATE_STATE_DIR")}
    env.update(RAY_TMPDIR=str(ray_tmp), PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")])))
    return env


def _command(verb: str, spec: Path, state: Path, ray_tmp: Path, log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-c", "from ablate.cli import main; main()", verb, str(spec), "--state-dir", str(state)],
                                env=_env(ray_tmp), stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)


def _steps_logged(state: Path, experiment: str) -> int:
    """Σ over the experiment's cells of the last step in MLflow (0 while the store is being written)."""
    db = state / "mlflow.db"
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True, timeout=1) as con:
            rows = con.execute(
                "SELECT MAX(m.step) FROM metrics m JOIN tags t ON t.run_uuid = m.run_uuid AND t.key = 'ablate.cell' "
                "JOIN runs r ON r.run_uuid = m.run_uuid JOIN experiments e ON e.experiment_id = r.experiment_id "
                "WHERE e.name = ? AND m.key = 'train/loss' GROUP BY t.value", (experiment,)).fetchall()
    except sqlite3.Error:
        return 0
    return sum(int(step) for (step,) in rows)


def _statuses(state: Path, experiment: str) -> dict[str, str]:
    from ablate.track import RunStore

    runs = RunStore("sqlite:///" + (state / "mlflow.db").resolve().as_posix()).runs(experiment)
    return {r["cell"]: r["tags"].get("ablate.status", "?") for r in runs}


def _ray_pids(ray_tmp: Path) -> list[int]:
    """Processes of the Ray started under ``ray_tmp`` (their command line or environment names it)."""
    found, mark = [], str(ray_tmp).encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            proc = Path("/proc") / entry
            if mark in (proc / "cmdline").read_bytes() or mark in (proc / "environ").read_bytes():
                found.append(int(entry))
        except OSError:
            continue
    return found


def _finish(proc: subprocess.Popen[bytes], what: str, log: Path, timeout: float) -> None:
    if proc.wait(timeout) != 0:
        sys.exit(f"{what} exited {proc.returncode}: see {log}\n{log.read_text()[-3000:]}")


def measure(spec_src: Path, work: Path, checkpoint_every: int | None, at: float, quick: bool,
            timeout: float) -> dict[str, Any]:
    work.mkdir(parents=True)
    # Ray's socket paths must stay under 107 bytes: its folders short, in /tmp
    rays = {k: Path(tempfile.mkdtemp(prefix=f"rb{k}-", dir="/tmp")) for k in "abc"}
    try:
        return _measure(spec_src, work, rays, checkpoint_every, at, quick, timeout)
    finally:
        for folder in rays.values():
            shutil.rmtree(folder, ignore_errors=True)


def _measure(spec_src: Path, work: Path, rays: dict[str, Path], checkpoint_every: int | None, at: float,
             quick: bool, timeout: float) -> dict[str, Any]:
    spec, name, total = _spec_file(spec_src, work, checkpoint_every, quick)
    log = work / "commands.log"

    t0 = time.perf_counter()
    _finish(_command("run", spec, work / "undisturbed", rays["a"], log), "the undisturbed run", log, timeout)
    undisturbed = time.perf_counter() - t0
    assert set(_statuses(work / "undisturbed", name).values()) == {"finished"}

    state = work / "killed"
    t0 = time.perf_counter()
    proc = _command("run", spec, state, rays["b"], log)
    progress = 0.0
    while proc.poll() is None:
        progress = _steps_logged(state, name) / total
        if progress >= at:
            break
        time.sleep(0.2)
    if proc.poll() is not None:
        sys.exit(f"the run ended before {at:.0%} of its steps were seen in MLflow (at {progress:.0%}): "
                 "a kill point this late needs longer cells")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    t_kill = time.perf_counter() - t0
    deadline = time.monotonic() + 60
    while _ray_pids(rays["b"]) and time.monotonic() < deadline:  # Ray follows its driver (fate sharing)
        time.sleep(0.2)
    left = _ray_pids(rays["b"])
    for pid in left:  # past a minute: end them, so the resume does not share the cores with them
        os.kill(pid, signal.SIGKILL)

    t0 = time.perf_counter()
    _finish(_command("resume", spec, state, rays["c"], log), "the resume", log, timeout)
    resumed = time.perf_counter() - t0
    statuses = _statuses(state, name)
    assert set(statuses.values()) == {"finished"}, statuses
    return {"checkpoint_every": checkpoint_every, "cells": len(statuses), "T": undisturbed, "at": at, "p": progress,
            "t_kill": t_kill, "R": resumed, "ray_left": len(left),
            "cost": resumed / (undisturbed - t_kill) if undisturbed > t_kill else None, "whole": (t_kill + resumed) / undisturbed}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("spec", nargs="?", type=Path, default=ROOT / "experiments" / "quickstart.yaml")
    ap.add_argument("--checkpoint-every", type=int, nargs="+", default=[None],
                    help="train.checkpoint_every values to measure (default: the spec's own)")
    ap.add_argument("--at", type=float, action="append", help="kill points, fractions of the sweep's steps (0.5)")
    ap.add_argument("--quick", action="store_true", help="smoke: two tiny cells (the numbers mean nothing)")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds one command may take")
    ap.add_argument("--keep", type=Path, help="keep the state folders and the commands' log here")
    args = ap.parse_args()
    kill_points = args.at or [0.5]
    if not all(0 < a < 1 for a in kill_points):
        ap.error(f"--at: expected fractions between 0 and 1, got {kill_points}")
    root = args.keep or Path(tempfile.mkdtemp(prefix="bench-resume-"))
    rows = []
    try:
        for every in args.checkpoint_every:
            for at in kill_points:
                label = f"ckpt{'-spec' if every is None else every}-at{int(at * 100)}"
                rows.append(measure(args.spec.resolve(), root / label, every, at, args.quick, args.timeout))
                print(f"  {label}: {rows[-1]}", file=sys.stderr, flush=True)
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    print(f"\n{args.spec.name}{' (--quick)' if args.quick else ''}, load average before: "
          f"{os.getloadavg()[0]:.1f}\n")
    print("| checkpoint_every | cells | undisturbed T | kill at (progress seen) | t_kill | resume R "
          "| R / (T − t_kill) | (t_kill + R) / T |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        every = "spec's" if r["checkpoint_every"] is None else r["checkpoint_every"]
        print(f"| {every} | {r['cells']} | {r['T']:.1f} s | {r['at']:.0%} ({r['p']:.0%}) | {r['t_kill']:.1f} s "
              f"| {r['R']:.1f} s | {'n/a' if r['cost'] is None else format(r['cost'], '.2f')} | {r['whole']:.2f} |")


if __name__ == "__main__":
    main()
