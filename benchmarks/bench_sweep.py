"""Orchestration cost: the quickstart sweep on Ray + MLflow vs the same cells run one after another.

    .venv/bin/python benchmarks/bench_sweep.py                   # experiments/quickstart.yaml as it is (200 steps)
    .venv/bin/python benchmarks/bench_sweep.py --steps 100       # shorter cells, same grid
    .venv/bin/python benchmarks/bench_sweep.py --quick           # smoke: 2 cells × 4 steps
    .venv/bin/python benchmarks/bench_sweep.py --no-dashboard --keep /tmp/bench-sweep

Two measurements of the same cells, in one process, one after the other (sequential first, unless
``--sweep-first``):

1. **sequential**: ``ablate.spec.expand`` + ``ablate.train.run_cell`` for each cell in this process,
   with ``torch.set_num_threads(os.cpu_count())``, no Ray, no MLflow, no checkpoints — the best a user
   could do by hand with a for loop.
2. **sweep**: ``ablate.tune.run_sweep(spec, SweepOptions(state_dir=tmp, tracking_uri=sqlite in tmp,
   dashboard=...))`` — what ``ablate run`` does: a fresh local Ray cluster, one trial per cell at the
   spec's ``resources.cpus_per_trial`` (1 in the quickstart: two 1-thread cells at a time on 2 cores),
   every report logged to MLflow by the driver, checkpoints and samples written, and the dashboard.

Reported:

- **ratio** = sweep wall / sequential wall (target ≤ 0.75 on 2 cores): the sweep must *win*, because
  two 1-thread cells use 2 cores better than one 2-thread cell does.
- **fixed cost per cell** = (sweep wall × k − Σ cell s) / cells, where k is the sweep's concurrency
  (min(cells, max_concurrent or cpus / cpus_per_trial)) and Σ cell s the sum of the cells' own
  ``time/total_s`` (build, train, probe, evaluate, inside the worker, read back from MLflow). It is
  every core-second the sweep spends on something other than the cells' work: Ray startup, worker
  start and imports, MLflow logging on the driver, checkpoints, the dashboard, and cores left idle at
  the tail. Shown also without Ray startup and the dashboard, which are paid once per sweep.
- **setup**: from calling ``run_sweep`` until it queues the trials (importing Ray Tune, opening the
  MLflow store and starting the sweep run, ``ray.init``), found from the time of its "running N
  cells" line; the rest of the wall is the trials, their logging, the dashboard and teardown.
- **Ray startup**: ``ray.init`` (as ``run_sweep`` calls it) timed on its own after the sweep, after
  ``ray.shutdown``.
- **dashboard**: its build rebuilt once on its own after the sweep (when the sweep built one).
- **MLflow share** = ``SweepSummary.mlflow_s`` (every second the driver spent inside MLflow calls) /
  Σ cell s.

``--steps N`` overrides ``train.steps`` of every cell (the quickstart has 200), ``--cells N`` keeps
the first N cells. ``RAY_ADDRESS`` and ``MLFLOW_TRACKING_URI`` are ignored (removed from this process's
environment) so the benchmark always measures a fresh local cluster and a throwaway SQLite store.
"""

from __future__ import annotations

import argparse
import io
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import yaml

from ablate.spec import CellSpec, ExperimentSpec, expand, parse_experiment
from ablate.train import NullReporter, run_cell

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SPEC = ROOT / "experiments" / "quickstart.yaml"


def load_spec(path: Path, steps: int | None, n_cells: int | None) -> ExperimentSpec:
    """The experiment file, with ``train.steps`` overridden and/or cut to its first ``n_cells`` cells.

    Both edits go through the raw YAML mapping and :func:`parse_experiment`, so the result is
    validated like any experiment file. Cutting replaces the grid by ``include`` entries naming every
    axis of the kept cells, so they keep their ids.
    """
    raw: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8"))
    if steps is not None:
        raw.setdefault("train", {})["steps"] = steps
    spec = parse_experiment(raw, file=str(path))
    if n_cells is None:
        return spec
    cells = expand(spec)[:n_cells]
    axes = spec.axes
    entries = []
    for cell in cells:
        cfg = cell.to_config()
        entry = {}
        for axis in axes:
            node: Any = cfg
            for key in axis.split("."):
                node = node[key]
            entry[axis] = node
        entries.append(entry)
    for key in ("grid", "include", "exclude"):
        raw.pop(key, None)
    if entries and entries[0]:
        raw["include"] = entries
    spec = parse_experiment(raw, file=str(path))
    kept = [c.id for c in expand(spec)]
    assert kept == [c.id for c in cells], "cutting the grid changed the cells"
    return spec


