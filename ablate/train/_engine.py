from __future__ import annotations

import copy
import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ablate.errors import AblateError
from ablate.probes import Probe
from ablate.spec import CellSpec

from ._reporter import NullReporter, Reporter, Trace
from ._samples import save_samples
from ._schedule import lr_lambda

# The reference variant every cell's shared parameters are initialised from, so that cells that differ
# only in the norm start from identical weights wherever they have the same parameters.
_PAIRING_NORM = "token_ln"
_CHECKPOINT_FILE = "state.pt"


@dataclass
class CellResult:
    """What one cell produced. ``status`` ∈ finished | diverged | failed | killed."""

    status: str
    reason: str = ""
    step: int = 0
    summary: dict[str, float] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    checkpoint: Path | None = None


class Diverged(Exception):
    """Raised inside the loop when the divergence guard fires."""


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise AblateError(f"train.device: {name!r} was asked for but CUDA is not available on this machine")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class Cell:
    """A resolved cell: components built from a CellSpec (model, task, data, probe batch…)."""

    def __init__(self, spec: CellSpec) -> None:
        from ablate.backbones import build_backbone
        from ablate.data import PairSampler, probe_batch, resolve_dataset, validation_pairs
        from ablate.norms import resolve_norm
        from ablate.tasks import resolve_task

        self.spec = spec
        tr = spec.train
        self.variant = resolve_norm(spec.norm.to_config(), spec.rescale)
        self.task = resolve_task(spec.task)
        self.dataset = resolve_dataset(spec.data)
        scale = self.task.scale
        if tr.patch_size % scale:
            raise AblateError(f"train.patch_size: expected a multiple of the task scale {scale}, "
                              f"got {tr.patch_size}")
        # Identical init for paired cells: build the reference-norm model under the seed, then the
        # cell's model under the same seed, and copy every parameter they share.
        seed_everything(spec.seed)
        self.model: nn.Module = build_backbone(spec.backbone, self.variant, scale)
        seed_everything(spec.seed)
        reference = build_backbone(spec.backbone, resolve_norm(_PAIRING_NORM), scale)
        _copy_shared(reference, self.model)
        del reference
        self.sampler = PairSampler(self.dataset, self.task, tr.patch_size, tr.batch_size, spec.seed)
        self.val = validation_pairs(self.dataset, self.task, tr.val_size, seed=1234)
        p = spec.probes
        self.probe_lq = probe_batch(self.dataset, self.task, p.batch, p.patch_size - p.patch_size % scale,
                                    seed=4321) if p.every else None


def _copy_shared(src: nn.Module, dst: nn.Module) -> int:
    dst_state = dst.state_dict()
    shared = {k: v for k, v in src.state_dict().items() if k in dst_state and dst_state[k].shape == v.shape
              and not k.startswith("running_")}
    dst.load_state_dict(shared, strict=False)
    return len(shared)


class _Prefetcher:
    """Prepares the next batches on background threads while the GPU trains.

    Batches are a pure function of the step, so preparing them ahead changes nothing. On the CPU the
    trial owns its cores and preparing batches would only steal them: depth 0 there.
    """

    def __init__(self, sampler: Any, last: int, depth: int, pin: bool) -> None:
        self.sampler, self.last, self.depth, self.pin = sampler, last, depth, pin
        self.pending: dict[int, Any] = {}
        self.pool = None
        if depth:
            from concurrent.futures import ThreadPoolExecutor

            self.pool = ThreadPoolExecutor(max_workers=depth, thread_name_prefix="ablate-data")

    def _make(self, step: int) -> tuple[Tensor, Tensor]:
        lq, gt = self.sampler.batch(step)
        return (lq.pin_memory(), gt.pin_memory()) if self.pin else (lq, gt)

    def get(self, step: int) -> tuple[Tensor, Tensor]:
        if self.pool is None:
            return self._make(step)
        for ahead in range(step, min(step + self.depth, self.last) + 1):
            if ahead not in self.pending:
                self.pending[ahead] = self.pool.submit(self._make, ahead)
        return self.pending.pop(step).result()  # type: ignore[no-any-return]

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)


def _loss_fn(name: str) -> Any:
    if name == "l1":
        return F.l1_loss
    if name == "mse":
        return F.mse_loss
    return lambda pred, gt: torch.sqrt((pred - gt) ** 2 + 1e-6).mean()  # charbonnier, eps 1e-3


@torch.no_grad()
def evaluate(model: nn.Module, cell: Cell, device: torch.device, dtype: torch.dtype = torch.float32,
             ) -> tuple[float, float]:
    """Mean PSNR/SSIM over the validation pairs under the task's protocol."""
    from ablate.metrics import psnr, ssim

    was_training = model.training
    model.eval()
    ps, ss = [], []
    try:
        for lq, gt in cell.val:
            out = model(lq.unsqueeze(0).to(device=device, dtype=dtype)).float()
            # a low-precision overflow yields inf/NaN: count it as the garbage image it would save as
            out = torch.nan_to_num(out, nan=0.0, posinf=1.0, neginf=0.0).clamp_(0, 1).cpu()[0]
            cb, y = cell.task.crop_border, cell.task.y_channel
            ps.append(psnr(out, gt, crop_border=cb, y_channel=y))
            ss.append(ssim(out, gt, crop_border=cb, y_channel=y))
    finally:
        model.train(was_training)
    return float(np.mean(ps)), float(np.mean(ss))


