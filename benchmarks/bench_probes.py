"""Probe overhead of a training run (target ≤ 1.05×) and training speed of the CPU backbones.

    .venv/bin/python benchmarks/bench_probes.py                 # swinir-tiny, 300 steps, probes every 50 vs off
    .venv/bin/python benchmarks/bench_probes.py --quick         # smoke: 10 steps, tiny patches
    .venv/bin/python benchmarks/bench_probes.py --steps 500 --repeats 2 --backbone hat-tiny
    .venv/bin/python benchmarks/bench_probes.py --skip-rates    # overhead only

Part 1, probe overhead: the same cell (``--backbone``, token_ln, SR x2, batch 4, 48x48 HR patches,
Adam) trained through the real trial engine, ``ablate.train.run_cell``, once with ``probes.every:
50`` (the default; plus the step-0 probe) and once with ``probes.every: 0``. Evaluation is kept out of
the way: ``eval_every`` larger than the run (so only the one final evaluation runs) and
``lowprec_eval: false``. After one short untimed warmup run, the runs alternate off, on, on, off, ...
(``--repeats`` per condition), so a drift in machine load cancels; the table gives the median of each
condition. Reported:

- ``wall``: the process's wall clock around ``run_cell`` (model build, data, training, probes, final
  evaluation) — the number a user waits for; its ratio on/off is the headline (target ≤ 1.05).
- the engine's own timers from the result's summary: ``time/train_s`` (optimizer steps only),
  ``time/probe_s`` (probe passes), ``time/eval_s``, ``time/total_s``; ``probe_s / train_s`` is
  the overhead with model building and evaluation taken out.

Part 2, steps/s of swinir-tiny, swinir-light and hat-tiny at the same settings with probes every 50:
``steps / time/train_s`` (training only) and ``steps / (train_s + probe_s)``.

Threads: torch's default (``torch.get_num_threads()``, all cores) unless ``--threads``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import torch

from ablate.spec import CellSpec, expand, parse_experiment
from ablate.train import NullReporter, run_cell

RATE_BACKBONES = ("swinir-tiny", "swinir-light", "hat-tiny")
TIMERS = ("time/train_s", "time/probe_s", "time/eval_s", "time/total_s")


def make_cell(args: argparse.Namespace, backbone: str, probe_every: int, steps: int) -> CellSpec:
    """One cell, built through the YAML schema (so it is validated exactly like an experiment file)."""
    raw: dict[str, Any] = {
        "name": "bench-probes",
        "norm": args.norm,
        "backbone": backbone,
        "task": "sr-x2",
        "seed": 0,
        "data": "skimage",
        "train": {
            "steps": steps,
            "batch_size": args.batch,
            "patch_size": args.patch,
            "optimizer": {"name": "adam", "lr": 2.0e-4},
            "eval_every": 10 * steps,  # never inside the run: only the final evaluation
            "lowprec_eval": False,
            "val_size": args.val_size,
            "device": "cpu",
        },
        "probes": {"every": probe_every},
    }
    (cell,) = expand(parse_experiment(raw))
    return cell


def timed_run(cell: CellSpec) -> dict[str, float]:
    t0 = time.perf_counter()
    result = run_cell(cell, NullReporter())
    wall = time.perf_counter() - t0
    if result.status != "finished":
        raise SystemExit(f"the benchmark cell ended {result.status}: {result.reason}")
    return {"wall": wall, **{k: result.summary[k] for k in TIMERS}, "steps": result.summary["steps"]}


def overhead(args: argparse.Namespace) -> None:
    cells = {"off": make_cell(args, args.backbone, 0, args.steps),
             "on": make_cell(args, args.backbone, args.every, args.steps)}
    # untimed warmup run (probes on, so both code paths are warm): the first run in a process pays
    # one-time costs (lazy imports, allocator growth, image decoding) that would land on one condition
    if args.warmup_steps:
        timed_run(make_cell(args, args.backbone, args.every, args.warmup_steps))
    runs: dict[str, list[dict[str, float]]] = {"off": [], "on": []}
    order: list[str] = []
    for i in range(args.repeats):
        order += ["off", "on"] if i % 2 == 0 else ["on", "off"]  # off on on off ...: drift cancels
    for i, cond in enumerate(order, 1):
        runs[cond].append(timed_run(cells[cond]))
        r = runs[cond][-1]
        print(f"  run {i}/{len(order)} probes {cond:>3}: wall {r['wall']:.2f} s, train {r['time/train_s']:.2f} s, "
              f"probe {r['time/probe_s']:.3f} s", flush=True)

    med = {cond: {k: statistics.median(r[k] for r in rs) for k in ("wall", *TIMERS)} for cond, rs in runs.items()}
    n_probes = args.steps // args.every + 1  # + the step-0 probe
    print(f"\n### Probe overhead: {args.backbone}, {args.norm}, {args.steps} steps, probes every {args.every} "
          f"({n_probes} probe passes) vs off; median of {args.repeats}\n")
    print("| | wall s | time/train_s | time/probe_s | time/eval_s | time/total_s |")
    print("|---|---|---|---|---|---|")
    for cond in ("off", "on"):
        m = med[cond]
        print(f"| probes {cond} | {m['wall']:.2f} | {m['time/train_s']:.2f} | {m['time/probe_s']:.3f} | "
              f"{m['time/eval_s']:.2f} | {m['time/total_s']:.2f} |")
    on, off = med["on"], med["off"]
    ratio = on["wall"] / off["wall"]
    print(f"\nwall ratio on/off: **{ratio:.3f}** (target ≤ 1.05: {'met' if ratio <= 1.05 else 'NOT met'})")
    print(f"probe share: time/probe_s / time/train_s = {on['time/probe_s'] / on['time/train_s']:.3%} "
          f"({1e3 * on['time/probe_s'] / n_probes:.1f} ms per probe pass)")
    print(f"training-loop ratio (train_s + probe_s with probes) / (train_s without) = "
          f"{(on['time/train_s'] + on['time/probe_s']) / off['time/train_s']:.3f}")


def rates(args: argparse.Namespace) -> None:
    print(f"\n### Training speed, {args.rate_steps} steps, batch {args.batch}, HR {args.patch}x{args.patch}, "
          f"probes every {args.every}, {torch.get_num_threads()} threads\n")
    print("| backbone | params | steps/s (train) | steps/s (train + probes) | ms/step | wall s |")
    print("|---|---|---|---|---|---|")
    for backbone in args.rate_backbones:
        cell = make_cell(args, backbone, args.every, args.rate_steps)
        t0 = time.perf_counter()
        result = run_cell(cell, NullReporter())
        wall = time.perf_counter() - t0
        s = result.summary
        steps = s["steps"]
        print(f"| {backbone} | {int(s['params']):,} | {steps / s['time/train_s']:.2f} | "
              f"{steps / (s['time/train_s'] + s['time/probe_s']):.2f} | {1e3 * s['time/train_s'] / steps:.0f} | "
              f"{wall:.1f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="swinir-tiny", help="backbone of the overhead runs")
    parser.add_argument("--norm", default="token_ln")
    parser.add_argument("--steps", type=int, default=None, help="training steps per overhead run (default 300)")
    parser.add_argument("--every", type=int, default=None, help="probe period of the 'on' runs (default 50)")
    parser.add_argument("--repeats", type=int, default=None, help="runs per condition (default 2)")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--patch", type=int, default=None, help="HR patch side (default 48)")
    parser.add_argument("--val-size", type=int, default=None, help="validation crop side (default 96)")
    parser.add_argument("--warmup-steps", type=int, default=None,
                        help="steps of an untimed warmup run before the overhead runs (default 20; 0: none)")
    parser.add_argument("--rate-steps", type=int, default=None, help="steps per backbone in part 2 (default 100)")
    parser.add_argument("--rate-backbones", nargs="+", default=list(RATE_BACKBONES))
    parser.add_argument("--skip-rates", action="store_true", help="only the overhead measurement")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 10 steps, probes every 5, 32x32 patches, 1 repeat, 2 steps per backbone")
    args = parser.parse_args()

    preset = {"steps": 300, "every": 50, "repeats": 2, "patch": 48, "val_size": 96, "rate_steps": 100,
              "warmup_steps": 20}
    if args.quick:
        preset.update(steps=10, every=5, repeats=1, patch=32, val_size=32, rate_steps=2, warmup_steps=2)
    for key, value in preset.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.every < 1 or args.steps < 1 or args.repeats < 1:
        raise SystemExit("--steps, --every and --repeats must be positive")
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, CPU, {torch.get_num_threads()} threads; overhead: {args.backbone}, "
          f"{args.steps} steps × {args.repeats} per condition")
    overhead(args)
    if not args.skip_rates:
        rates(args)


if __name__ == "__main__":
    main()
