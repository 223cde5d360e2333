"""Benchmark: build the dashboard of a 200-cell experiment with 1,000-step traces (target ≤ 10 s).

    .venv/bin/python benchmarks/bench_dashboard.py                 # 200 cells × 1,000 steps
    .venv/bin/python benchmarks/bench_dashboard.py --cells 40 --steps 200 --keep /tmp/bench-store
    .venv/bin/python benchmarks/bench_dashboard.py --keep /tmp/bench-store --static   # the SVG fallback too

What it does, all in one run:
1. Creates the experiment through the real ``Tracker``: a sweep run, 200 cell runs with params, tags,
   statuses and summary metrics (5 variants × 4 seeds × 2 backbones × 5 tasks; some diverged/failed).
2. Loads the per-step traces (36 probe keys + train/loss every step, validation every 10 steps:
   ~37,000 points per cell, 7.4 M in all) straight into MLflow's SQLite tables — through
   ``log_batch`` that would take ~20 minutes here (MLflow's store writes ~6,000 metrics/s), which
   measures nothing about the dashboard. One cell is read back through ``MlflowClient`` and compared
   value by value, so the rows are exactly what MLflow itself returns.
3. Measures the Tracker's own logging rate on one full cell (``tracker.log`` + ``flush``), and the
   history read time of the SQLite reader against ``MlflowClient.get_metric_history`` on a subset.
4. Builds both dashboards (``dashboards/norm-ablation.yaml``, the default, and ``divergence.yaml``)
   as ``ablate dashboard`` does — interactive plotly.js plots when the plotly package is installed —
   and reports the wall time per phase, the CPU time of the build (robust to other load on a shared
   machine) and the page size; ``--static`` also builds the matplotlib-SVG fallback.
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ablate.report import build_dashboard  # noqa: E402
from ablate.testing.synthetic import SyntheticCell, log_synthetic, synthetic_cells  # noqa: E402
from ablate.track import RunStore, Tracker, sqlite_path  # noqa: E402

VARIANTS = ("token_ln", "rms_norm", "batch_norm", "global_ln", "i_ln")
BACKBONES = ("swinir-tiny", "hat-tiny")
TASKS = ("sr-x2", "sr-x4", "dn-s25", "car-q10", "car-q40")


def make_cells(n_cells: int, steps: int) -> list[SyntheticCell]:
    seeds = max(1, n_cells // (len(VARIANTS) * len(BACKBONES) * len(TASKS)))
    outcomes = {("token_ln", seeds - 1): "diverged", ("rms_norm", seeds - 1): "diverged",
                ("batch_norm", max(0, seeds - 2)): "failed"} if seeds >= 2 else {}
    cells = synthetic_cells(VARIANTS, tuple(range(seeds)), backbones=BACKBONES, tasks=TASKS, steps=steps,
                            probe_every=1, eval_every=10, outcomes=outcomes)
    return cells[:n_cells]


def bulk_load_traces(db: Path, runs: dict[str, str], cells: list[SyntheticCell]) -> int:
    """Insert every trace point as MLflow's SQL store would (metrics + latest_metrics rows)."""
    con = sqlite3.connect(db)
    con.execute("PRAGMA synchronous = OFF")  # this connection only; the file keeps MLflow's settings
    ts = int(time.time() * 1000)
    total = 0
    with con:
        for cell in cells:
            rid = runs[cell.id]
            rows, latest = [], []
            for key, (steps, values) in cell.traces.items():
                nan = np.isnan(values)
                vals = np.where(nan, 0.0, values)
                rows.extend(zip([key] * len(steps), vals.tolist(), [ts] * len(steps), [rid] * len(steps),
                                steps.tolist(), nan.astype(int).tolist()))
                i = int(np.argmax(steps))
                latest.append((key, float(vals[i]), ts, int(steps[i]), int(nan[i]), rid))
            con.executemany("INSERT INTO metrics (key, value, timestamp, run_uuid, step, is_nan) "
                            "VALUES (?, ?, ?, ?, ?, ?)", rows)
            con.executemany("INSERT OR REPLACE INTO latest_metrics (key, value, timestamp, step, is_nan, run_uuid) "
                            "VALUES (?, ?, ?, ?, ?, ?)", latest)
            total += len(rows)
    con.close()
    return total


def check_against_client(uri: str, run_id: str, cell: SyntheticCell) -> None:
    """The bulk-loaded rows read back through MlflowClient equal the generated traces."""
    hist = RunStore(uri, use_sql=False).histories([run_id], keys=list(cell.traces))[run_id]
    for key, (steps, values) in cell.traces.items():
        got_steps, got = hist[key]
        assert np.array_equal(got_steps, steps), key
        assert np.allclose(got, values, equal_nan=True), key


