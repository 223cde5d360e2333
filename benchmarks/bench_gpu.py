"""GPU throughput of the paper's grids, in one run: steps/s, the i-LN overhead, ablate's own overhead,
bf16/fp16 and torch.compile against fp32, peak memory, and cells/hour when small cells share a GPU.

    .venv/bin/python benchmarks/bench_gpu.py                 # on a CUDA machine: ≤ 8 min on an H100/H200
    .venv/bin/python benchmarks/bench_gpu.py --smoke         # tiny sizes, a few steps (the only mode without CUDA)
    .venv/bin/python benchmarks/bench_gpu.py --models swinir-light --no-compile

The cells are the paper's own: the token_ln and i_ln cells at SR ×4 of ``experiments/paper/hat-mini-sr.yaml``
and ``swinir-light-sr.yaml`` (batch 16, 256² HR / 64² LQ patches, Adam, EMA 0.999, L1, multistep), read
from those files, so the numbers follow the files. Only ``train.val_size`` is cut (construction time;
no evaluation falls inside a timed window) and, for the variants, ``train.amp`` / ``train.compile`` set.

What is timed, per model and norm (the device drained before and after each timed block):

- **bare loop**: a hand-written loop of the same recipe on one fixed batch already on the GPU —
  ``model(lq)``, L1, ``zero_grad``, ``backward``, ``Adam.step``, the schedule, the EMA lerp;
- **Trainer, fixed batch**: ablate's loop iteration (``Trainer.step``, ``probe``, ``evaluate``, ``end_step``;
  none of the periodic work is due in the window) on that same fixed batch: ablate's own overhead,
  target ≤ 1.03 × bare loop;
- **Trainer**: the same with the real data path (batches cut and degraded on the CPU, two prepared
  ahead on background threads), so a data-bound cell shows here;
- **Trainer, bf16 / fp16**: ``train.amp``; **Trainer, compile**: ``train.compile`` (token_ln only, in a
  subprocess with a timeout: the first call compiles, reported as ``compile s``);
- **Trainer, N cells/GPU** (swinir-light, token_ln; N = 1, 2, 4): N processes share the GPU, each a
  Trainer with the data path, started together behind a barrier and timed over the same window;
  steps/s is their sum, cells/h = steps/s × 3600 / ``train.steps`` (300k).

Each process uses ``resources.cpus_per_trial`` torch threads, as a Ray trial of that file does. Peak
memory is ``torch.cuda.max_memory_allocated`` over the timed block (per process for the packed rows).
``--budget`` caps the run: stages that would start past it are reported as not run, and the compile
subprocesses get what is left as their timeout. Without CUDA (or with ``--smoke``) the same code runs
on tiny models for a few steps, compile through the ``eager`` backend: it checks the script, and says
"smoke mode: no CUDA"; its numbers mean nothing.
"""

from __future__ import annotations

import argparse
import copy
import functools
import gc
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
PAPER = {"hat-mini": ROOT / "experiments" / "paper" / "hat-mini-sr.yaml",
         "swinir-light": ROOT / "experiments" / "paper" / "swinir-light-sr.yaml"}
NORMS = ("token_ln", "i_ln")
TASK = "sr-x4"  # the paper's 64×64 LQ patches at ×4 (HR 256): the dearer of the two scales
PACK_MODEL = "swinir-light"  # the cell small enough to share a GPU
# smoke mode: the same models shrunk to a few thousand parameters, on 32² HR patches
SMOKE_BACKBONES: dict[str, dict[str, Any]] = {
    "hat-mini": {"name": "hat-mini", "embed_dim": 12, "depths": [1], "num_heads": 2, "window_size": 4,
                 "num_feat": 8, "compress_ratio": 3, "squeeze_factor": 4},
    "swinir-light": {"name": "swinir-light", "embed_dim": 12, "depths": [1], "num_heads": 2, "window_size": 4},
}