def run_sequential(cells: list[CellSpec]) -> tuple[float, list[float]]:
    """Wall time of running every cell in turn with all cores, and each cell's own time/total_s."""
    torch.set_num_threads(os.cpu_count() or 1)
    own = []
    t0 = time.perf_counter()
    for i, cell in enumerate(cells, 1):
        result = run_cell(cell, NullReporter())
        own.append(result.summary["time/total_s"])
        print(f"  sequential {i}/{len(cells)}: {cell.id} {result.status} in {own[-1]:.1f} s", flush=True)
    return time.perf_counter() - t0, own


class TimedStream(io.StringIO):
    """The sweep's output stream, with the time of every write (to split the sweep's wall into phases)."""

    def __init__(self, echo: bool) -> None:
        super().__init__()
        self.echo = echo
        self.marks: list[tuple[float, str]] = []

    def write(self, text: str) -> int:
        self.marks.append((time.perf_counter(), text))
        if self.echo:
            sys.stdout.write(text)
        return super().write(text)

    def first(self, prefix: str) -> float | None:
        return next((t for t, text in self.marks if text.startswith(prefix)), None)


def run_ray_sweep(spec: ExperimentSpec, state_dir: Path, dashboard: bool, verbose: bool) -> dict[str, Any]:
    from ablate.track import RunStore
    from ablate.tune import SweepOptions, run_sweep

    uri = "sqlite:///" + (state_dir / "mlflow.db").as_posix()
    stream = TimedStream(echo=verbose)
    t0 = time.perf_counter()
    summary = run_sweep(spec, SweepOptions(state_dir=state_dir, tracking_uri=uri, dashboard=dashboard,
                                           stream=stream))
    wall = time.perf_counter() - t0
    if not summary.ok:
        raise SystemExit(f"the sweep did not finish cleanly: {summary.statuses}\n{stream.getvalue()}")
    runs = RunStore(uri).runs(spec.name)
    own = {r["cell"]: r["metrics"].get("time/total_s", math.nan) for r in runs}
    # run_sweep writes "running N cells ..." just before it builds the Tuner: everything before it is
    # setup (importing Ray Tune, opening the MLflow store, the sweep run, ray.init)
    t_tune = stream.first("running ")
    setup = (t_tune - t0) if t_tune is not None else math.nan
    return {"wall": wall, "summary": summary, "own": own, "uri": uri, "setup": setup}


def ray_startup() -> float:
    """Seconds for ``ray.init`` as ``run_sweep`` calls it (a fresh local cluster)."""
    import ray

    from ablate.tune._setup import init_ray

    if ray.is_initialized():
        ray.shutdown()
    t0 = time.perf_counter()
    init_ray(None, None)
    dt = time.perf_counter() - t0
    ray.shutdown()
    return dt


def dashboard_time(name: str, uri: str, out: Path) -> float:
    from ablate.report import build_dashboard

    t0 = time.perf_counter()
    build_dashboard(None, name, uri, out)
    return time.perf_counter() - t0


