"""Cost of one full training step per norm variant (forward + L1 + backward + Adam), relative to token_ln.

    .venv/bin/python benchmarks/bench_step.py                      # swinir-light, hat-mini, swinir-tiny; x2, B=4, 64x64
    .venv/bin/python benchmarks/bench_step.py --quick              # smoke: swinir-tiny, tiny batch, 3 repeats
    .venv/bin/python benchmarks/bench_step.py --threads 1 --clock cpu     # on a busy machine
    .venv/bin/python benchmarks/bench_step.py --device cuda --gpu-ask     # hat-mini, B=16, 64x64 HR, on a GPU

What one step is: exactly the trial engine's inner loop (``ablate.train.run_cell``) without data
loading — ``model(lq)``, ``F.l1_loss``, ``zero_grad(set_to_none=True)``, ``backward``, ``Adam.step``
(lr 2e-4, betas (0.9, 0.99), the recipe's) — on one fixed random batch of LQ inputs
(``--patch`` is the HR side: 64 at x2 means 32x32 inputs, as in training).

Each model is built with ``build_backbone(name, resolve_norm(variant), scale)`` for every variant
(``name+rescale`` turns a normalizer's input-adaptive rescale on, e.g. ``global_ln+rescale``; the
``i_ln`` preset differs from it only by its affine-only embedding and final norms). All variants of
one model are timed interleaved: each repeat runs every variant once, in an order that rotates from
repeat to repeat, so drifting machine load and position effects hit all of them alike. The table
reports the median (and the interquartile range) of the repeats after warmup and the ratio to
token_ln *from the same run*. On CUDA every step is bracketed by ``torch.cuda.synchronize()`` and
the peak memory of a step is reported too.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ablate.backbones import build_backbone, validate_backbone
from ablate.errors import AblateError
from ablate.norms import resolve_norm

BASELINE = "token_ln"
MODELS = ("swinir-light", "hat-mini", "swinir-tiny")
VARIANTS = ("token_ln", "i_ln", "global_ln", "global_ln+rescale")


@dataclass
class Runner:
    """One (model, variant) pair, ready to step."""

    variant: str
    params: int
    step: Callable[[], None]


def parse_variant(text: str) -> tuple[str, bool | None]:
    """``global_ln+rescale`` → ("global_ln", True); ``token_ln`` → ("token_ln", None: the norm's own)."""
    name, plus, flag = text.partition("+")
    if plus and flag != "rescale":
        raise SystemExit(f"--variants: {text!r}: expected NAME or NAME+rescale")
    return name, (True if plus else None)


def make_runner(model_name: str, variant: str, args: argparse.Namespace, device: torch.device) -> Runner:
    name, rescale = parse_variant(variant)
    torch.manual_seed(0)  # same init draws for every variant (shapes differ only where the norms do)
    model = build_backbone(model_name, resolve_norm(name, rescale), args.scale).to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=2e-4, betas=(0.9, 0.99))
    gen = torch.Generator().manual_seed(1)
    side = args.patch // args.scale
    lq = torch.rand(args.batch, 3, side, side, generator=gen).to(device)
    gt = torch.rand(args.batch, 3, args.patch, args.patch, generator=gen).to(device)

    def step() -> None:
        loss = F.l1_loss(model(lq), gt)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return Runner(variant, sum(p.numel() for p in model.parameters()), step)