@dataclass(frozen=True)
class Plan:
    """How long each measurement runs: steps for in-process rows, a window for the subprocess rows."""

    warmup: int
    steps: int
    window_s: float
    packing: tuple[int, ...]
    compile_backend: str | None  # None: torch.compile's default (inductor)


FULL = Plan(warmup=5, steps=20, window_s=20.0, packing=(1, 2, 4), compile_backend=None)
SMOKE = Plan(warmup=1, steps=2, window_s=0.5, packing=(1, 2), compile_backend="eager")


@dataclass
class Row:
    model: str
    norm: str
    run: str
    ms: float | None = None  # per step (per cell for packed rows)
    steps_s: float | None = None  # summed over the cells of a packed row
    vs: str = ""
    peak_gib: float | None = None
    cells_h: float | None = None
    note: str = ""


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@functools.cache
def _paper_cells(model: str) -> tuple[dict[tuple[str, str], dict[str, Any]], float]:
    from ablate.spec import expand, load_experiment

    spec = load_experiment(PAPER[model])
    cells = {(c.norm.name, c.task.name): c.to_config() for c in expand(spec)}
    return cells, spec.resources.cpus_per_trial


def paper_cell(model: str, norm: str, smoke: bool, **train: Any) -> tuple[dict[str, Any], int]:
    """The cell config of ``model``'s paper file for ``norm`` at SR ×4, with ``train`` overrides; and the
    torch threads of its trial (the file's ``resources.cpus_per_trial``; 1 in smoke mode)."""
    cells, cpus = _paper_cells(model)
    cfg = copy.deepcopy(cells[norm, TASK])
    cfg["train"].update(val_size=32 if smoke else 96, **train)
    if smoke:
        cfg["backbone"] = SMOKE_BACKBONES[model]
        cfg["train"].update(batch_size=2, patch_size=32)
        cfg["probes"]["patch_size"] = 32
    return cfg, 1 if smoke else max(1, int(cpus))


