"""GPU speed of the paper cells, before and after a change, in one run: ms/step, achieved TFLOP/s, aten
operators per step, the i-LN overhead, ablate's overhead over a bare loop, TF32 / bf16 / torch.compile
against fp32, and cells/hour when cells share a GPU.

    python benchmarks/bench_gpu.py --root .gpu/before --json out/bench.json   # CUDA: budgeted to 7 min (--budget)
    python benchmarks/bench_gpu.py --smoke               # tiny models, a few steps (the only mode without CUDA)
    python benchmarks/bench_gpu.py --ops-only --root /tmp/base   # CPU: operator and FLOP counts, before/after
    python benchmarks/bench_gpu.py --profile             # the top 15 kernels of one swinir-light step per norm
    bash benchmarks/gpu_session.sh                       # the prepared device session (see that file)

The cells are the paper's: token_ln and i_ln at SR ×4 of ``experiments/paper/swinir-light-sr.yaml`` and
``hat-mini-sr.yaml`` (batch 16, 256² HR / 64² LQ patches, Adam, EMA 0.999, L1, multistep), read from the
files of the checkout being measured. Only ``train.val_size`` is cut (construction time; no evaluation
falls in a timed window) and, per run, ``train.amp`` / ``train.compile`` / ``train.tf32`` set.

**Before/after.** Every measurement runs in its own worker process (this file with ``--worker``) whose
``PYTHONPATH`` starts with the checkout it measures: this tree ("after") and, with ``--root DIR``,
another checkout ("before", e.g. ``git archive BASE ablate experiments | tar -x -C DIR``). The worker
uses only APIs the base has too (``CellSpec``, ``Trainer``, ``build_backbone``, ``resolve_norm``,
``resolve_task``, ``load_experiment``/``expand``) and feature-detects newer ones (``train.tf32``: set
when the spec has the field, else TF32 is turned on through torch's flags). A stage that fails is a row
with its one-line error; a worker that dies or runs past ``--budget`` is a row saying so.

**Runs** (per model and norm; "before" runs a lean subset unless ``--before full``):

- **bare loop**: a hand-written loop of the recipe on one fixed batch on the device (random HR patches of
  the cell's shape and their box-filtered LQ, the same for every checkout) — ``model(lq)``,
  L1, backward, Adam (``fused=True`` on CUDA), the schedule, the EMA as one ``_foreach_lerp_``;
  the model is the checkout's, the loop is this file's (the same for before and after);
- **Trainer, fixed batch**: ``Trainer``'s loop iteration (``step``, ``probe``, ``evaluate``, ``log``;
  nothing periodic is due in the window) on that batch: ablate's own overhead over the bare loop;
- **Trainer**: the same with the real data path (the Trainer's own batches): the data-path cost;
- **Trainer, TF32** and **Trainer, bf16** (``train.amp``); **Trainer, compile** (``train.compile``;
  swinir-light token_ln and i_ln, then compile + bf16 and hat-mini as the budget allows): the first
  step's wall time is ``compile s``; a fallback to eager is shown ("fell back", from the Trainer's
  ``step_model.compiled`` or a fallback warning on the worker's stderr), with dynamo's graph and
  graph-break counts;
- **Trainer, N cells/GPU** (swinir-light token_ln, N = 1, 2, 4): N processes warm up, meet at a barrier
  and train for the same window; ms/step is per cell, the note gives Σ steps/s and cells/h (300k steps).

Per row: ms/step (``--warmup`` untimed then ``--steps`` timed steps, device synchronised around the
block), achieved TFLOP/s = FLOPs of one forward+backward (``torch.utils.flop_counter.FlopCounterMode``:
matmuls, convolutions, attention) / step time, **ops/step** = aten operators dispatched by the training
thread in one step (a ``TorchDispatchMode`` counter, after the timed block: a launch-bound step shows
here), and peak memory (``torch.cuda.max_memory_allocated``, per process). The bare-loop stage also
counts the forward+backward alone (the "aten ops per forward+backward" table).

**Scheduling.** A GPU run would not fit 7 minutes one process after another, so workers overlap their
start-up (imports, model and Trainer construction) with each other's timing: every timed block, and the
counting step, holds an exclusive lock on the device (``flock``), so no two timed blocks overlap. The
packed rows hold it shared among their N processes, and start when the other eager rows are done.
Compile workers compile (CPU) while other rows are timed, with ``TORCHINDUCTOR_COMPILE_THREADS`` capped
so the timed workers keep their cores; their first step's GPU work is not under the lock. ``--serial``
runs one worker at a time instead (cleaner, slower). Rows print as they come; the full table and the
ratios (i_ln / token_ln, bf16 / fp32, TF32 / fp32, compile / eager, data path, packing, operators) at
the end; ``--json PATH`` is rewritten after every row, so a killed run keeps what it measured.

``--ops-only`` counts on the CPU (``CUDA_VISIBLE_DEVICES=`` in the workers): per checkout, model and
norm, the aten operators of one forward+backward and of one ``Trainer.step`` on a fixed batch, at batch
2 on LQ patches two windows a side (the counts are those of the paper cell's size: they do not change
with the batch from 2 or with the size in windows), and the FLOPs scaled to the cell's batch and patch.
Machine-independent, a minute or two on a 2-core machine: CPU tests and a before/after without a GPU
use it. Its ``Trainer.step`` count includes the optimizer as it runs on the CPU (torch's per-tensor Adam
unless the Trainer asks for another): a CUDA-only fused optimizer shows in the GPU run's ops/step only.

``--smoke`` (and any run without CUDA) runs everything on tiny versions of the models for a few steps,
compile through the ``eager`` backend: its numbers mean nothing, it checks the script. ``--runs`` and
``--compile-backend`` narrow a run down (e.g. ``--runs compile --compile-backend aot_eager``).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import json
import os
import queue
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

ROOT = Path(__file__).resolve().parents[1]
PAPER = {"swinir-light": "experiments/paper/swinir-light-sr.yaml", "hat-mini": "experiments/paper/hat-mini-sr.yaml"}
NORMS = ("token_ln", "i_ln")
TASK = "sr-x4"  # the paper's 64×64 LQ patches at ×4 (HR 256): the dearer of the two scales
PACK_MODEL = "swinir-light"  # the cell small enough to share a GPU
# --ops-only: operator counts are the same for any batch ≥ 2 and any LQ side that is a multiple of the window
# (checked on main: swinir-light at 2, 4, 8 windows a side, hat-mini at 2, 3, 4 and batches 2 to 16; batch 1
# skips a few copies), so they are counted small; FLOPs
# scale with batch × pixels (checked: exact for swinir-light, within 3e-6 for hat-mini's channel attention)
OPS_BATCH, OPS_WINDOWS = 2, 2
# smoke mode: the same models shrunk to a few thousand parameters, on 32² HR patches
SMOKE_BACKBONES: dict[str, dict[str, Any]] = {
    "hat-mini": {"name": "hat-mini", "embed_dim": 12, "depths": [1], "num_heads": 2, "window_size": 4,
                 "num_feat": 8, "compress_ratio": 3, "squeeze_factor": 4},
    "swinir-light": {"name": "swinir-light", "embed_dim": 12, "depths": [1], "num_heads": 2, "window_size": 4},
}
RUNS = {"bare": "bare loop", "fixed": "Trainer, fixed batch", "trainer": "Trainer", "tf32": "Trainer, TF32",
        "bf16": "Trainer, bf16", "compile": "Trainer, compile", "compile_bf16": "Trainer, compile, bf16",
        "ops": "ops-only (CPU)", "profile": "profile"}
EAGER = ("bare", "fixed", "trainer", "tf32", "bf16")
RUN_KEYS = (*EAGER, "compile", "compile_bf16", "pack")  # --runs  # the in-order runs of one model and norm ("after")
LEAN_BEFORE = {("swinir-light", "token_ln"): ("trainer", "bare", "bf16"),  # else ("trainer",): --before lean
               ("swinir-light", "i_ln"): ("trainer", "bare")}
# compile rows, in order of priority: (side, model, norm, stage)
COMPILES = (("after", "swinir-light", "token_ln", "compile"), ("before", "swinir-light", "token_ln", "compile"),
            ("after", "swinir-light", "i_ln", "compile"), ("after", "swinir-light", "token_ln", "compile_bf16"),
            ("after", "hat-mini", "token_ln", "compile"))
# a compile worker's stderr: a line saying the step ran eager (ablate's "train.compile: torch.compile failed
# (…); training uncompiled", or in other words), and dynamo's warnings worth a note (a frame past the
# recompile limit runs eager too)
FALLBACK = re.compile(r"(?i)train\.compile.*(fail|fall|uncompiled)|fell back|falling back to eager|training uncompiled")
COMPILE_WARNING = re.compile(r"recompile_limit|cache_size_limit|[Gg]raph break")
MARK = "@bench "  # a worker's result lines start with this


@dataclass(frozen=True)
class Plan:
    """How long each measurement runs, and the least budget left to start one of each kind."""

    warmup: int
    steps: int
    window_s: float  # the packed rows' timed window
    packing: tuple[int, ...]
    compile_backend: str | None  # None: torch.compile's default (inductor)
    start_s: dict[str, float]  # lane → seconds of --budget that must be left to start a job in it


FULL = Plan(3, 15, 8.0, (1, 2, 4), None, {"main": 15.0, "compile": 150.0, "pack": 30.0})
SMOKE = Plan(1, 2, 0.5, (1, 2), "eager", {"main": 0.0, "compile": 0.0, "pack": 0.0})


# --- the worker: one stage (several for --ops-only and in smoke mode) in a process of the measured checkout


class OpCounter(TorchDispatchMode):
    """Counts every aten operator dispatched on this thread while active."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: Counter[str] = Counter()

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        self.ops[str(func.overloadpacket)] += 1
        return func(*args, **(kwargs or {}))