def time_model(model_name: str, args: argparse.Namespace, device: torch.device) -> list[dict[str, float | str]]:
    runners = [make_runner(model_name, v, args, device) for v in args.variants]
    cuda = device.type == "cuda"
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    times: dict[str, list[float]] = {r.variant: [] for r in runners}
    peak: dict[str, float] = {r.variant: 0.0 for r in runners}
    n = len(runners)
    for rep in range(args.warmup + args.repeats):
        shift = rep % n  # rotate the order: ABC, BCA, CAB, ...
        for r in runners[shift:] + runners[:shift]:
            if cuda:
                torch.cuda.synchronize(device)
                torch.cuda.reset_peak_memory_stats(device)
            t0 = clock()
            r.step()
            if cuda:
                torch.cuda.synchronize(device)
            dt = clock() - t0
            if rep >= args.warmup:
                times[r.variant].append(dt)
                if cuda:
                    peak[r.variant] = max(peak[r.variant], torch.cuda.max_memory_allocated(device) / 2**30)
    base = statistics.median(times[BASELINE])
    rows: list[dict[str, float | str]] = []
    for r in runners:
        ts = sorted(times[r.variant])
        q1, _, q3 = statistics.quantiles(ts, n=4) if len(ts) >= 2 else (ts[0], ts[0], ts[0])
        med = statistics.median(ts)
        rows.append({"model": model_name, "variant": r.variant, "params": r.params, "ms": 1e3 * med,
                     "q1": 1e3 * q1, "q3": 1e3 * q3, "ratio": med / base, "peak_gib": peak[r.variant]})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=None, help=f"backbone presets (default: {' '.join(MODELS)})")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS),
                        help="norm keys, NAME+rescale for a normalizer with rescale on (token_ln is always run)")
    parser.add_argument("--scale", type=int, default=2, help="SR factor (1 = same-size restoration)")
    parser.add_argument("--batch", type=int, default=None, help="batch size (default 4; 16 with --gpu-ask)")
    parser.add_argument("--patch", type=int, default=None, help="HR patch side (default 64); the input is patch/scale")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats per variant (default 10)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed repeats first (default 2)")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="wall: elapsed time; cpu: the process's CPU time (CPU only; use with --threads 1)")
    parser.add_argument("--gpu-ask", action="store_true",
                        help="the GPU question: hat-mini, batch 16, 64x64 HR patches (use with --device cuda)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: swinir-tiny, batch 2, 32x32 HR, 1 warmup + 3 repeats")
    args = parser.parse_args()

    # defaults: explicit flags win over --quick / --gpu-ask presets
    preset = {"models": list(MODELS), "batch": 4, "patch": 64, "repeats": 10, "warmup": 2}
    if args.gpu_ask:
        preset.update(models=["hat-mini"], batch=16, patch=64, repeats=20, warmup=5)
    if args.quick:
        preset.update(models=["swinir-tiny"], batch=2, patch=32, repeats=3, warmup=1)
    for key, value in preset.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if BASELINE not in args.variants:
        args.variants.insert(0, BASELINE)
    for variant in args.variants:  # fail before any timing, with ablate's one-line message
        try:
            resolve_norm(*parse_variant(variant))
        except AblateError as err:
            raise SystemExit(f"--variants {variant}: {err}") from None
    for model_name in args.models:
        try:
            validate_backbone(model_name)
        except AblateError as err:
            raise SystemExit(f"--models {model_name}: {err}") from None
    if args.patch % args.scale:
        raise SystemExit(f"--patch {args.patch} must be a multiple of --scale {args.scale}")
    if args.repeats < 1:
        raise SystemExit("--repeats must be at least 1")
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"--device {args.device}: CUDA is not available here")
    if device.type == "cuda" and args.clock == "cpu":
        raise SystemExit("--clock cpu measures nothing useful on CUDA; use the wall clock")
    if args.threads:
        torch.set_num_threads(args.threads)

    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    side = args.patch // args.scale
    print(f"torch {torch.__version__}, {where}; x{args.scale}, batch {args.batch}, HR {args.patch}x{args.patch} "
          f"(input {side}x{side}); median of {args.repeats} interleaved repeats after {args.warmup} warmup, "
          f"{args.clock} clock\n")
    cuda = device.type == "cuda"
    header = "| model | variant | params | ms/step (median) | IQR ms | steps/s | ratio to token_ln |"
    if cuda:
        header += " peak GiB |"
    print(header)
    print("|" + "---|" * header.count(" |"))
    for model_name in args.models:
        for row in time_model(model_name, args, device):
            line = (f"| {row['model']} | {row['variant']} | {row['params']:,} | {row['ms']:.1f} | "
                    f"{row['q1']:.1f}–{row['q3']:.1f} | {1e3 / float(row['ms']):.2f} | {row['ratio']:.3f} |")
            if cuda:
                line += f" {row['peak_gib']:.2f} |"
            print(line, flush=True)


if __name__ == "__main__":
    main()