def reference_psnr(cell: Cell) -> float:
    """PSNR of the degraded input itself (bicubic upscaling for SR): the bar a model must clear."""
    from ablate.metrics import psnr

    cb, y = cell.task.crop_border, cell.task.y_channel
    return float(np.mean([psnr(cell.task.baseline(lq).clamp(0, 1), gt, crop_border=cb, y_channel=y)
                          for lq, gt in cell.val]))


def _rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: Path, **state: Any) -> Path:
    """Write atomically (a half-written checkpoint must never replace a good one)."""
    path.mkdir(parents=True, exist_ok=True)
    tmp = path / (_CHECKPOINT_FILE + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path / _CHECKPOINT_FILE)
    return path


def load_checkpoint(path: Path) -> dict[str, Any]:
    file = Path(path) / _CHECKPOINT_FILE if Path(path).is_dir() else Path(path)
    if not file.exists():
        raise AblateError(f"checkpoint: no {_CHECKPOINT_FILE} in {path}")
    return torch.load(file, map_location="cpu", weights_only=False)


def _finite_trace_guard(trace: Trace, ceiling: float) -> str | None:
    for site, stats in trace.items():
        msq = stats.get("msq", 0.0)
        if not math.isfinite(msq):
            return f"non-finite features at {site}"
        if msq > ceiling:
            return f"feature msq {msq:.3g} at {site} above train.max_msq {ceiling:.3g}"
    return None