class FixedBatches:
    """Stands in for the Trainer's prefetcher: one batch, already on the device, at every step."""

    def __init__(self, lq: torch.Tensor, gt: torch.Tensor) -> None:
        self.lq, self.gt = lq, gt

    def get(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.lq, self.gt

    def close(self) -> None:
        pass


@dataclass
class Worker:
    job: dict[str, Any]
    plan: Plan
    device: torch.device
    threads_set: bool = False

    @property
    def cuda(self) -> bool:
        return self.device.type == "cuda"

    def sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def peak_gib(self) -> float | None:
        return torch.cuda.max_memory_allocated(self.device) / 2**30 if self.cuda else None

    @contextlib.contextmanager
    def device_lock(self, shared: bool = False) -> Iterator[None]:
        """Held around every timed block: no two workers time (or count) on the device at once."""
        import fcntl

        with open(self.job["lock"], "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def cell_config(self, model: str, norm: str, **train: Any) -> tuple[dict[str, Any], int]:
        """The checkout's paper cell of ``model`` and ``norm`` at SR ×4 with this run's overrides; and the
        cell's own batch size (before --ops-only cuts it)."""
        from ablate.spec import expand, load_experiment

        path = Path(self.job["root"]) / PAPER[model]
        spec = load_experiment(path)
        cells = [c for c in expand(spec) if c.norm.name == norm and c.task.name == TASK]
        if not cells:
            raise LookupError(f"{path}: no cell with norm {norm!r} at {TASK}")
        if not self.threads_set:  # as a Ray trial of that file: resources.cpus_per_trial torch threads
            threads = self.job["threads"] or max(1, int(spec.resources.cpus_per_trial))
            torch.set_num_threads(1 if self.job["smoke"] else threads)
            self.threads_set = True
        cfg = copy.deepcopy(cells[0].to_config())
        t = cfg["train"]
        t["val_size"] = 32 if self.job["smoke"] else 96
        if self.job["smoke"]:
            cfg["backbone"] = SMOKE_BACKBONES[model]
            t.update(batch_size=2, patch_size=32)
            cfg["probes"]["patch_size"] = 32
        batch = t["batch_size"]
        if self.job["ops_only"]:
            t.update(batch_size=OPS_BATCH, device="cpu")
        t.update(train)
        return cfg, batch

    def timed(self, fn: Callable[[int], object], first: int = 0) -> tuple[float, float | None, int]:
        """(seconds per step, peak GiB, the next step) of ``fn(step)`` over --steps steps after --warmup.
        The caller holds the device lock."""
        step = first
        for _ in range(self.plan.warmup):
            step += 1
            fn(step)
        self.sync()
        if self.cuda:
            torch.cuda.reset_peak_memory_stats(self.device)
        t0 = time.perf_counter()
        for _ in range(self.plan.steps):
            step += 1
            fn(step)
        self.sync()
        return (time.perf_counter() - t0) / self.plan.steps, self.peak_gib(), step + 1

    def count(self, thunk: Callable[[], object]) -> dict[str, Any]:
        """Aten operators and FLOPs (GFLOP) of one call of ``thunk``; a step that cannot run under the
        counting modes (a captured graph, say) leaves the counts empty and says why, keeping the timing."""
        from torch.utils.flop_counter import FlopCounterMode

        try:
            flops = FlopCounterMode(display=False)
            ops = OpCounter()
            with flops, ops:
                thunk()
            self.sync()
        except Exception as err:
            return {"ops": None, "gflop": None, "ops_top": {}, "note": f"not counted: {one_line(err)}"}
        return {"ops": sum(ops.ops.values()), "gflop": flops.get_total_flops() / 1e9,
                "ops_top": dict(ops.ops.most_common(12)), "note": ""}

    # --- building blocks

    def scale(self, cfg: dict[str, Any]) -> int:
        from ablate.spec import CellSpec
        from ablate.tasks import resolve_task

        return int(resolve_task(CellSpec.from_config(cfg).task).scale)

    def fixed_batch(self, cfg: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """A batch of the cell's shapes, the same for every checkout (random HR, its box-filtered LQ)."""
        t, s = cfg["train"], self.scale(cfg)
        gen = torch.Generator().manual_seed(0)
        gt = torch.rand(t["batch_size"], 3, t["patch_size"], t["patch_size"], generator=gen)
        return F.avg_pool2d(gt, s).to(self.device), gt.to(self.device)

    def model(self, cfg: dict[str, Any]) -> torch.nn.Module:
        from ablate.backbones import build_backbone
        from ablate.norms import resolve_norm
        from ablate.spec import CellSpec

        spec = CellSpec.from_config(cfg)
        norm = resolve_norm(spec.norm.to_config(), spec.rescale)
        return build_backbone(spec.backbone, norm, self.scale(cfg)).to(self.device).train()

    def trainer(self, cfg: dict[str, Any], fixed: bool) -> Any:
        from ablate.spec import CellSpec
        from ablate.train import Trainer

        trainer = Trainer(CellSpec.from_config(cfg))
        if fixed:
            batches = getattr(trainer, "batches", None)
            if batches is None or not hasattr(batches, "get"):
                raise AttributeError("this Trainer has no .batches with get(step) for a fixed batch to replace")
            if hasattr(batches, "close"):
                batches.close()
            trainer.batches = FixedBatches(*self.fixed_batch(cfg))
        return trainer

    @staticmethod
    def iteration(trainer: Any) -> Callable[[int], None]:
        """One iteration of ``Trainer.run``'s loop (its last call is ``end_step``, named ``log`` before)."""
        end_step = getattr(trainer, "end_step", None) or trainer.log

        def it(step: int) -> None:
            grad_norm = trainer.step(step)
            traces = trainer.probe(step)
            end_step(step, trainer.evaluate(step), traces, grad_norm)

        return it

    @staticmethod
    def close(trainer: Any) -> None:
        batches = getattr(trainer, "batches", None)
        if batches is not None and hasattr(batches, "close"):
            batches.close()

    def tf32_overrides(self) -> tuple[dict[str, Any], str]:
        from ablate.spec import TrainSpec

        if "tf32" in {f.name for f in dataclasses.fields(TrainSpec)}:
            return {"tf32": True}, "train.tf32"
        torch.set_float32_matmul_precision("high")  # this process only: the last stage of its worker
        return {}, "no train.tf32 here: torch.set_float32_matmul_precision('high')"

    # --- the stages: each returns its result fields

    def stage_bare(self, model: str, norm: str) -> dict[str, Any]:
        from ablate.spec import CellSpec

        cfg, _ = self.cell_config(model, norm)
        tr = CellSpec.from_config(cfg).train
        net = self.model(cfg)
        params = list(net.parameters())
        ema = list(copy.deepcopy(net).requires_grad_(False).parameters()) if tr.ema else []
        opt = torch.optim.Adam(params, lr=tr.optimizer.lr, betas=tr.optimizer.betas, fused=self.cuda or None)
        milestones = [int(m * tr.steps) if m < 1 else int(m) for m in tr.schedule.milestones]
        sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones, tr.schedule.gamma)
        lq, gt = self.fixed_batch(cfg)

        def forward_backward() -> None:
            F.l1_loss(net(lq), gt).backward()

        def step(_: int) -> None:
            opt.zero_grad(set_to_none=True)
            forward_backward()
            opt.step()
            sched.step()
            if ema:
                with torch.no_grad():
                    torch._foreach_lerp_(ema, params, 1.0 - tr.ema)

        with self.device_lock():
            seconds, peak, nxt = self.timed(step)
            opt.zero_grad(set_to_none=True)
            fb = self.count(forward_backward)
            whole = self.count(lambda: step(nxt))
        notes = ["Adam fused" if self.cuda else "", fb["note"], whole["note"]]
        return {"ms": 1e3 * seconds, "peak_gib": peak, "ops": whole["ops"], "ops_fwdbwd": fb["ops"],
                "gflop": fb["gflop"], "ops_top": fb["ops_top"], "note": "; ".join(n for n in notes if n)}

    def stage_trainer(self, model: str, norm: str, fixed: bool = False, **train: Any) -> dict[str, Any]:
        note = ""
        if train.pop("tf32", False):
            extra, note = self.tf32_overrides()
            train.update(extra)
        cfg, _ = self.cell_config(model, norm, **train)
        trainer = self.trainer(cfg, fixed)
        try:
            it = self.iteration(trainer)
            with self.device_lock():
                seconds, peak, nxt = self.timed(it)
                counted = self.count(lambda: it(nxt))
        finally:
            self.close(trainer)
        return {"ms": 1e3 * seconds, "peak_gib": peak, "ops": counted["ops"], "gflop": counted["gflop"],
                "note": "; ".join(n for n in (note, counted["note"]) if n)}

    def stage_compile(self, model: str, norm: str, amp: str | None = None) -> dict[str, Any]:
        cfg, _ = self.cell_config(model, norm, compile=True, **({"amp": amp} if amp else {}))
        trainer = self.trainer(cfg, fixed=False)
        try:
            it = self.iteration(trainer)
            t0 = time.perf_counter()
            it(1)  # compiles (not under the device lock: minutes of CPU)
            self.sync()
            first_s = time.perf_counter() - t0
            with self.device_lock():
                seconds, peak, _ = self.timed(it, first=1)
        finally:
            self.close(trainer)
        missing = object()
        compiled = getattr(getattr(trainer, "step_model", None), "compiled", missing)
        threads = os.environ.get("TORCHINDUCTOR_COMPILE_THREADS")
        notes = [f"compile s {first_s:.1f}" + (f" ({threads} inductor threads, beside other workers)" if threads else "")]
        try:
            from torch._dynamo.utils import counters

            notes.append(f"graphs {counters['stats'].get('unique_graphs', 0)}, "
                         f"graph breaks {sum(counters['graph_break'].values())}")
        except Exception:  # dynamo's counters are internal: report without them
            pass
        return {"ms": 1e3 * seconds, "peak_gib": peak, "compile_s": first_s,
                "fell_back": None if compiled is missing else compiled is None, "note": "; ".join(notes)}

    def stage_pack(self, model: str, norm: str) -> dict[str, Any]:
        """One of ``ranks`` processes sharing the device: warm up, meet at the barrier, train the window."""
        cfg, _ = self.cell_config(model, norm)
        trainer = self.trainer(cfg, fixed=False)
        barrier, ranks = Path(self.job["barrier"]), self.job["ranks"]
        try:
            it = self.iteration(trainer)
            with self.device_lock(shared=True):
                step = 0
                for _ in range(self.plan.warmup):
                    step += 1
                    it(step)
                self.sync()
                (barrier / str(self.job["rank"])).touch()
                while len(list(barrier.iterdir())) < ranks:
                    if time.time() > self.job["deadline"]:
                        raise TimeoutError("the other packed processes never reached the barrier")
                    time.sleep(0.01)
                if self.cuda:
                    torch.cuda.reset_peak_memory_stats(self.device)
                t0, start = time.perf_counter(), step
                while time.perf_counter() - t0 < self.plan.window_s or step - start < self.plan.steps:
                    step += 1
                    it(step)
                self.sync()
                elapsed = time.perf_counter() - t0
        finally:
            self.close(trainer)
        return {"steps": step - start, "elapsed": elapsed, "ms": 1e3 * elapsed / (step - start),
                "peak_gib": self.peak_gib(), "cell_steps": cfg["train"]["steps"]}

    def stage_ops(self, model: str, norm: str) -> dict[str, Any]:
        """--ops-only: operators of one forward+backward and of one Trainer.step, FLOPs of the cell's step.
        Counted at batch OPS_BATCH on LQ patches of OPS_WINDOWS windows a side (the counts are those of
        the cell's size, and the CPU time a fraction); FLOPs scaled to the cell's batch and patch."""
        cfg, cell_batch = self.cell_config(model, norm)
        net = self.model(cfg)
        cell_patch, scale = cfg["train"]["patch_size"], self.scale(cfg)
        window = getattr(net, "window_size", None)
        if isinstance(window, int) and OPS_WINDOWS * window * scale < cell_patch:
            cfg["train"]["patch_size"] = OPS_WINDOWS * window * scale
        patch = cfg["train"]["patch_size"]
        lq, gt = self.fixed_batch(cfg)

        def forward_backward() -> None:
            net.zero_grad(set_to_none=True)
            F.l1_loss(net(lq), gt).backward()

        forward_backward()  # fills per-shape caches: the count is of a steady-state step
        fb = self.count(forward_backward)
        trainer = self.trainer(cfg, fixed=True)
        it = self.iteration(trainer)
        it(1)
        whole = self.count(lambda: it(2))
        factor = cell_batch * cell_patch**2 / (OPS_BATCH * patch**2)
        notes = [f"counted at batch {OPS_BATCH}, HR {patch}²; FLOPs × {factor:g}", fb["note"], whole["note"]]
        return {"ops_fwdbwd": fb["ops"], "ops": whole["ops"],
                "gflop": fb["gflop"] * factor if fb["gflop"] is not None else None,
                "ops_top": fb["ops_top"], "note": "; ".join(n for n in notes if n)}

    def stage_profile(self, model: str, norm: str) -> dict[str, Any]:
        from torch.profiler import ProfilerActivity, profile

        cfg, _ = self.cell_config(model, norm)
        trainer = self.trainer(cfg, fixed=True)
        it = self.iteration(trainer)
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if self.cuda else [])
        steps = 3
        with self.device_lock():
            for step in range(1, self.plan.warmup + 1):
                it(step)
            self.sync()
            t0 = time.perf_counter()
            with profile(activities=activities) as prof:
                for step in range(self.plan.warmup + 1, self.plan.warmup + steps + 1):
                    it(step)
                self.sync()
            seconds = (time.perf_counter() - t0) / steps
        averages = prof.key_averages()
        table = ""
        for sort in (("self_device_time_total", "self_cuda_time_total") if self.cuda else ("self_cpu_time_total",)):
            try:
                table = averages.table(sort_by=sort, row_limit=15)
                break
            except Exception:  # the older name of the same column
                continue
        return {"ms": 1e3 * seconds, "table": f"{steps} steps profiled, sorted by {sort}\n{table}",
                "note": "profiled (slower than unprofiled)"}

    def run(self, model: str, norm: str, stage: str) -> dict[str, Any]:
        if stage == "bare":
            return self.stage_bare(model, norm)
        if stage in ("fixed", "trainer"):
            return self.stage_trainer(model, norm, fixed=stage == "fixed")
        if stage == "tf32":
            return self.stage_trainer(model, norm, tf32=True)
        if stage == "bf16":
            return self.stage_trainer(model, norm, amp="bf16")
        if stage in ("compile", "compile_bf16"):
            return self.stage_compile(model, norm, "bf16" if stage == "compile_bf16" else None)
        if stage.startswith("pack"):
            return self.stage_pack(model, norm)
        if stage == "ops":
            return self.stage_ops(model, norm)
        if stage == "profile":
            return self.stage_profile(model, norm)
        raise ValueError(f"unknown stage {stage!r}")


def one_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0] if lines else ''}"[:300].rstrip(": ")


