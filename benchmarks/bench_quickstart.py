"""The quickstart's cost (cell time and fixed cost of `ablate run`) and its signature over seeds.

    .venv/bin/python benchmarks/bench_quickstart.py                    # `ablate run` on the quickstart, cold cache
    .venv/bin/python benchmarks/bench_quickstart.py --warm-cache       # … with the user's cache as it is
    .venv/bin/python benchmarks/bench_quickstart.py --check            # exit 1 when over the recorded budget
    .venv/bin/python benchmarks/bench_quickstart.py --signature        # the trace signature, seeds 0 1 2, no Ray
    .venv/bin/python benchmarks/bench_quickstart.py --signature --seeds 0 1 2 3 --set train.steps=300
    .venv/bin/python benchmarks/bench_quickstart.py --store            # a fresh MLflow store: migrations vs cache
    .venv/bin/python benchmarks/bench_quickstart.py --quick            # smoke: 2 cells × 4 steps

**Cost** (default): runs ``ablate run experiments/quickstart.yaml`` as a user does — a new process,
a fresh state folder, a fresh local Ray, the default SQLite store, the dashboard — with its output
going to a log file (as under ``make quickstart > log``). The user cache holding the empty MLflow
store is a new empty folder (the first run on a machine) unless ``--warm-cache``. Read back from
MLflow afterwards:

- **Σ cell s**: the sum over cells of the driver-side cell time (MLflow run start → end: the trial's
  start, build, training, probes, evaluation, the final report and its logging);
- **fixed cost** = wall − Σ cell s / k, with k the concurrency (CPUs / ``cpus_per_trial``): every
  second of the command's wall that the cells' work does not explain (imports, the MLflow store,
  Ray's start, worker start-up, idle slots at the tail, the dashboard, shutdown); also split into
  **before the first cell started** and **after the last cell ended**;
- **CPU seconds** of the whole process tree (the command, Ray's processes, the workers), sampled from
  /proc every 0.5 s (Linux): the total work, which other load on the machine barely changes.

Wall times stretch on a loaded machine: the load average before and after is printed with them.
``--check`` compares the CPU seconds, Σ cell s and the fixed cost with the figures recorded in
benchmarks/README.md (``RECORDED``) and exits 1 when one is more than ``--tolerance`` (default 1.5)
times it — so a change that doubles the quickstart's work or its fixed cost does not pass unnoticed.

**Signature** (``--signature``): every quickstart cell for each of ``--seeds`` (default 0 1 2),
run in this process through ``ablate.train.run_cell`` on ``expand(load_experiment(...))`` with the
seed replaced — no Ray, no MLflow — in ``--jobs`` worker processes of one torch thread each (as the
sweep runs them; ``--threads 2`` sums in another order, as another CPU would). Prints per seed and variant the deepest block's channel entropy, top-1 channel
share and mean square at step 0 and at the end, the final PSNR and the CPU seconds of the cell, then
checks on every seed: token LN's entropy falls and its top-1 share rises; i_ln's entropy rises and
its msq ends ≥ 100× below token LN's. Exit 1 when a check fails.

**Store** (``--store``): seconds until a fresh state folder's SQLite store can take a run, three ways,
interleaved, ``--repeats`` times (mlflow imported once before): MLflow building the schema itself
(its migrations; the cache made unusable), the first new store on a machine (a cold cache: the empty
store is built once, unsynced) and every later one (a warm cache: a copy).

``--set KEY=VALUE`` (repeatable; YAML values) overrides a field of the experiment file (cost and signature),
``--spec FILE`` benchmarks another experiment file.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SPEC = ROOT / "experiments" / "quickstart.yaml"
# Recorded with this script on the 2-core development VM, default (cold-cache) run, load average 3.7–5.6
# (benchmarks/README.md, "bench_quickstart.py"). --check fails beyond --tolerance × these. The CPU
# seconds barely move with other load; the wall figures stretch with it: check on a quiet machine.
RECORDED = {"cpu_s": 133.0, "cell_sum_s": 206.0, "fixed_s": 29.0}
THRESHOLD_MSQ_RATIO = 100.0


def _spec_file(spec: Path, overrides: list[str], steps: int | None, tmp: Path) -> Path:
    """``spec`` with ``--set`` overrides applied (dotted keys), written to ``tmp``; ``spec`` itself without."""
    if not overrides and steps is None:
        return spec
    raw: dict[str, Any] = yaml.safe_load(spec.read_text(encoding="utf-8"))
    for item in overrides:
        key, _, value = item.partition("=")
        node = raw
        *parents, leaf = key.strip().split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = yaml.safe_load(value)
    if steps is not None:
        raw.setdefault("train", {})["steps"] = steps
    out = tmp / spec.name
    out.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    # relative data paths in the file stay relative to the original's folder
    if out.parent != spec.parent and "path" in str(raw.get("data", "")):
        raise SystemExit("--set on a spec with relative data paths: copy the file next to the original")
    return out


def _load(spec: Path) -> Any:
    from ablate.spec import load_experiment

    return load_experiment(spec)


# cost ------------------------------------------------------------------------------------------------
class TreeCPU:
    """CPU seconds of a process and all its descendants (Ray's processes and workers included), sampled
    from /proc every ``interval`` s until ``stop()``; unavailable where /proc is missing (not Linux)."""

    def __init__(self, pid: int, interval: float = 0.5) -> None:
        self.root, self.interval = pid, interval
        self.cpu: dict[tuple[int, str], float] = {}  # (pid, start time) -> its last CPU seconds
        self.kind: dict[tuple[int, str], str] = {}  # (pid, start time) -> what the process is
        self.tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.available = Path("/proc/self/stat").exists()
        if self.available:
            self._thread.start()

    @staticmethod
    def _stat(pid: int) -> list[str] | None:
        try:
            text = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return None
        return text[text.rindex(")") + 2:].split()  # fields from the 3rd (state) on

    def _kind(self, pid: int) -> str:
        if pid == self.root:
            return "the `ablate run` process"
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            cmd = ""
        return "Ray workers (the cells, their imports)" if "default_worker" in cmd or cmd.startswith("ray::") \
            else "Ray's own processes"

    def _sample(self) -> None:
        parents: dict[int, int] = {}
        stats: dict[int, list[str]] = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and (st := self._stat(int(entry.name))) is not None:
                parents[int(entry.name)], stats[int(entry.name)] = int(st[1]), st
        known = {pid: start for pid, start in self.cpu}
        # the root, its descendants, and processes seen before (Ray reparents some of its own)
        tracked = {self.root} | {pid for pid, start in known.items() if pid in stats and stats[pid][19] == start}
        while new := {pid for pid, ppid in parents.items() if ppid in tracked} - tracked:
            tracked |= new
        for pid in tracked & stats.keys():
            key = (pid, stats[pid][19])
            self.cpu[key] = (int(stats[pid][11]) + int(stats[pid][12])) / self.tick  # utime + stime
            if key not in self.kind:
                self.kind[key] = self._kind(pid)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def stop(self) -> dict[str, float] | None:
        """CPU seconds per kind of process (None without /proc)."""
        self._stop.set()
        if not self.available:
            return None
        self._thread.join()
        out: dict[str, float] = {}
        for key, seconds in self.cpu.items():
            out[self.kind[key]] = out.get(self.kind[key], 0.0) + seconds
        return out


def run_cost(spec_path: Path, tmp: Path, warm_cache: bool, keep_log: Path | None) -> dict[str, Any]:
    """``ablate run`` in a subprocess on a fresh state folder; the figures read back from MLflow."""
    from ablate.track import RunStore, default_tracking_uri

    spec = _load(spec_path)
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI", "ABLATE_STATE_DIR")}
    env.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    env.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    if not warm_cache:
        env["ABLATE_CACHE_DIR"] = str(tmp / "cache")
    state = tmp / "state"
    log = keep_log or tmp / "run.log"
    load_before = os.getloadavg()
    t_launch = time.time()
    with open(log, "w", encoding="utf-8") as out:
        proc = subprocess.Popen([sys.executable, "-c", "from ablate.cli import main; main()", "run", str(spec_path),
                                 "--state-dir", str(state)], env=env, stdout=out, stderr=subprocess.STDOUT, cwd=tmp)
        cpu = TreeCPU(proc.pid)
        proc.wait()
    t_exit = time.time()
    cpu_s = cpu.stop()
    load_after = os.getloadavg()
    text = log.read_text(encoding="utf-8")
    if proc.returncode != 0:
        raise SystemExit(f"`ablate run` exited {proc.returncode}:\n{text[-3000:]}")
    runs = RunStore(default_tracking_uri(state)).runs(spec.name)
    if not runs or any(r["start_time"] is None or r["end_time"] is None for r in runs):
        raise SystemExit(f"no complete cell runs in the store:\n{text[-3000:]}")
    cpus = os.cpu_count() or 1
    per = spec.resources.cpus_per_trial or 1.0
    k = max(1, min(len(runs), int(cpus // per), spec.resources.max_concurrent or len(runs)))
    cell_s = [(r["end_time"] - r["start_time"]) / 1000 for r in runs]
    own_s = [r["metrics"].get("time/total_s", math.nan) for r in runs]
    wall = t_exit - t_launch
    return {"cells": len(runs), "k": k, "wall": wall, "cell_sum": sum(cell_s), "own_sum": sum(own_s),
            "fixed": wall - sum(cell_s) / k, "before": min(r["start_time"] for r in runs) / 1000 - t_launch,
            "after": t_exit - max(r["end_time"] for r in runs) / 1000, "load": (load_before, load_after),
            "cpu": sum(cpu_s.values()) if cpu_s else None, "cpu_by": cpu_s, "log_bytes": len(text.encode()), "log_lines": text.count("\n"), "tail": text[-2500:]}


def print_cost(r: dict[str, Any], spec_path: Path, warm: bool, check: bool, tolerance: float) -> bool:
    (b1, b5, _), (a1, a5, _) = r["load"]
    print(f"\n### `ablate run {spec_path.name}`: {r['cells']} cells, {os.cpu_count()} CPUs, concurrency {r['k']}, "
          f"{'warm' if warm else 'cold (empty)'} user cache\n")
    print(f"load average (1 min, 5 min): {b1:.1f}, {b5:.1f} before; {a1:.1f}, {a5:.1f} after\n")
    print("| | seconds |")
    print("|---|---:|")
    print(f"| wall of `ablate run` (launch → exit) | {r['wall']:.1f} |")
    print(f"| **Σ cell s** (driver-side, MLflow run start → end) | **{r['cell_sum']:.1f}** |")
    print(f"| Σ cell time/total_s (inside the workers) | {r['own_sum']:.1f} |")
    print(f"| **fixed cost** = wall − Σ cell s / {r['k']} | **{r['fixed']:.1f}** |")
    print(f"| … before the first cell started (imports, MLflow store, Ray start, first worker) | {r['before']:.1f} |")
    print(f"| … after the last cell ended (dashboard, shutdown) | {r['after']:.1f} |")
    if r["cpu_by"] is not None:
        print(f"| **CPU seconds** of the whole process tree (sampled every 0.5 s) | **{r['cpu']:.1f}** |")
        for kind, seconds in sorted(r["cpu_by"].items(), key=lambda kv: -kv[1]):
            print(f"| … {kind} | {seconds:.1f} |")
    print(f"\nlog: {r['log_bytes']:,} bytes, {r['log_lines']} lines; its end:\n")
    print("    " + "\n    ".join(r["tail"].rstrip().splitlines()[-25:]))
    ok = True
    for key, value in (("cpu_s", r["cpu"]), ("cell_sum_s", r["cell_sum"]), ("fixed_s", r["fixed"])):
        if value is None:
            continue
        ratio = value / RECORDED[key]
        over = ratio > tolerance
        ok &= not over
        print(f"\n{key}: {value:.1f} s = {ratio:.2f}× the recorded {RECORDED[key]:.0f} s"
              + (f" — over {tolerance:g}×: what changed? (or a slower / busier machine)" if over else ""), end="")
    print()
    return ok or not check


# store -----------------------------------------------------------------------------------------------
def run_store(repeats: int, tmp: Path) -> dict[str, list[tuple[float, float]]]:
    """(wall, CPU) seconds of ``Tracker(None, fresh).experiment_id(...)`` per way, interleaved."""
    import mlflow  # noqa: F401  (imported once: what is compared is the store, not the import)

    from ablate.track import Tracker

    blocker = tmp / "not-a-folder"
    blocker.write_text("")
    caches = {"MLflow's migrations (no usable cache)": lambda rep: blocker / "cache",
              "cold cache (the first store on a machine)": lambda rep: tmp / f"cold-{rep}",
              "warm cache (every later store)": lambda rep: tmp / "warm"}
    os.environ["ABLATE_CACHE_DIR"] = str(tmp / "warm")
    Tracker(None, tmp / "prime").experiment_id("x")  # fills the warm cache
    out: dict[str, list[tuple[float, float]]] = {k: [] for k in caches}
    for rep in range(repeats):
        for i, (way, cache) in enumerate(caches.items()):
            os.environ["ABLATE_CACHE_DIR"] = str(cache(rep))
            t0, c0 = time.perf_counter(), time.process_time()
            Tracker(None, tmp / f"state-{i}-{rep}").experiment_id("quickstart")
            out[way].append((time.perf_counter() - t0, time.process_time() - c0))
    return out


def print_store(result: dict[str, list[tuple[float, float]]]) -> None:
    print(f"\n### A fresh state folder's MLflow store (load average {os.getloadavg()[0]:.1f})\n")
    print("| way | wall s (each run) | CPU s (each run) |")
    print("|---|---|---|")
    for way, runs in result.items():
        print(f"| {way} | {', '.join(f'{w:.2f}' for w, _ in runs)} | {', '.join(f'{c:.2f}' for _, c in runs)} |")


# signature -------------------------------------------------------------------------------------------
class _Recorder:
    """Keeps the probe traces of one cell."""

    def __init__(self) -> None:
        self.traces: list[tuple[int, dict[str, dict[str, float]]]] = []

    def report(self, step: int, metrics: dict[str, float], traces: Any = None, checkpoint: Any = None) -> None:
        if traces:
            self.traces.append((step, {site: dict(stats) for site, stats in traces.items()}))


def _run_one(job: tuple[dict[str, Any], str, int]) -> dict[str, Any]:
    """One cell in this worker process on ``threads`` torch threads: its deepest block's trace and summary."""
    import torch

    from ablate.probes import Probe
    from ablate.spec import CellSpec
    from ablate.train import run_cell

    config, label, threads = job
    torch.set_num_threads(threads)
    cell = CellSpec.from_config(config)
    rec = _Recorder()
    c0 = time.process_time()
    result = run_cell(cell, rec)
    cpu = time.process_time() - c0
    deep = Probe.deepest(rec.traces[0][1])
    return {"label": label, "seed": cell.seed, "site": deep, "status": str(result.status),
            "trace": [(step, t[deep]) for step, t in rec.traces if deep in t], "summary": result.summary, "cpu": cpu}


def run_signature(spec_path: Path, seeds: list[int], variants: list[str] | None, jobs: int,
                  threads: int = 1) -> list[dict[str, Any]]:
    from ablate.spec import expand

    spec = _load(spec_path)
    work = []
    for seed in seeds:
        for cell in expand(spec):
            label = cell.norm_label()
            if variants is None or label in variants:
                work.append((dataclasses.replace(cell, seed=seed).to_config(), label, threads))
    t0 = time.perf_counter()
    out = []
    with multiprocessing.get_context("spawn").Pool(jobs) as pool:
        for i, res in enumerate(pool.imap(_run_one, work), 1):
            out.append(res)
            print(f"  {i}/{len(work)} seed {res['seed']} {res['label']}: {res['status']}, {res['cpu']:.1f} CPU s "
                  f"({time.perf_counter() - t0:.0f} s)", flush=True)
    return out


def signature_table(results: list[dict[str, Any]]) -> tuple[str, list[str]]:
    """The markdown table and the failed checks (empty: the signature holds on every seed)."""
    lines = ["| seed | variant | entropy, step 0 → end | top-1 share, step 0 → end | msq, step 0 → end | "
             "PSNR (dB) | CPU s |", "|---|---|---|---|---|---:|---:|"]
    failures = []
    by_seed: dict[int, dict[str, dict[str, Any]]] = {}
    for r in results:
        by_seed.setdefault(r["seed"], {})[r["label"]] = r
    for seed, cells in sorted(by_seed.items()):
        for label, r in cells.items():
            a, b = r["trace"][0][1], r["trace"][-1][1]
            psnr = r["summary"].get("final/psnr", math.nan)
            lines.append(f"| {seed} | {label} | {a['entropy']:.2f} → {b['entropy']:.2f} | {a['top1']:.3f} → "
                         f"{b['top1']:.3f} | {a['msq']:.3g} → {b['msq']:.3g} | {psnr:.2f} | {r['cpu']:.1f} |")
        tok, iln = cells.get("token_ln"), cells.get("i_ln")
        if tok is None or iln is None:
            failures.append(f"seed {seed}: needs both token_ln and i_ln")
            continue
        t0, t1 = tok["trace"][0][1], tok["trace"][-1][1]
        i0, i1 = iln["trace"][0][1], iln["trace"][-1][1]
        checks = {"token_ln entropy falls": t1["entropy"] < t0["entropy"],
                  "token_ln top-1 share rises": t1["top1"] > t0["top1"],
                  "i_ln entropy rises": i1["entropy"] > i0["entropy"],
                  f"i_ln msq ≥ {THRESHOLD_MSQ_RATIO:g}× below token_ln's":
                      t1["msq"] >= THRESHOLD_MSQ_RATIO * i1["msq"]}
        failures += [f"seed {seed}: NOT {name}" for name, ok in checks.items() if not ok]
        lines.append(f"| {seed} | msq token_ln / i_ln at the end | | | **{t1['msq'] / i1['msq']:.0f}×** | | |")
    return "\n".join(lines), failures


# main ------------------------------------------------------------------------------------------------
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spec", type=Path, default=DEFAULT_SPEC, help="experiment file (default: the quickstart)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a field of the experiment file (dotted key, YAML value); repeatable")
    parser.add_argument("--signature", action="store_true", help="check the trace signature over seeds (no Ray)")
    parser.add_argument("--store", action="store_true", help="time a fresh MLflow store three ways")
    parser.add_argument("--repeats", type=int, default=3, help="repetitions for --store")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds for --signature")
    parser.add_argument("--variants", nargs="+", default=None, help="only these variants (--signature)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="worker processes (--signature)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads per cell (--signature; another count sums in another order, "
                             "as another CPU would)")
    parser.add_argument("--warm-cache", action="store_true", help="use the user's cache as it is (not a new one)")
    parser.add_argument("--check", action="store_true", help="exit 1 when over --tolerance × the recorded figures")
    parser.add_argument("--tolerance", type=float, default=1.5)
    parser.add_argument("--log", type=Path, default=None, help="keep the run's output in this file")
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 cells × 4 steps")
    args = parser.parse_args()
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    tmp = Path(tempfile.mkdtemp(prefix="bench-quickstart-"))
    try:
        steps = 4 if args.quick else None
        if args.quick:
            args.seeds, args.variants = args.seeds[:1], args.variants or ["token_ln", "i_ln"]
            args.overrides += ["include=[{norm: i_ln, rescale: null}]", "grid={norm: [token_ln], rescale: [false]}",
                               "probes.every=2", "train.eval_every=2"]
        if args.store:
            print_store(run_store(1 if args.quick else args.repeats, tmp))
            return
        spec_path = _spec_file(args.spec.resolve(), args.overrides, steps, tmp)
        if args.signature:
            spec = _load(spec_path)
            print(f"{spec.name}: signature over seeds {args.seeds}, {args.jobs} processes of {args.threads} torch "
                  f"thread(s); load average {os.getloadavg()[0]:.1f}", flush=True)
            table, failures = signature_table(run_signature(spec_path, args.seeds, args.variants, args.jobs,
                                                            args.threads))
            print("\n" + table + "\n")
            print("\n".join(failures) if failures else "the signature holds on every seed")
            sys.exit(1 if failures and not args.quick else 0)
        result = run_cost(spec_path, tmp, args.warm_cache, args.log)
        ok = print_cost(result, spec_path, args.warm_cache, args.check and not args.quick, args.tolerance)
        sys.exit(0 if ok else 1)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
