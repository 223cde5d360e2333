"""Forward+backward cost of every norm variant through ``norm.residual(x, branch)``, relative to token_ln.

    python benchmarks/bench_norms.py                    # (B=4, L=64×64, C=60) and C=96, all variants
    python benchmarks/bench_norms.py --dims 96 --repeats 50 --only token_ln global_ln
    python benchmarks/bench_norms.py --threads 1 --clock cpu  # on a busy machine: CPU time, not wall

Each variant runs a pre-norm residual step ``x + gate(σ · branch(norm(x)))`` with a cheap linear
branch, forward and backward, at the ``attn`` site (so presets apply their residual-site normalizer and
rescale), with and without rescale where the normalizer has a σ. Timings are interleaved round-robin
across variants (each repeat times every variant once), so a change in machine load hits all of them
alike; the table reports the median of the repeats after warmup, in ms and as a ratio to token_ln
measured in the same run. Threads: torch's default (``torch.get_num_threads()``) unless --threads.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
from torch import Tensor, nn

from ablate.norms import NormPreset, resolve_norm
from ablate.registry import NORMS

BASELINE = "token_ln"


def variants(only: list[str] | None) -> list[tuple[str, bool | None]]:
    """(key, rescale) for every registered norm: presets as they are, others with and without rescale."""
    out: list[tuple[str, bool | None]] = []
    for key in NORMS.keys():
        if only and key not in only and key != BASELINE:
            continue
        obj = NORMS.get(key)
        if isinstance(obj, NormPreset):
            out.append((key, None))
            continue
        out.append((key, False))
        if obj.sigma is not None:
            out.append((key, True))
    return out


def make_step(key: str, rescale: bool | None, b: int, n: int, c: int) -> tuple[str, Callable[[], None]]:
    variant = resolve_norm(key, rescale)
    norm = variant(c, site="attn").train()
    branch = nn.Linear(c, c)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(b, n, c, generator=gen).requires_grad_(True)
    grad = torch.randn(b, n, c, generator=gen)

    def step() -> None:
        out: Tensor = norm.residual(x, branch)
        out.backward(grad)
        x.grad = None
        for p in (*norm.parameters(), *branch.parameters()):
            p.grad = None

    return variant.name, step


def bench(dim: int, args: argparse.Namespace) -> list[tuple[str, float]]:
    steps = [make_step(k, r, args.batch, args.size * args.size, dim) for k, r in variants(args.only)]
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    for _ in range(args.warmup):
        for _, step in steps:
            step()
    times: dict[str, list[float]] = {name: [] for name, _ in steps}
    for _ in range(args.repeats):
        for name, step in steps:
            t0 = clock()
            step()
            times[name].append(clock() - t0)
    return [(name, 1e3 * statistics.median(ts)) for name, ts in times.items()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dims", type=int, nargs="+", default=[60, 96], help="channel counts C")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--size", type=int, default=64, help="feature map side: L = size²")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="wall: elapsed time; cpu: the process's CPU time, robust to other load on the "
                             "machine (use with --threads 1, since idle threads may spin)")
    parser.add_argument("--only", nargs="+", default=None, help="only these keys (token_ln is always run)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, B={args.batch}, "
          f"L={args.size}x{args.size}, median of {args.repeats} interleaved repeats after {args.warmup} warmup, "
          f"{args.clock} clock")
    results = {dim: dict(bench(dim, args)) for dim in args.dims}
    names = list(results[args.dims[0]])
    header = f"{'variant':<24}" + "".join(f"{f'C={d} ms':>12}{'ratio':>8}" for d in args.dims)
    print(header)
    print("-" * len(header))
    for name in names:
        cells = ""
        for dim in args.dims:
            ms = results[dim][name]
            cells += f"{ms:>12.2f}{ms / results[dim][BASELINE]:>8.2f}"
        print(f"{name:<24}{cells}")


if __name__ == "__main__":
    main()