def emit(result: dict[str, Any]) -> None:
    print(MARK + json.dumps(result), flush=True)


def worker_main(job: dict[str, Any]) -> None:
    """Run the job's stages in this process; one result line each (an error is a result too)."""
    plan = Plan(**{**job["plan"], "packing": tuple(job["plan"]["packing"])})
    base = {"side": job["side"], "torch": torch.__version__}
    try:
        if plan.compile_backend:
            import functools

            torch.compile = functools.partial(torch.compile, backend=plan.compile_backend)  # type: ignore[assignment]
        import ablate

        where = Path(ablate.__file__).resolve()
        if not where.is_relative_to(Path(job["root"]).resolve()):
            raise ImportError(f"ablate was imported from {where.parent}, not from --root {job['root']}")
        device = torch.device("cuda" if torch.cuda.is_available() and not job["ops_only"] else "cpu")
        base["device"] = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
        base["ablate"] = str(where.parent)
        w = Worker(job, plan, device)
    except Exception as err:
        for model, norm, stage in job["items"]:
            emit({**base, "model": model, "norm": norm, "stage": stage, "error": one_line(err)})
        return
    for model, norm, stage in job["items"]:
        out = {**base, "model": model, "norm": norm, "stage": stage}
        print(stage_mark((model, norm, stage)), file=sys.stderr, flush=True)  # the stage's stderr lines follow
        try:
            out.update(w.run(model, norm, stage))
        except Exception as err:
            out["error"] = one_line(err)
        out["load"] = os.getloadavg()[0]
        emit(out)
        if device.type == "cuda":
            torch.cuda.empty_cache()