def run_cell(spec: CellSpec, reporter: Reporter | None = None, *, checkpoint_dir: Path | None = None,
             resume_from: Path | None = None) -> CellResult:
    """Train and evaluate one cell; report as it goes; return its result.

    A cell that diverges (non-finite loss or features, or feature msq above ``train.max_msq``) stops
    cleanly with status ``diverged`` and keeps what it measured. Exceptions raised by the reporter
    (e.g. Ray stopping the trial) propagate. With ``checkpoint_dir`` the full state (model, EMA,
    optimizer, scheduler, RNG, step, history) is saved every ``train.checkpoint_every`` steps and at
    the end; ``resume_from`` continues from such a checkpoint and ends exactly where an uninterrupted
    run would (the data stream is a pure function of (seed, step)).
    """
    reporter = reporter or NullReporter()
    tr, pr = spec.train, spec.probes
    device = pick_device(tr.device)
    if tr.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    t_start = time.perf_counter()
    cell = Cell(spec)
    model = cell.model.to(device)
    ema = copy.deepcopy(model).eval().requires_grad_(False) if tr.ema > 0 else None
    opt_cls = torch.optim.AdamW if tr.optimizer.name == "adamw" else torch.optim.Adam
    optimizer = opt_cls(model.parameters(), lr=tr.optimizer.lr, betas=tr.optimizer.betas,
                        weight_decay=tr.optimizer.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(tr.schedule, tr.steps))
    loss_fn = _loss_fn(tr.loss)
    probe = Probe(model, cell.probe_lq) if cell.probe_lq is not None else None
    log_every = max(5, tr.steps // 500)
    # The loss stays on the device between reports: reading it every step would make a GPU wait
    # for each step to finish. Finiteness is checked at least every 50 steps.
    guard_every = min(log_every, 50)

    history: list[dict[str, Any]] = []
    best_psnr = float("-inf")
    start = 0
    last_trace: Trace = {}
    resumed_loss: tuple[float, int] = (0.0, 0)
    if resume_from is not None:
        state = load_checkpoint(resume_from)
        model.load_state_dict(state["model"])
        if ema is not None and state.get("ema") is not None:
            ema.load_state_dict(state["ema"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        _set_rng_state(state["rng"])
        start, history, best_psnr = state["step"], state["history"], state["best_psnr"]
        last_trace = state.get("last_trace", {})
        resumed_loss = state.get("loss_acc", (0.0, 0))

    def snapshot(step: int) -> Path | None:
        if checkpoint_dir is None:
            return None
        return save_checkpoint(
            Path(checkpoint_dir), model=model.state_dict(), ema=ema.state_dict() if ema else None,
            optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(), rng=_rng_state(),
            step=step, history=history, best_psnr=best_psnr, last_trace=last_trace, cell=spec.to_config(),
            loss_acc=(float(loss_sum), loss_n))

    timers = {"train": 0.0, "probe": 0.0, "eval": 0.0}
    ref_psnr = reference_psnr(cell)
    status, reason = "finished", ""
    step = start
    loss_sum = torch.tensor(resumed_loss[0], dtype=torch.float64, device=device)
    loss_n = resumed_loss[1]
    autocast = tr.amp == "bf16"
    model.train()
    cuda = device.type == "cuda"
    batches = _Prefetcher(cell.sampler, tr.steps, depth=2 if cuda else 0, pin=cuda)
    try:
        if probe is not None and start == 0:  # the untrained state: the trace's step 0
            t0 = time.perf_counter()
            last_trace = probe.measure()
            timers["probe"] += time.perf_counter() - t0
            reporter.report(0, {"ref/psnr_input": ref_psnr}, last_trace)
        for step in range(start + 1, tr.steps + 1):
            t0 = time.perf_counter()
            lq, gt = batches.get(step)
            lq, gt = lq.to(device, non_blocking=True), gt.to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
                pred = model(lq)
                loss = loss_fn(pred.float(), gt)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            metrics: dict[str, float] = {}
            gnorm = None
            if tr.grad_clip is not None:
                gnorm = torch.nn.utils.clip_grad_norm_(model.parameters(), tr.grad_clip)
            optimizer.step()
            scheduler.step()
            if ema is not None:
                with torch.no_grad():
                    ema_p: list[Tensor] = list(ema.parameters())
                    torch._foreach_lerp_(ema_p, list[Tensor](model.parameters()), 1.0 - tr.ema)
                    for b_ema, b in zip(ema.buffers(), model.buffers()):
                        b_ema.copy_(b)
            loss_sum += loss.detach()
            loss_n += 1
            if step % guard_every == 0 and not torch.isfinite(loss_sum):
                raise Diverged(f"non-finite loss by step {step}")
            timers["train"] += time.perf_counter() - t0

            traces = None
            if probe is not None and step % pr.every == 0:
                t0 = time.perf_counter()
                traces = last_trace = probe.measure()
                timers["probe"] += time.perf_counter() - t0
                bad = _finite_trace_guard(traces, tr.max_msq)
                if bad:
                    reporter.report(step, {"train/loss": float(loss_sum) / max(loss_n, 1)}, traces)
                    raise Diverged(f"{bad} at step {step}")
            if step % tr.eval_every == 0 or step == tr.steps:
                t0 = time.perf_counter()
                val_psnr, val_ssim = evaluate(ema or model, cell, device)
                timers["eval"] += time.perf_counter() - t0
                best_psnr = max(best_psnr, val_psnr)
                metrics.update({"val/psnr": val_psnr, "val/ssim": val_ssim})
            if metrics or traces is not None or step % log_every == 0:
                if not torch.isfinite(loss_sum):
                    raise Diverged(f"non-finite loss by step {step}")
                metrics["train/loss"] = float(loss_sum) / max(loss_n, 1)
                if gnorm is not None:
                    metrics["train/grad_norm"] = float(gnorm)
                metrics["train/lr"] = float(scheduler.get_last_lr()[0])
                loss_sum.zero_()
                loss_n = 0
                history.append({"step": step, **metrics})
                ckpt = None
                if tr.checkpoint_every and step % tr.checkpoint_every == 0 and step < tr.steps:
                    ckpt = snapshot(step)
                reporter.report(step, metrics, traces, ckpt)
            elif tr.checkpoint_every and step % tr.checkpoint_every == 0 and step < tr.steps:
                reporter.report(step, {}, None, snapshot(step))
    except Diverged as err:
        status, reason = "diverged", str(err)
    finally:
        batches.close()

    summary: dict[str, float] = {"ref/psnr_input": ref_psnr, "steps": float(step)}
    if status == "finished":
        final_model = ema or model
        t0 = time.perf_counter()
        psnr32, ssim32 = evaluate(final_model, cell, device)
        summary.update({"final/psnr": psnr32, "final/ssim": ssim32})
        if tr.lowprec_eval:
            for name, dtype in (("fp16", torch.float16), ("bf16", torch.bfloat16)):
                low = copy.deepcopy(final_model).to(dtype)
                summary[f"final/psnr_{name}"] = evaluate(low, cell, device, dtype)[0]
                del low
        timers["eval"] += time.perf_counter() - t0
    if best_psnr > float("-inf"):
        summary["best/psnr"] = best_psnr
    if last_trace:
        summary["final/max_msq"] = Probe.max_msq(last_trace)
        deepest = Probe.deepest(last_trace)
        summary["final/deep_msq"] = last_trace[deepest]["msq"]
        summary["final/deep_entropy"] = last_trace[deepest]["entropy"]
        summary["final/deep_top1"] = last_trace[deepest]["top1"]
        if "beta_corr" in last_trace.get("final", {}):
            summary["final/beta_corr"] = last_trace["final"]["beta_corr"]
    summary.update({f"time/{k}_s": v for k, v in timers.items()})
    summary["time/total_s"] = time.perf_counter() - t_start
    summary["params"] = float(sum(p.numel() for p in model.parameters()))
    ckpt = snapshot(step) if status == "finished" else None
    if ckpt is not None:
        save_samples(ema or model, cell, device, ckpt / "samples.png")
    return CellResult(status, reason, step, summary, history, ckpt)