def tracker_rate(state_dir: Path, cell: SyntheticCell) -> tuple[int, float, float]:
    """(metrics, wall seconds, Tracker.log_time) for logging one cell's full traces via the Tracker."""
    tracker = Tracker(None, state_dir)
    t0 = time.perf_counter()
    base = tracker.log_time
    log_synthetic(tracker, "bench-tracker-rate", [cell])
    n = sum(len(s) for s, _ in cell.traces.values())
    return n, time.perf_counter() - t0, tracker.log_time - base


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", type=int, default=200)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--keep", type=Path, default=None, help="store folder to keep (and reuse when filled)")
    ap.add_argument("--subset", type=int, default=10, help="cells for the client-vs-SQLite read comparison")
    ap.add_argument("--static", action="store_true", help="also build the static (matplotlib SVG) pages")
    args = ap.parse_args()
    state = args.keep or Path(tempfile.mkdtemp(prefix="ablate-bench-"))
    name = f"bench-{args.cells}x{args.steps}"
    cells = make_cells(args.cells, args.steps)
    print(f"cells: {len(cells)} ({sum(c.status != 'finished' for c in cells)} not finished), "
          f"{args.steps} steps, {sum(len(s) for c in cells for s, _ in c.traces.values()):,} trace points")

    t0 = time.perf_counter()
    tracker = Tracker(None, state)
    uri = tracker.tracking_uri
    t_open = time.perf_counter() - t0
    db = sqlite_path(uri)
    assert db is not None
    store = RunStore(uri)
    if store.runs(name):
        print(f"reusing the filled store in {state}")
        runs = {r["cell"]: r["run_id"] for r in store.runs(name)}
    else:
        t0 = time.perf_counter()
        runs = log_synthetic(tracker, name, cells, traces=False)
        t_runs = time.perf_counter() - t0
        print(f"Tracker: open {t_open:.1f} s; {len(runs)} cell runs with params, tags, summaries in {t_runs:.1f} s "
              f"({tracker.calls} MLflow calls, {tracker.log_time - t_open:.1f} s inside MLflow)")
        t0 = time.perf_counter()
        n = bulk_load_traces(db, runs, cells)
        print(f"bulk-loaded {n:,} trace rows in {time.perf_counter() - t0:.1f} s "
              f"(store: {db.stat().st_size / 2**20:.0f} MiB)")
    check_against_client(uri, runs[cells[0].id], cells[0])
    print("bulk rows verified against MlflowClient.get_metric_history: identical")

    n, wall, inside = tracker_rate(state / "rate", cells[0])
    print(f"Tracker.log + flush of one full cell: {n:,} metrics in {wall:.1f} s "
          f"({n / wall:,.0f}/s; {inside:.1f} s inside MLflow, {inside / wall:.0%})")

    subset = [runs[c.id] for c in cells[:args.subset]]
    keys = ["val/psnr", "feat/g0.b0/msq", "feat/g0.b3/msq", "feat/g1.b3/msq", "feat/g0.b0/entropy",
            "feat/g0.b3/entropy", "feat/g1.b3/entropy"]
    t0 = time.perf_counter()
    fast = RunStore(uri).histories(subset, keys=keys)
    t_sql = time.perf_counter() - t0
    t0 = time.perf_counter()
    slow = RunStore(uri, use_sql=False).histories(subset, keys=keys)
    t_client = time.perf_counter() - t0
    assert all(np.array_equal(fast[r][k][1], slow[r][k][1], equal_nan=True) for r in subset for k in fast[r])
    print(f"history read, {len(subset)} cells × {len(keys)} keys: SQLite {t_sql:.2f} s, MlflowClient "
          f"{t_client:.2f} s ({t_client / max(t_sql, 1e-9):.0f}× slower; ≈{t_client * len(cells) / len(subset):.0f} s "
          f"for all {len(cells)} cells)")

    for interactive in (None, False) if args.static else (None,):
        for spec in (None, ROOT / "dashboards" / "divergence.yaml"):
            timings: dict[str, float] = {}
            label = "default" if spec is None else spec.stem
            cpu = time.process_time()
            out = build_dashboard(spec, name, uri, state / f"{name}-{label}{'-static' if interactive is False else ''}.html",
                                  stats=timings, interactive=interactive)
            cpu = time.process_time() - cpu
            size = out.stat().st_size
            mode = "static SVG" if interactive is False else ("interactive" if "Plotly.newPlot" in out.read_text()
                                                               else "static SVG: no plotly")
            print(f"dashboard {('norm-ablation' if spec is None else spec.stem)!r} ({mode}): {timings['total_s']:.1f} s "
                  f"(read {timings['read_s']:.1f} s, plots {timings['plots_s']:.1f} s, html {timings['render_s']:.2f} s; "
                  f"CPU {cpu:.1f} s); page {size / 2**20:.2f} MiB -> {out}")
    if args.keep is None:
        shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    main()