# --- the parent: jobs, lanes, the budget, the report --------------------------------------------------


@dataclass
class Job:
    side: str  # "after" (this tree) or "before" (--root)
    root: Path
    items: list[tuple[str, str, str]]  # (model, norm, stage), run in this order by one process
    lane: str  # "main", "compile" or "pack"; "pack" starts when "main" is done
    ranks: int = 1  # processes (the packed rows)
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class Running:
    job: Job
    procs: list[subprocess.Popen[str]]
    errs: list[Path]
    readers: list[threading.Thread]
    results: list[dict[str, Any]] = field(default_factory=list)
    started: float = 0.0
    compiling: int = 0  # compile jobs running when this one started (their CPU load shares the machine)


class Report:
    """Results as they come (one line each on stdout, the JSON file rewritten), and the final tables."""

    def __init__(self, json_path: Path | None, meta: dict[str, Any], t0: float, sides: list[str]) -> None:
        self.json_path, self.meta, self.t0, self.sides = json_path, meta, t0, sides
        self.results: list[dict[str, Any]] = []

    def add(self, r: dict[str, Any]) -> None:
        self.results.append(r)
        what = (f"[{time.monotonic() - self.t0:5.0f} s] {r['side']:<6} {r['model']} {r['norm']} "
                f"{run_name(r['stage'])}: ")
        if r.get("error"):
            what += r["error"]
        else:
            parts = []
            if r.get("ms") is not None:
                parts.append(f"{r['ms']:.1f} ms/step")
            if self.tflops(r) is not None:
                parts.append(f"{self.tflops(r):.2f} TFLOP/s")
            for key, label in (("ops", "ops/step"), ("ops_fwdbwd", "ops fwd+bwd"), ("gflop", "GFLOP")):
                if r.get(key) is not None:
                    parts.append(f"{r[key]:,.0f} {label}" if key != "gflop" else f"{r[key]:,.4g} {label}")
            if r.get("peak_gib") is not None:
                parts.append(f"{r['peak_gib']:.2f} GiB")
            if r.get("note"):
                parts.append(r["note"])
            what += " · ".join(parts)
        print(what, flush=True)
        if r.get("table"):
            print(r["table"], flush=True)
        self.dump()

    def dump(self) -> None:
        if self.json_path is None:
            return
        self.meta["elapsed_s"] = round(time.monotonic() - self.t0, 1)
        self.json_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.json_path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"meta": self.meta, "results": self.results}, indent=1))
        tmp.replace(self.json_path)

    def get(self, side: str, model: str, norm: str, stage: str) -> dict[str, Any] | None:
        for r in self.results:
            if (r["side"], r["model"], r["norm"], r["stage"]) == (side, model, norm, stage):
                return r
        return None

    def ms(self, side: str, model: str, norm: str, stage: str) -> float | None:
        r = self.get(side, model, norm, stage)
        return r.get("ms") if r and not r.get("error") else None

    def gflop(self, side: str, model: str, norm: str) -> float | None:
        """The FLOPs of the cell's forward+backward as counted by any eager row of that checkout."""
        for stage in ("bare", "fixed", "trainer", "tf32", "bf16"):
            r = self.get(side, model, norm, stage)
            if r and r.get("gflop"):
                return float(r["gflop"])
        return None

    def tflops(self, r: dict[str, Any]) -> float | None:
        if r.get("error") or not r.get("ms") or r["stage"].startswith("pack") or r["stage"] in ("ops", "profile"):
            return None
        # the bare loop's forward+backward count for every row of the cell: a compiled or graph-captured
        # step dispatches (and so counts) little or nothing
        gflop = self.gflop(r["side"], r["model"], r["norm"]) or r.get("gflop")
        return gflop / r["ms"] if gflop else None  # GFLOP / ms = TFLOP/s

    def keys(self) -> list[tuple[str, str, str]]:
        seen: dict[tuple[str, str, str], None] = {}
        for r in self.results:
            seen[(r["model"], r["norm"], r["stage"])] = None
        order = list(PAPER) + sorted({k[0] for k in seen} - set(PAPER))

        def rank(k: tuple[str, str, str]) -> tuple[int, int, int, int]:
            stage_order = list(RUNS)
            pack = k[2].startswith("pack")
            return (int(pack), order.index(k[0]), NORMS.index(k[1]) if k[1] in NORMS else 9,
                    int(k[2][4:]) if pack else stage_order.index(k[2]) if k[2] in stage_order else 99)

        return sorted(seen, key=rank)

    def table(self) -> None:
        both = len(self.sides) == 2
        cols = ["model", "norm", "run"]
        if both:
            cols += ["ms before", "ms after", "after / before", "TFLOP/s before", "TFLOP/s after",
                     "ops/step before", "ops/step after", "peak GiB after", "note"]
        else:
            cols += ["ms/step", "TFLOP/s", "ops/step", "peak GiB", "note"]
        print("| " + " | ".join(cols) + " |")
        print("|" + "|".join("---" if c in ("model", "norm", "run", "note") else "---:" for c in cols) + "|")
        for model, norm, stage in self.keys():
            rs = {s: self.get(s, model, norm, stage) for s in self.sides}
            ms = {s: (r.get("ms") if r and not r.get("error") else None) for s, r in rs.items()}
            cells = [model, norm, run_name(stage)]
            cells += [fmt(ms[s], ".1f") for s in self.sides]
            if both:
                cells.append(ratio(ms["after"], ms["before"]))
            cells += [fmt(self.tflops(r) if r else None, ".2f") for r in rs.values()]
            cells += [fmt(r.get("ops") if r else None, ",.0f") for r in rs.values()]
            r_after = rs["after"]
            cells.append(fmt(r_after.get("peak_gib") if r_after else None, ".2f"))
            notes = []
            for s, r in rs.items():
                text = note_of(r) if r else ""
                if text:
                    notes.append(f"{s}: {text}" if both else text)
            cells.append("; ".join(notes).replace("|", "/"))
            print("| " + " | ".join(cells) + " |")

    def ratios(self) -> None:
        """The ratios the issues ask for, per checkout, from the rows above."""
        models = [m for m in PAPER if any(r["model"] == m for r in self.results)]
        lines: list[tuple[str, str, list[str]]] = []

        def add(label: str, model: str, num: tuple[str, str], den: tuple[str, str]) -> None:
            vals = [ratio(self.ms(s, model, *num), self.ms(s, model, *den)) for s in self.sides]
            if any(vals):
                lines.append((label, model, vals))

        for model in models:
            for stage in ("bare", "fixed", "trainer", "tf32", "bf16", "compile"):
                add(f"i_ln / token_ln, {run_name(stage)}", model, ("i_ln", stage), ("token_ln", stage))
            for norm in NORMS:
                add(f"TF32 / fp32 ({norm})", model, (norm, "tf32"), (norm, "trainer"))
                add(f"bf16 / fp32 ({norm})", model, (norm, "bf16"), (norm, "trainer"))
                add(f"compile / eager ({norm})", model, (norm, "compile"), (norm, "trainer"))
                add(f"compile bf16 / eager fp32 ({norm})", model, (norm, "compile_bf16"), (norm, "trainer"))
                add(f"Trainer fixed batch / bare loop ({norm})", model, (norm, "fixed"), (norm, "bare"))
                add(f"Trainer real data / fixed batch ({norm})", model, (norm, "trainer"), (norm, "fixed"))
                add(f"Trainer real data / bare loop ({norm})", model, (norm, "trainer"), (norm, "bare"))
        for r in self.results:
            if r["stage"].startswith("pack") and r.get("steps_s") and r["stage"] != "pack1":
                one = self.get(r["side"], r["model"], r["norm"], "pack1")
                if one and one.get("steps_s"):
                    vals = ["" for _ in self.sides]
                    vals[self.sides.index(r["side"])] = f"{r['steps_s'] / one['steps_s']:.3f}"
                    lines.append((f"Σ steps/s, {r['stage'][4:]} cells / 1 cell", r["model"], vals))
        if lines:
            print("\nratios (ms/step over ms/step; packing: steps/s over steps/s)\n")
            print("| ratio | model | " + " | ".join(self.sides) + " |")
            print("|---|---|" + "---:|" * len(self.sides))
            for label, model, vals in lines:
                print(f"| {label} | {model} | " + " | ".join(vals) + " |")
        self.counts_table()

    def counts_table(self) -> None:
        """Per model and norm: aten operators of one forward+backward (and, --ops-only, of one Trainer.step)
        and the FLOPs of the cell's forward+backward, per checkout."""
        ops_only = any(r["stage"] == "ops" for r in self.results)
        both = len(self.sides) == 2
        cols: list[tuple[str, Callable[[dict[str, Any]], Any], str]] = [
            ("ops fwd+bwd", lambda r: r.get("ops_fwdbwd"), ",.0f")]
        if ops_only:
            cols.append(("ops Trainer.step", lambda r: r.get("ops"), ",.0f"))
        cols.append(("GFLOP fwd+bwd", lambda r: r.get("gflop"), ",.4g"))
        rows: list[tuple[str, str, dict[str, dict[str, Any]]]] = []
        for model in PAPER:
            for norm in NORMS:
                got = {}
                for s in self.sides:
                    r = self.get(s, model, norm, "ops" if ops_only else "bare")
                    if r and not r.get("error"):
                        got[s] = r
                if got:
                    rows.append((model, norm, got))
        if not rows:
            return
        where = "on the CPU" if ops_only else "on the device, bare-loop stage"
        print(f"\naten operators and FLOPs per step ({where}; FLOPs at the cell's batch)\n")
        head = ["model", "norm"]
        for label, _, _ in cols:
            head += [f"{label} {s}" for s in self.sides] + (["after / before"] if both else [])
        head += [f"ops fwd+bwd i_ln / token_ln {s}" for s in self.sides]
        print("| " + " | ".join(head) + " |")
        print("|---|---|" + "---:|" * (len(head) - 2))
        for model, norm, got in rows:
            token = next((g for m, n, g in rows if (m, n) == (model, "token_ln")), {})
            cells = [model, norm]
            for _, value, spec in cols:
                vals = {s: value(got[s]) if s in got else None for s in self.sides}
                cells += [fmt(vals[s], spec) for s in self.sides]
                if both:
                    cells.append(ratio(vals["after"], vals["before"]))
            for s in self.sides:
                mine, base = got.get(s, {}).get("ops_fwdbwd"), token.get(s, {}).get("ops_fwdbwd")
                cells.append(ratio(mine, base) if norm != "token_ln" else "")
            print("| " + " | ".join(cells) + " |")


