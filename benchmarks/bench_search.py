"""Search at scale on CPU: how much compute a per-variant search needs, and how busy it keeps the slots.

    .venv/bin/python benchmarks/bench_search.py            # swinir-tiny (the preset), 200-step cells on 32×32 patches, SR ×2, 12-point grid
    .venv/bin/python benchmarks/bench_search.py --quick    # smoke: a 2-block swinir-tiny, 20-step cells, 3-point grid, 3 trials

1. **compute ratio** per variant (token_ln, rms_norm): a grid of ``--grid`` lrs log-spaced in
   [1e-4, 3e-3] (``ablate.tune.run_sweep``) gives the best final PSNR; the search (``run_search``: TPE,
   lr log-uniform in the same range, ASHA, ``--trials`` per variant) is read trial by trial in the order
   they ended, summing their training steps until a finished trial is within 0.1 dB of the grid's best.
   Ratio = those steps / the grid's steps (target ≤ 0.4); "not reached" when no trial got there.
2. **busy share** of the trial slots (Σ trial time / (slots × Tune run wall)): the 2-variant search at
   once vs the same trials study after study (one search per variant, run one after the other).
"""

from __future__ import annotations

import argparse
import io
import math
import os
import sys
import tempfile
from pathlib import Path

SPEC = """\
name: {name}
{variants}
backbone: {backbone}
task: sr-x2
seed: 0
train: {{steps: {steps}, batch_size: 4, patch_size: {patch}, val_size: 48, eval_every: {every}, lowprec_eval: false}}
probes: {{every: {steps}, patch_size: 16}}
resources: {{max_concurrent: 2}}
{tail}
"""
NORMS = ["token_ln", "rms_norm"]
# the quickstart's swinir-tiny on its 32×32 patches; --quick: a 2-block one on 24×24
BACKBONE, PATCH = "swinir-tiny", 32
SMALL = "{name: swinir-tiny, embed_dim: 16, depths: [1, 1], num_heads: 2, window_size: 4}"
LOW, HIGH = 1e-4, 3e-3


def _spec(tmp: Path, name: str, variants: str, steps: int, tail: str, quick: bool = False) -> object:
    from ablate.spec import load_experiment

    f = tmp / f"{name}.yaml"
    f.write_text(SPEC.format(name=name, variants=variants, steps=steps, every=max(1, steps // 4), tail=tail,
                             backbone=SMALL if quick else BACKBONE, patch=24 if quick else PATCH))
    return load_experiment(f)


def _search_tail(trials: int, steps: int, grace: int | None = None, reduction: int | None = None) -> str:
    rf = f"  reduction_factor: {reduction}\n" if reduction else ""
    return (f"search:\n  num_samples: {trials}\n  scheduler: asha\n  grace_period: {grace or max(1, steps // 4)}\n"
            f"{rf}  space:\n    train.optimizer.lr: {{type: loguniform, low: {LOW}, high: {HIGH}}}\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="20-step cells, a 3-point grid, 3 trials per variant")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--grid", type=int, default=None, help="lr grid points (default 12)")
    ap.add_argument("--trials", type=int, default=None, help="search trials per variant (default 6)")
    ap.add_argument("--grace", type=int, default=None, help="ASHA grace period in steps (default steps / 4)")
    ap.add_argument("--reduction", type=int, default=None, help="ASHA reduction factor (default: the spec's)")
    args = ap.parse_args()
    steps = args.steps or (20 if args.quick else 200)
    points = args.grid or (3 if args.quick else 12)
    trials = args.trials or (3 if args.quick else 6)
    for var in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI"):
        os.environ.pop(var, None)

    import optuna

    from ablate.tune import SweepOptions, run_search, run_sweep, storage_url

    tmp = Path(tempfile.mkdtemp(prefix="bench-search-"))
    quiet = io.StringIO()
    lrs = [LOW * (HIGH / LOW) ** (i / max(1, points - 1)) for i in range(points)]
    grid_spec = _spec(tmp, "bench-grid", f"grid:\n  norm: {NORMS}\n  train.optimizer.lr: {lrs}", steps, "",
                      args.quick)
    state = tmp / "state"
    grid = run_sweep(grid_spec, SweepOptions(state_dir=state, dashboard=False, stream=quiet))  # type: ignore[arg-type]
    from mlflow.tracking import MlflowClient

    client = MlflowClient(grid.tracking_uri)
    runs = client.search_runs([client.get_experiment_by_name("bench-grid").experiment_id])
    best_grid = {n: max((r.data.metrics.get("final/psnr", -math.inf) for r in runs
                         if r.data.tags.get("ablate.cell") and r.data.params.get("norm", "").startswith(n)),
                        default=-math.inf) for n in NORMS}

    both = run_search(_spec(tmp, "bench-search", f"grid:\n  norm: {NORMS}", steps, _search_tail(trials, steps, args.grace, args.reduction),
                            args.quick),  # type: ignore[arg-type]
                      SweepOptions(state_dir=state, stream=quiet))
    url = storage_url(both.tracking_uri, state)
    print(f"cells of {steps} steps; grid {points} lrs per variant; search {trials} trials per variant (ASHA, grace "
          f"{args.grace or max(1, steps // 4)} steps, reduction factor {args.reduction or 'default'})")
    for s in optuna.get_all_study_summaries(url):
        if not s.study_name.startswith("bench-search/"):
            continue
        label = str(s.user_attrs.get("ablate.variant"))
        target = best_grid.get(label, -math.inf) - 0.1
        used, reached = 0, None
        done = sorted((t for t in optuna.load_study(study_name=s.study_name, storage=url).trials
                       if t.datetime_complete is not None), key=lambda t: t.datetime_complete)
        for t in done:
            used += int(t.user_attrs.get("ablate.steps", 0))
            if t.value is not None and t.value >= target:
                reached = used
                break
        ratio = f"{reached / (points * steps):.2f}" if reached is not None else "not reached"
        best = max((t.value for t in done if t.value is not None), default=float("nan"))
        print(f"  {label}: grid best {best_grid.get(label, float('nan')):.3f} dB, search best {best:.3f} dB; "
              f"compute to within 0.1 dB / grid compute = {ratio}")

    seq = [run_search(_spec(tmp, f"bench-seq-{n}", f"norm: {n}", steps, _search_tail(trials, steps, args.grace, args.reduction),
                            args.quick),  # type: ignore[arg-type]
                      SweepOptions(state_dir=state, stream=quiet)) for n in NORMS]
    seq_busy = sum(s.busy_share * s.fit_s for s in seq) / sum(s.fit_s for s in seq)
    print(f"busy share of {both.slots} trial slots: studies at once {both.busy_share:.0%} "
          f"({both.fit_s:.0f} s), study after study {seq_busy:.0%} ({sum(s.fit_s for s in seq):.0f} s)")
    print(f"state kept in {tmp}", file=sys.stderr)


if __name__ == "__main__":
    main()