def concurrency(spec: ExperimentSpec, n_cells: int) -> int:
    cpus = os.cpu_count() or 1
    per = spec.resources.cpus_per_trial or 1.0
    slots = max(1, int(cpus // per))
    if spec.resources.max_concurrent:
        slots = min(slots, spec.resources.max_concurrent)
    return max(1, min(slots, n_cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spec", type=Path, default=DEFAULT_SPEC, help="experiment file (default: the quickstart)")
    parser.add_argument("--steps", type=int, default=None, help="override train.steps of every cell")
    parser.add_argument("--cells", type=int, default=None, help="keep only the first N cells")
    parser.add_argument("--no-dashboard", dest="dashboard", action="store_false",
                        help="do not build the dashboard at the end of the sweep (ablate run --no-dashboard)")
    parser.add_argument("--sweep-first", action="store_true", help="run the sweep before the sequential baseline")
    parser.add_argument("--keep", type=Path, default=None, help="state folder to keep (default: a temp folder)")
    parser.add_argument("--verbose", action="store_true", help="show the sweep's own progress output")
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 cells × 4 steps")
    args = parser.parse_args()
    if args.quick:
        args.steps = args.steps or 4
        args.cells = args.cells or 2
    if (args.steps is not None and args.steps < 1) or (args.cells is not None and args.cells < 1):
        raise SystemExit("--steps and --cells must be positive")
    for var in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI"):
        if os.environ.pop(var, None):
            print(f"note: ignoring {var} (the benchmark uses a fresh local cluster and a temp store)")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

    spec = load_spec(args.spec, args.steps, args.cells)
    cells = expand(spec)
    k = concurrency(spec, len(cells))
    print(f"{spec.name}: {len(cells)} cells × {cells[0].train.steps} steps; {os.cpu_count()} CPUs; sweep: "
          f"{spec.resources.cpus_per_trial:g} CPU per cell, concurrency {k}; sequential: "
          f"{os.cpu_count()} torch threads")

    tmp = Path(tempfile.mkdtemp(prefix="bench-sweep-")) if args.keep is None else args.keep
    if args.keep is not None and tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True, exist_ok=True)
    try:
        seq_wall = seq_own = sweep = None
        for phase in (("sweep", "seq") if args.sweep_first else ("seq", "sweep")):
            if phase == "seq":
                print("sequential (no Ray, no MLflow):", flush=True)
                seq_wall, seq_own = run_sequential(cells)
            else:
                print("sweep (Ray + MLflow):", flush=True)
                sweep = run_ray_sweep(spec, tmp / "state", args.dashboard, args.verbose)
                print(f"  sweep: {len(cells)} cells in {sweep['wall']:.1f} s", flush=True)
        assert seq_wall is not None and seq_own is not None and sweep is not None
        t_ray = ray_startup()
        summary = sweep["summary"]
        t_dash = dashboard_time(spec.name, sweep["uri"], tmp / "dash.html") if summary.dashboard else 0.0
    finally:
        if args.keep is None:
            shutil.rmtree(tmp, ignore_errors=True)

    own = [sweep["own"].get(c.id, math.nan) for c in cells]
    sum_own = sum(own)
    wall = sweep["wall"]
    n = len(cells)
    ratio = wall / seq_wall
    fixed = (wall * k - sum_own) / n
    fixed_net = ((wall - t_ray - t_dash) * k - sum_own) / n
    driver = [summary.cell_s[c.id] - o for c, o in zip(cells, own) if c.id in summary.cell_s]

    print(f"\n### Orchestration cost: {spec.name}, {n} cells × {cells[0].train.steps} steps, "
          f"{os.cpu_count()} CPUs\n")
    print("| | value |")
    print("|---|---|")
    print(f"| sequential wall (run_cell × {n}, {os.cpu_count()} threads) | {seq_wall:.1f} s |")
    print(f"| sweep wall (run_sweep, concurrency {k}, dashboard {'on' if args.dashboard else 'off'}) | "
          f"{wall:.1f} s (run_sweep's own wall_s {summary.wall_s:.1f} s) |")
    print(f"| **ratio sweep / sequential** (target ≤ 0.75) | **{ratio:.3f}** "
          f"({'met' if ratio <= 0.75 else 'NOT met'}) |")
    print(f"| Σ cell time/total_s: sequential ({os.cpu_count()} threads) / sweep (1 thread each) | "
          f"{sum(seq_own):.1f} s / {sum_own:.1f} s |")
    print(f"| fixed cost per cell = (sweep wall × {k} − Σ cell s) / {n} | {fixed:.2f} s |")
    print(f"| … without Ray startup and dashboard = ((wall − ray − dash) × {k} − Σ cell s) / {n} | "
          f"{fixed_net:.2f} s |")
    if driver:
        print(f"| driver-side cell time − cell's own time/total_s (median) | {statistics.median(driver):.2f} s |")
    print(f"| sweep setup before the first trial is queued (imports, MLflow store + sweep run, ray.init) | "
          f"{sweep['setup']:.2f} s |")
    print(f"| … the rest: trials on Ray Tune, logging, dashboard, teardown (wall − setup) | "
          f"{wall - sweep['setup']:.2f} s |")
    print(f"| Ray startup alone (ray.init, fresh local cluster, timed after the sweep) | {t_ray:.2f} s |")
    print(f"| dashboard build (rebuilt on its own) | {t_dash:.2f} s |")
    print(f"| MLflow time on the driver (SweepSummary.mlflow_s) | {summary.mlflow_s:.2f} s "
          f"({1e3 * summary.mlflow_s / n:.0f} ms per cell) |")
    print(f"| **MLflow share** = mlflow_s / Σ cell s | **{summary.mlflow_s / sum_own:.2%}** |")


if __name__ == "__main__":
    main()