class FixedBatches:
    """Stands in for the Trainer's prefetcher: one batch, already on the device, at every step."""

    def __init__(self, lq: torch.Tensor, gt: torch.Tensor) -> None:
        self.lq, self.gt = lq, gt

    def get(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.lq, self.gt

    def close(self) -> None:
        pass


def fixed_batch(cfg: dict[str, Any], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    from ablate.data import PairSampler, resolve_dataset
    from ablate.spec import CellSpec
    from ablate.tasks import resolve_task

    spec = CellSpec.from_config(cfg)
    sampler = PairSampler(resolve_dataset(spec.data), resolve_task(spec.task), spec.train.patch_size,
                          spec.train.batch_size, spec.seed)
    lq, gt = sampler.batch(1)
    return lq.to(device), gt.to(device)


def bare_loop(cfg: dict[str, Any], device: torch.device) -> Callable[[int], None]:
    """One step of a hand-written loop of the cell's recipe, on a fixed batch on the device."""
    from ablate.backbones import build_backbone
    from ablate.spec import CellSpec
    from ablate.tasks import resolve_task

    spec = CellSpec.from_config(cfg)
    tr = spec.train
    model = build_backbone(spec.backbone, spec.norm_variant(),
                           resolve_task(spec.task).scale).to(device).train()
    params = list(model.parameters())
    ema_params = list(copy.deepcopy(model).requires_grad_(False).parameters()) if tr.ema else []
    opt = torch.optim.Adam(params, lr=tr.optimizer.lr, betas=tr.optimizer.betas)
    milestones = [int(m * tr.steps) if m < 1 else int(m) for m in tr.schedule.milestones]
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones, tr.schedule.gamma)
    lq, gt = fixed_batch(cfg, device)

    def step(_: int) -> None:
        loss = F.l1_loss(model(lq), gt)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if ema_params:
            with torch.no_grad():
                torch._foreach_lerp_(ema_params, params, 1.0 - tr.ema)

    return step


def trainer_loop(trainer: Any) -> Callable[[int], None]:
    """One iteration of ``Trainer.run``'s loop."""

    def iteration(step: int) -> None:
        grad_norm = trainer.step(step)
        traces = trainer.probe(step)
        trainer.end_step(step, trainer.evaluate(step), traces, grad_norm)

    return iteration


def timed(fn: Callable[[int], None], plan: Plan, device: torch.device) -> tuple[float, float]:
    """(seconds per call, peak GiB) of ``fn(step)`` over ``plan.steps`` calls after ``plan.warmup``."""
    for i in range(1, plan.warmup + 1):
        fn(i)
    sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    for i in range(plan.warmup + 1, plan.warmup + plan.steps + 1):
        fn(i)
    sync(device)
    dt = (time.perf_counter() - t0) / plan.steps
    return dt, (torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan"))


def release() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def measure_in_process(model: str, norm: str, plan: Plan, smoke: bool, device: torch.device) -> list[Row]:
    """bare loop, Trainer on a fixed batch, Trainer, Trainer bf16 and fp16: one model and norm."""
    from ablate.spec import CellSpec
    from ablate.train import Trainer

    rows: list[Row] = []
    cfg, threads = paper_cell(model, norm, smoke)
    torch.set_num_threads(threads)
    steps_total = cfg["train"]["steps"]

    def row(run: str, seconds: float, peak: float, vs: str = "") -> None:
        rows.append(Row(model, norm, run, 1e3 * seconds, 1.0 / seconds, vs, peak, 3600.0 / seconds / steps_total))
        log(f"  {model} {norm} {run}: {1e3 * seconds:.1f} ms/step")

    bare_s, peak = timed(bare_loop(cfg, device), plan, device)
    row("bare loop", bare_s, peak)
    release()
    trainer = Trainer(CellSpec.from_config(cfg))
    trainer.batches.close()
    trainer.batches = FixedBatches(*fixed_batch(cfg, device))
    fixed_s, peak = timed(trainer_loop(trainer), plan, device)
    row("Trainer, fixed batch", fixed_s, peak, f"{fixed_s / bare_s:.3f} × bare loop")
    del trainer
    release()
    trainer = Trainer(CellSpec.from_config(cfg))
    fp32_s, peak = timed(trainer_loop(trainer), plan, device)
    trainer.batches.close()
    row("Trainer", fp32_s, peak, f"{fp32_s / bare_s:.3f} × bare loop")
    del trainer
    release()
    for amp in ("bf16", "fp16"):
        amp_cfg, _ = paper_cell(model, norm, smoke, amp=amp)
        trainer = Trainer(CellSpec.from_config(amp_cfg))
        amp_s, peak = timed(trainer_loop(trainer), plan, device)
        trainer.batches.close()
        row(f"Trainer, {amp}", amp_s, peak, f"{amp_s / fp32_s:.3f} × Trainer fp32")
        del trainer
        release()
    return rows


# --- subprocess workers: packed cells and compiled cells ------------------------------------------------


def worker(job: dict[str, Any]) -> None:
    """One Trainer in this process: warm up, wait at the barrier, train for the window; print JSON."""
    from ablate.spec import CellSpec
    from ablate.train import Trainer

    torch.set_num_threads(job["threads"])
    if job["backend"]:
        torch.compile = functools.partial(torch.compile, backend=job["backend"])  # type: ignore[assignment]
    trainer = Trainer(CellSpec.from_config(job["cell"]))
    device = trainer.device
    loop = trainer_loop(trainer)
    t0 = time.perf_counter()
    loop(1)  # compiles, under train.compile
    sync(device)
    first_s = time.perf_counter() - t0
    for i in range(2, job["warmup"] + 2):
        loop(i)
    sync(device)
    step = job["warmup"] + 1
    barrier = Path(job["barrier"])
    (barrier / str(job["rank"])).touch()
    while len(list(barrier.iterdir())) < job["n"]:
        time.sleep(0.01)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    start = step
    while time.perf_counter() - t0 < job["window_s"] or step - start < job["min_steps"]:
        step += 1
        loop(step)
    sync(device)
    elapsed = time.perf_counter() - t0
    trainer.batches.close()
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    print(json.dumps({"steps": step - start, "elapsed": elapsed, "first_s": first_s, "peak": peak,
                      "compiled": trainer.step_model.compiled is not None}), flush=True)


def run_workers(cells: list[dict[str, Any]], threads: int, plan: Plan, timeout: float
                ) -> list[dict[str, Any]] | str:
    """``len(cells)`` worker processes started together; their results, or why there are none (the
    first worker that failed, or the timeout: then every worker is stopped)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    with tempfile.TemporaryDirectory(prefix="bench-gpu-") as tmp:
        barrier = Path(tmp) / "barrier"
        barrier.mkdir()
        procs = []
        for rank, cell in enumerate(cells):
            job = {"cell": cell, "threads": threads, "warmup": plan.warmup, "window_s": plan.window_s,
                   "min_steps": plan.steps, "barrier": str(barrier), "rank": rank, "n": len(cells),
                   "backend": plan.compile_backend}
            with open(Path(tmp) / f"{rank}.out", "w") as out, open(Path(tmp) / f"{rank}.err", "w") as err:
                procs.append(subprocess.Popen([sys.executable, __file__, "--worker", json.dumps(job)], env=env,
                                              stdout=out, stderr=err, text=True))
        deadline = time.monotonic() + timeout
        failure = ""
        while any(p.poll() is None for p in procs) and not failure:
            time.sleep(0.2)
            bad = [rank for rank, p in enumerate(procs) if p.returncode not in (None, 0)]
            if bad:
                lines = (Path(tmp) / f"{bad[0]}.err").read_text().strip().splitlines()
                failure = f"worker failed: {lines[-1] if lines else procs[bad[0]].returncode}"
            elif time.monotonic() > deadline:
                failure = f"timed out after {timeout:.0f} s"
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        if failure:
            return failure
        return [json.loads((Path(tmp) / f"{rank}.out").read_text().strip().splitlines()[-1])
                for rank in range(len(procs))]


def measure_packing(plan: Plan, smoke: bool, remaining: Callable[[], float]) -> list[Row]:
    cfg, threads = paper_cell(PACK_MODEL, "token_ln", smoke)
    steps_total = cfg["train"]["steps"]
    rows: list[Row] = []
    single = None
    for n in plan.packing:
        run = f"Trainer, {n} cell{'s' if n > 1 else ''}/GPU"
        if remaining() < 30:
            rows.append(Row(PACK_MODEL, "token_ln", run, note="not run: --budget spent"))
            continue
        log(f"  {PACK_MODEL} token_ln: {n} processes sharing the device")
        got = run_workers([cfg] * n, threads, plan, timeout=remaining())
        if isinstance(got, str):
            rows.append(Row(PACK_MODEL, "token_ln", run, note=got))
            continue
        total = sum(r["steps"] / r["elapsed"] for r in got)
        if n == 1:
            single = total
        rows.append(Row(PACK_MODEL, "token_ln", run, 1e3 * n / total, total,
                        f"{total / single:.2f} × 1 cell/GPU" if single else "",
                        max(r["peak"] for r in got), 3600.0 * total / steps_total,
                        "peak GiB: per process" if torch.cuda.is_available() else ""))
    return rows


def measure_compile(models: list[str], plan: Plan, smoke: bool, fp32: dict[str, float],
                    remaining: Callable[[], float]) -> list[Row]:
    rows = []
    for model in sorted(models, key=lambda m: m != PACK_MODEL):  # the launch-bound model first
        if remaining() < 60:
            rows.append(Row(model, "token_ln", "Trainer, compile", note="not run: --budget spent"))
            continue
        cfg, threads = paper_cell(model, "token_ln", smoke, compile=True)
        log(f"  {model} token_ln: torch.compile (the first step compiles)")
        got = run_workers([cfg], threads, plan, timeout=remaining())
        if isinstance(got, str):
            rows.append(Row(model, "token_ln", "Trainer, compile", note=got))
            continue
        r = got[0]
        seconds = r["elapsed"] / r["steps"]
        base = fp32.get(model)
        note = f"compile s {r['first_s']:.0f}" + ("" if r["compiled"] else "; fell back: ran uncompiled")
        rows.append(Row(model, "token_ln", "Trainer, compile", 1e3 * seconds, 1.0 / seconds,
                        f"{seconds / base:.3f} × Trainer fp32" if base else "", r["peak"],
                        3600.0 / seconds / cfg["train"]["steps"], note))
    return rows


def fmt(value: float | None, spec: str) -> str:
    return "" if value is None or value != value else format(value, spec)  # None and NaN print empty


def print_table(rows: list[Row]) -> None:
    token = {(r.model, r.run): r.ms for r in rows if r.norm == "token_ln"}
    print("| model | norm | run | ms/step | steps/s | compared with | i_ln / token_ln | peak GiB | cells/h | note |")
    print("|---|---|---|---:|---:|---|---:|---:|---:|---|")
    for r in rows:
        base = token.get((r.model, r.run)) if r.norm == "i_ln" else None
        ratio = f"{r.ms / base:.3f}" if base and r.ms else ""
        print(f"| {r.model} | {r.norm} | {r.run} | {fmt(r.ms, '.1f')} | {fmt(r.steps_s, '.2f')} | {r.vs} | {ratio} | "
              f"{fmt(r.peak_gib, '.2f')} | {fmt(r.cells_h, '.2f')} | {r.note} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(PAPER), choices=list(PAPER))
    parser.add_argument("--smoke", action="store_true", help="tiny models, a few steps (always, without CUDA)")
    parser.add_argument("--no-compile", action="store_true", help="leave out the torch.compile rows")
    parser.add_argument("--no-packing", action="store_true", help="leave out the cells-per-GPU rows")
    parser.add_argument("--budget", type=float, default=450.0,
                        help="seconds; stages that would start later are not run (default 450)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(json.loads(args.worker))
        return

    t_start = time.monotonic()

    def remaining() -> float:
        return args.budget - (time.monotonic() - t_start)

    cuda = torch.cuda.is_available()
    smoke = args.smoke or not cuda
    plan = SMOKE if smoke else FULL
    device = torch.device("cuda" if cuda else "cpu")
    where = torch.cuda.get_device_name(device) if cuda else "CPU"
    if smoke:
        print("smoke mode: no CUDA (tiny models, a few steps: the numbers mean nothing)" if not cuda
              else "smoke mode (--smoke): tiny models, a few steps: the numbers mean nothing")
    print(f"bench_gpu: torch {torch.__version__}, {where}; paper cells at {TASK} (experiments/paper/), "
          f"{plan.steps} timed steps after {plan.warmup} warmup, packed/compiled rows over {plan.window_s:g} s\n")
    rows: list[Row] = []
    for model in args.models:
        for norm in NORMS:
            if remaining() < 0:
                rows.append(Row(model, norm, "all in-process runs", note="not run: --budget spent"))
                continue
            log(f"{model} {norm}")
            rows += measure_in_process(model, norm, plan, smoke, device)
    if not args.no_packing and PACK_MODEL in args.models:
        log("packing")
        rows += measure_packing(plan, smoke, remaining)
    if not args.no_compile:
        log("compile")
        fp32 = {r.model: r.ms / 1e3 for r in rows if r.run == "Trainer" and r.norm == "token_ln" and r.ms}
        rows += measure_compile(args.models if not smoke else args.models[:1], plan, smoke, fp32, remaining)
    print_table(rows)
    log(f"bench_gpu: {time.monotonic() - t_start:.0f} s")


if __name__ == "__main__":
    main()