def run_name(stage: str) -> str:
    if stage.startswith("pack"):
        n = int(stage[4:])
        return f"Trainer, {n} cell{'s' if n > 1 else ''}/GPU"
    return RUNS.get(stage, stage)


def fmt(value: Any, spec: str) -> str:
    return "" if value is None or value != value else format(value, spec)  # None and NaN print empty


def ratio(num: float | None, den: float | None) -> str:
    return f"{num / den:.3f}" if num is not None and den else ""


def note_of(r: dict[str, Any]) -> str:
    if r.get("error"):
        return r["error"]
    note = r.get("note") or ""
    if r.get("fell_back"):
        note = "FELL BACK to eager; " + note
    return note


def last_line(path: Path) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 16384))
            lines = [ln.strip() for ln in fh.read().decode(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1][:300] if lines else ""


def stage_mark(item: tuple[str, str, str]) -> str:
    """The line a worker writes to stderr as it starts a stage (model, norm, stage)."""
    return f"{MARK}stage {' '.join(item)}"


def first_match(path: Path, pattern: re.Pattern[str], item: tuple[str, str, str] | None = None) -> str:
    """The first line of a worker's stderr that ``pattern`` finds; with ``item``, among the lines the
    worker wrote while it ran that stage (a smoke job runs several in one process; the lines before its
    first stage count as the first stage's)."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    marks = [i for i, line in enumerate(lines) if line.startswith(f"{MARK}stage ")]
    start, end = 0, len(lines)
    if item is not None and marks:
        mine = [i for i in marks if lines[i] == stage_mark(item)]
        if not mine:  # the worker died before the stage began
            return ""
        start = 0 if mine[0] == marks[0] else mine[0]
        end = next((i for i in marks if i > mine[0]), len(lines))
    for line in lines[start:end]:
        if pattern.search(line) and not line.startswith(f"{MARK}stage "):
            return line.strip()[:200]
    return ""


class Runner:
    """Starts jobs lane by lane within the caps and the budget, collects their results, stops them at
    the budget, and turns a worker that died into rows saying so."""

    def __init__(self, jobs: list[Job], caps: dict[str, int], total: int, plan: Plan, budget: float,
                 report: Report, payload: dict[str, Any], tmp: Path, logs: Path | None) -> None:
        self.pending, self.caps, self.total, self.plan = list(jobs), caps, total, plan
        self.budget, self.report, self.payload, self.tmp, self.logs = budget, report, payload, tmp, logs
        self.running: list[Running] = []
        self.lines: queue.Queue[tuple[int, dict[str, Any]]] = queue.Queue()
        self.count = 0

    def remaining(self) -> float:
        return self.budget - (time.monotonic() - self.report.t0)

    def start(self, job: Job) -> None:
        self.count += 1
        n = self.count
        barrier = self.tmp / f"barrier-{n}"
        barrier.mkdir()
        env = dict(os.environ, **job.env)
        env["PYTHONPATH"] = os.pathsep.join([str(job.root), *filter(None, [os.environ.get("PYTHONPATH")])])
        run = Running(job, [], [], [], started=time.monotonic(),
                      compiling=sum(r.job.lane == "compile" for r in self.running))
        for rank in range(job.ranks):
            payload = {**self.payload, "side": job.side, "root": str(job.root), "items": job.items,
                       "rank": rank, "ranks": job.ranks, "barrier": str(barrier),
                       "deadline": time.time() + max(self.remaining(), 1.0)}
            err = self.tmp / f"{n}-{rank}.err"
            with open(err, "w") as fh:
                cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(payload)]
                proc = subprocess.Popen(cmd, cwd=job.root, env=env, stdout=subprocess.PIPE, stderr=fh, text=True,
                                        start_new_session=True)
            reader = threading.Thread(target=self._read, args=(id(run), proc.stdout), daemon=True)
            reader.start()
            run.procs.append(proc)
            run.errs.append(err)
            run.readers.append(reader)
        self.running.append(run)

    def _read(self, key: int, stream: IO[str] | None) -> None:
        assert stream is not None
        for line in stream:
            if line.startswith(MARK):
                try:
                    self.lines.put((key, json.loads(line[len(MARK):])))
                except json.JSONDecodeError:
                    pass

    def drain(self) -> None:
        while True:
            try:
                key, result = self.lines.get_nowait()
            except queue.Empty:
                return
            for run in self.running:
                if id(run) == key:
                    run.results.append(result)

    def kill(self, run: Running) -> None:
        for proc in run.procs:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)  # the worker's own group: inductor's compile pool too
                proc.wait()

    def finish(self, run: Running, why: str = "") -> None:
        """Report the job's results; every item without one becomes a row with the reason."""
        self.kill(run)
        for reader in run.readers:
            reader.join(timeout=5)
        self.drain()
        self.running.remove(run)
        job = run.job
        if self.logs is not None:
            self.logs.mkdir(parents=True, exist_ok=True)
            for rank, err in enumerate(run.errs):
                name = "_".join([job.side, *job.items[0]] if len(job.items) == 1 else [job.side, job.items[0][2]])
                data = err.read_bytes()[-16384:] if err.exists() else b""
                (self.logs / f"{name}{f'-{rank}' if job.ranks > 1 else ''}.log").write_bytes(data)
        if not why:
            failed = [(p.returncode, e) for p, e in zip(run.procs, run.errs) if p.returncode]
            if failed:
                code, err = failed[0]
                why = f"worker exited {code}: {last_line(err) or 'no stderr'}"
        if job.ranks > 1 or job.items[0][2].startswith("pack"):
            self.report.add(self.packed(job, run, why))
            return
        got = {(r["model"], r["norm"], r["stage"]): r for r in run.results}
        for model, norm, stage in job.items:
            r = got.get((model, norm, stage))
            if r is None:
                r = {"side": job.side, "model": model, "norm": norm, "stage": stage,
                     "error": why or f"worker ended without a result: {last_line(run.errs[0]) or 'no stderr'}"}
            elif stage.startswith("compile") and not r.get("error"):
                item = (model, norm, stage)
                fell, warned = first_match(run.errs[0], FALLBACK, item), first_match(run.errs[0], COMPILE_WARNING, item)
                if fell:
                    r["fell_back"] = True
                r["note"] = "; ".join(filter(None, [r.get("note"), fell, warned]))
            self.report.add(r)

    def packed(self, job: Job, run: Running, why: str) -> dict[str, Any]:
        model, norm, stage = job.items[0]
        out: dict[str, Any] = {"side": job.side, "model": model, "norm": norm, "stage": stage}
        errors = [r["error"] for r in run.results if r.get("error")]
        if why or errors or len(run.results) < job.ranks:
            out["error"] = why or (errors[0] if errors else "a packed worker ended without a result")
            return out
        total = sum(r["steps"] / r["elapsed"] for r in run.results)
        steps = run.results[0]["cell_steps"]
        one = self.report.get(job.side, model, norm, "pack1")
        vs = f"; {total / one['steps_s']:.2f} × 1 cell" if one and one.get("steps_s") else ""
        peak = max(r.get("peak_gib") or 0.0 for r in run.results) or None
        out.update(ms=1e3 * job.ranks / total, steps_s=total, peak_gib=peak, device=run.results[0].get("device"),
                   note=f"Σ {total:.2f} steps/s, {3600 * total / steps:.2f} cells/h{vs}; peak per process"
                   + (f"; {run.compiling} compile job(s) running beside it" if run.compiling else ""))
        return out

    def can_start(self, job: Job) -> bool:
        lane = [r for r in self.running if r.job.lane == job.lane]
        if len(self.running) >= self.total or len(lane) >= self.caps[job.lane]:
            return False
        if job.lane == "pack":  # alone on the device with the compile workers only
            busy = [r for r in self.running if r.job.lane != "compile"]
            return not busy and not any(j.lane == "main" for j in self.pending)
        return True

    def loop(self) -> None:
        while self.pending or self.running:
            for job in list(self.pending):
                if self.remaining() < self.plan.start_s[job.lane]:
                    self.pending.remove(job)
                    for model, norm, stage in job.items:
                        self.report.add({"side": job.side, "model": model, "norm": norm, "stage": stage,
                                         "error": f"not run: --budget {self.budget:.0f} s would be spent"})
                elif self.can_start(job):
                    self.pending.remove(job)
                    self.start(job)
            self.drain()
            for run in list(self.running):
                codes = [p.poll() for p in run.procs]
                if all(c is not None for c in codes):
                    self.finish(run)
                elif any(c not in (None, 0) for c in codes) and run.job.ranks > 1:
                    self.finish(run)  # a packed process died: the others would wait at the barrier
                elif self.remaining() <= 0:
                    self.finish(run, f"stopped: --budget {self.budget:.0f} s spent "
                                     f"({time.monotonic() - run.started:.0f} s into this job)")
            time.sleep(0.05)

    def stop_all(self, why: str) -> None:
        for run in list(self.running):
            self.finish(run, why)


def plan_jobs(args: argparse.Namespace, plan: Plan, sides: dict[str, Path], smoke: bool = False) -> list[Job]:
    """Every job of the run, in order of priority within its lane: per model and norm, each run of
    before and of after one after the other, so that the two are timed close together. A measured run
    gives each eager and each compile run a process of its own; smoke mode runs a side's eager and
    compile runs of one model and norm in one process (in order, compile after eager, TF32 last: an older
    tree sets it for the whole process), where a process start (torch, ablate, the optimizer's first use)
    costs more than its few steps. Each stage's stderr lines follow its mark there (``stage_mark``)."""
    pairs = [(m, n) for m in args.models for n in args.norms]
    if args.ops_only:
        return [Job(side, root, [(m, n, "ops") for m, n in pairs], "main") for side, root in sides.items()]
    if args.profile:
        return [Job(side, root, [(m, n, "profile")], "main") for m, n in pairs for side, root in sides.items()]
    full = args.before == "full"

    def stages(side: str, model: str, norm: str) -> tuple[str, ...]:
        return EAGER if side == "after" or full else LEAN_BEFORE.get((model, norm), ("trainer",))

    runs = set(args.runs)
    eager = [(side, root, model, norm, stage)
             for model, norm in pairs for stage in ("trainer", "bare", "fixed", "bf16", "tf32")
             for side, root in sides.items() if stage in stages(side, model, norm) and stage in runs]
    grouped: dict[tuple[str, str, str], Job] = {}
    if smoke:
        for side, root, model, norm, stage in eager:
            grouped.setdefault((side, model, norm), Job(side, root, [], "main")).items.append((model, norm, stage))
        jobs = list(grouped.values())
    else:
        jobs = [Job(side, root, [(model, norm, stage)], "main") for side, root, model, norm, stage in eager]
    if not args.no_compile:
        compiles = [c for c in COMPILES if c[0] in sides]
        if full and "before" in sides:  # every compile row of after, before too
            compiles += [("before", *c[1:]) for c in COMPILES
                         if c[0] == "after" and ("before", *c[1:]) not in COMPILES]
        for side, model, norm, stage in compiles:
            if model not in args.models or norm not in args.norms or stage not in runs:
                continue
            host = grouped.get((side, model, norm))
            if host is None:
                jobs.append(Job(side, sides[side], [(model, norm, stage)], "compile"))
            else:  # smoke mode: in the process of the eager runs, before TF32
                at = next((i for i, item in enumerate(host.items) if item[2] == "tf32"), len(host.items))
                host.items.insert(at, (model, norm, stage))
    if not args.no_packing and "pack" in runs and PACK_MODEL in args.models and "token_ln" in args.norms:
        jobs += [Job(side, root, [(PACK_MODEL, "token_ln", f"pack{n}")], "pack", ranks=n)
                 for side, root in sides.items() if side == "after" or full for n in plan.packing]
    return jobs


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, help="another ablate checkout to measure as 'before', in the same run")
    parser.add_argument("--models", nargs="+", default=list(PAPER), choices=list(PAPER))
    parser.add_argument("--norms", nargs="+", default=list(NORMS), help="norm variants (default: token_ln i_ln)")
    parser.add_argument("--smoke", action="store_true", help="tiny models, a few steps (always, without CUDA)")
    parser.add_argument("--ops-only", action="store_true", help="on the CPU: operator and FLOP counts only")
    parser.add_argument("--profile", action="store_true",
                        help="a torch profiler table (top 15 kernels) of one step per model and norm")
    parser.add_argument("--before", choices=("lean", "full"), default="lean",
                        help="lean (default): Trainer rows of every cell, bare loop and bf16 of swinir-light, "
                             "compile of swinir-light token_ln; full: every run 'after' has")
    parser.add_argument("--no-compile", action="store_true", help="leave out the torch.compile rows")
    parser.add_argument("--no-packing", action="store_true", help="leave out the cells-per-GPU rows")
    parser.add_argument("--runs", nargs="+", default=list(RUN_KEYS), choices=RUN_KEYS, metavar="RUN",
                        help=f"only these runs ({' '.join(RUN_KEYS)}; default all)")
    parser.add_argument("--compile-backend", help="torch.compile's backend in the compile rows "
                        "(default: inductor; eager in smoke mode)")
    parser.add_argument("--serial", action="store_true", help="one worker at a time (no overlap; slower)")
    parser.add_argument("--budget", type=float, default=None,
                        help="seconds: no job starts that would not fit, running ones are stopped at it "
                             "(default 390 on CUDA, 900 otherwise)")
    parser.add_argument("--warmup", type=int, help="untimed steps before each timed block")
    parser.add_argument("--steps", type=int, help="timed steps per row")
    parser.add_argument("--json", type=Path, help="write every result here, rewritten as they come")
    parser.add_argument("--logs", type=Path, help="keep the last 16 kB of each worker's stderr here")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker_main(json.loads(args.worker))
        return

    t0 = time.monotonic()
    cuda = torch.cuda.is_available() and not args.ops_only
    smoke = args.smoke or not (cuda or args.ops_only)  # --ops-only counts the paper models unless --smoke
    plan = SMOKE if smoke else FULL
    plan = dataclasses.replace(plan, warmup=args.warmup if args.warmup is not None else plan.warmup,
                               steps=args.steps or plan.steps, compile_backend=args.compile_backend or plan.compile_backend)
    budget = args.budget if args.budget is not None else (390.0 if cuda else 900.0)
    sides = {"after": ROOT}
    if args.root is not None:
        before = args.root.resolve()
        if not (before / "ablate" / "__init__.py").is_file():
            raise SystemExit(f"--root {args.root}: expected an ablate checkout (no ablate/__init__.py there)")
        for model in args.models:
            if not (before / PAPER[model]).is_file():
                raise SystemExit(f"--root {args.root}: expected {PAPER[model]} there")
        sides = {"before": before, "after": ROOT}
    bad = [n for n in args.norms if not re.fullmatch(r"[a-z0-9_]+", n)]
    if bad:
        raise SystemExit(f"--norms: expected norm names like token_ln, got {bad[0]!r}")

    if args.ops_only:
        print("ops-only: aten operators and FLOPs counted on the CPU (machine-independent)")
    elif smoke:
        why = "no CUDA" if not torch.cuda.is_available() else "--smoke"
        print(f"smoke mode: {why} (tiny models, a few steps: the numbers mean nothing)")
    cpus = os.cpu_count() or 2
    if args.serial:
        caps, total = {"main": 1, "compile": 1, "pack": 1}, 1
    elif cuda:
        caps, total = {"main": 3, "compile": 2, "pack": 1}, 5
    else:
        caps, total = {"main": 2, "compile": 1, "pack": 1}, 2
    jobs = plan_jobs(args, plan, sides, smoke)
    if cuda and not args.serial and "TORCHINDUCTOR_COMPILE_THREADS" not in os.environ:
        threads = str(max(1, (cpus - 2 * caps["main"]) // caps["compile"]))
        for job in jobs:
            if job.lane == "compile":
                job.env["TORCHINDUCTOR_COMPILE_THREADS"] = threads
    if args.ops_only:
        for job in jobs:
            job.env["CUDA_VISIBLE_DEVICES"] = ""
    timing = ("" if args.ops_only else f"{plan.steps} timed steps after {plan.warmup} warmup, packed rows over "
              f"{plan.window_s:g} s; ")
    header = (f"bench_gpu: torch {torch.__version__}; " + ", ".join(f"{s} = {p}" for s, p in sides.items())
              + f"; paper cells at {TASK}; {timing}{len(jobs)} jobs, budget {budget:.0f} s"
              + ("; serial" if args.serial else f"; up to {total} workers at once, timed blocks one at a time"))
    print(header + "\n", flush=True)
    meta = {"argv": sys.argv[1:], "torch": torch.__version__, "roots": {s: str(p) for s, p in sides.items()},
            "plan": dataclasses.asdict(plan), "budget_s": budget, "smoke": smoke, "ops_only": args.ops_only,
            "started": time.strftime("%Y-%m-%d %H:%M:%S"), "cpus": cpus}
    report = Report(args.json, meta, t0, list(sides))
    with tempfile.TemporaryDirectory(prefix="bench-gpu-") as tmp:
        lock = Path(tmp) / "device.lock"
        lock.touch()
        payload = {"plan": dataclasses.asdict(plan), "smoke": smoke, "ops_only": args.ops_only, "lock": str(lock),
                   "threads": (max(1, cpus // total) if args.ops_only else 0)}
        runner = Runner(jobs, caps, total, plan, budget, report, payload, Path(tmp), args.logs)
        previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
        try:
            runner.loop()
        except (KeyboardInterrupt, SystemExit):
            runner.stop_all("stopped: the benchmark was interrupted")
        finally:
            signal.signal(signal.SIGTERM, previous)
            runner.stop_all("stopped: the benchmark ended")
    devices = sorted({r["device"] for r in report.results if r.get("device")})
    meta["devices"] = devices
    report.dump()
    if args.ops_only:
        report.counts_table()
    elif not args.profile:
        print(f"\n{', '.join(devices) or 'no device reported'}; torch {torch.__version__}\n")
        report.table()
        report.ratios()
    print(f"\nbench_gpu: {time.monotonic() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main()
