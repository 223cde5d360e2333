"""The trial engine: one cell trained, probed, validated and checkpointed, in plain PyTorch (no Ray, no MLflow).

    trainer = Trainer(spec, PrintReporter(spec.train.steps), checkpoint_dir=Path("ckpt"))
    result = trainer.run()            # or run_cell(spec, reporter, checkpoint_dir=…, resume_from=…)
"""

from __future__ import annotations

import copy
import math
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from ablate.errors import SpecError
from ablate.probes import Probe
from ablate.regularizers import build_regularizer
from ablate.spec import CellSpec
from ablate.status import CellStatus

from ._cell import Cell, pick_device
from ._checkpoint import load_checkpoint, save_checkpoint
from ._compile import StepModel
from ._evaluate import evaluate, reference_psnr
from ._precision import precision_name, tf32_mode
from ._prefetch import Prefetcher
from ._reporter import NullReporter, Reporter, Trace, flatten_traces
from ._samples import save_samples
from ._state import TrainState


@dataclass
class CellResult:
    """What one cell produced. The engine ends a cell ``finished`` or ``diverged``."""

    status: CellStatus
    reason: str = ""
    step: int = 0
    summary: dict[str, float] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    checkpoint: Path | None = None
    provenance: dict[str, str] = field(default_factory=dict)  # Trainer.provenance(): how it was computed


class Diverged(Exception):
    """Raised inside the loop when the divergence guard fires."""


def _charbonnier(pred: Tensor, gt: Tensor) -> Tensor:
    return torch.sqrt((pred - gt) ** 2 + 1e-6).mean()  # eps 1e-3


# train.loss -> the data loss; the spec accepts exactly these names (tests/train/test_spec_names_match_trainer.py)
LOSSES: dict[str, Any] = {"l1": F.l1_loss, "charbonnier": _charbonnier, "mse": F.mse_loss}


def _loss_fn(name: str) -> Any:
    if name not in LOSSES:  # a CellSpec built in code skips the YAML's validation
        raise SpecError("train.loss", f"one of {', '.join(LOSSES)}", name)
    return LOSSES[name]


# train.amp → the forward pass's autocast dtype (None: float32 throughout). The norms accumulate their
# statistics in float32 either way; fp16 also scales the loss (TrainState.scaler), bf16 has fp32's range.
_AMP_DTYPES: dict[str, torch.dtype | None] = {"none": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def _finite_trace_guard(trace: Trace, ceiling: float) -> str | None:
    for site, stats in trace.items():
        msq = stats.get("msq", 0.0)
        if not math.isfinite(msq):
            return f"non-finite features at {site}"
        if msq > ceiling:
            return f"feature msq {msq:.3g} at {site} above train.max_msq {ceiling:.3g}"
    return None


def _trace_summary(trace: Trace) -> dict[str, float]:
    """The last probe trace's headline numbers: the largest msq, and the deepest block's statistics."""
    if not trace:
        return {}
    deepest = trace[Probe.deepest(trace)]
    out = {"final/max_msq": Probe.max_msq(trace), "final/deep_msq": deepest["msq"],
           "final/deep_entropy": deepest["entropy"], "final/deep_top1": deepest["top1"]}
    if "beta_corr" in trace.get("final", {}):
        out["final/beta_corr"] = trace["final"]["beta_corr"]
    return out


def deterministic_kernels() -> None:
    """``train.deterministic``: every kernel runs its deterministic variant, or the cell stops naming the one
    that has none. Strict mode, not ``warn_only``: with ``warn_only`` torch keeps the fused attention's
    split-key backward (atomic adds) and only warns. cuBLAS needs a fixed workspace to be deterministic,
    read when the CUDA context starts, so it is set before any CUDA work of this process."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False


class Trainer:
    """One cell from its spec to its result; ``run()`` trains from ``state.step`` to ``train.steps``.

    A cell that diverges (non-finite loss or features, or feature msq above ``train.max_msq``) stops
    cleanly with status ``diverged`` and keeps what it measured. Exceptions raised by the reporter
    (e.g. Ray stopping the trial) propagate. With ``checkpoint_dir`` the whole ``TrainState`` is saved
    every ``train.checkpoint_every`` steps and at the end; ``restore`` continues from such a checkpoint,
    and the run then ends exactly where an uninterrupted one would (the data stream is a pure function
    of (seed, step)). ``train.amp`` autocasts the forward pass (fp16 through the state's gradient
    scaler); ``train.tf32`` runs the step's float32 matmuls as TF32 on CUDA (evaluation stays float32);
    ``train.compile`` compiles the training step only (``StepModel``). :meth:`provenance` says how the
    cell computes.
    """

    def __init__(self, spec: CellSpec, reporter: Reporter | None = None, checkpoint_dir: Path | None = None
                 ) -> None:
        tr = spec.train
        self.spec, self.reporter = spec, reporter or NullReporter()
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        self.device = pick_device(tr.device)
        if tr.deterministic:
            deterministic_kernels()
        self.t_start = time.perf_counter()
        self.cell = Cell(spec)
        self.state = TrainState.build(self.cell.model.to(self.device), spec, self.device)
        self.step_model = StepModel(self.state.model, tr.compile)
        self.loss_fn = _loss_fn(tr.loss)
        # attached after TrainState.build, so the EMA copy carries no hooks; None for `none`: no cost at all
        self.regularizer = build_regularizer(tr.regularizer)
        if self.regularizer is not None:
            self.regularizer.attach(self.state.model)
        self.reg_value: Tensor | None = None  # the regularizer's value at the last step, for train/reg
        self._probe = Probe(self.state.model, self.cell.probe_lq) if self.cell.probe_lq is not None else None
        self.log_every = max(5, tr.steps // 500)
        # The loss stays on the device between reports: reading it every step would make a GPU wait
        # for each step to finish. Finiteness is checked at least every 50 steps.
        self.guard_every = min(self.log_every, 50)
        self.timers = {"train": 0.0, "probe": 0.0, "eval": 0.0}
        self.ref_psnr = reference_psnr(self.cell)
        cuda = self.device.type == "cuda"
        # four workers: enough for the tasks the CPU degrades (JPEG, rain: ~40–65 ms of CPU per 16×256² batch)
        # or draws noise for (dn: ~30 ms); a batch the GPU degrades costs the CPU only its crops (~2 ms)
        self.batches = Prefetcher(self.cell.sampler, tr.steps, depth=4 if cuda else 0, device=self.device)
        self.degrade_on = self.batches.degrade_on

    def provenance(self) -> dict[str, str]:
        """How this cell computes, not what (its spec says that): ``precision`` of the training step
        (``fp32``, ``tf32``, ``bf16``, ``fp16``; see ``precision_name``), ``optimizer_impl`` (``fused``,
        ``foreach``, ``single``), ``degrade_on``, where the training batches are degraded (``cuda``
        or ``cpu``), ``attention`` (``fused``: SDPA's memory-efficient kernel, or ``math``: the explicit
        product), ``norm`` (how the cell's normalizer computes: its ``kernel``), ``compile`` (``off``,
        ``on``, or ``fell back``) and ``deterministic`` (``strict`` or ``off``). Recorded on the cell's
        run as ``ablate.impl.<key>`` tags; none of it is in the cell id."""
        from ablate.backbones import attention_kernel

        tr = self.spec.train
        normalizer = self.cell.variant.normalizer
        compiled = "off" if not tr.compile else ("on" if self.step_model.compiled is not None else "fell back")
        return {"precision": precision_name(tr.amp, tr.tf32, self.device),
                "optimizer_impl": self.state.optimizer_impl,
                "degrade_on": self.degrade_on,
                "attention": attention_kernel(self.device),
                "norm": getattr(normalizer, "kernel", "") or normalizer.__name__,
                "compile": compiled,
                "deterministic": "strict" if tr.deterministic else "off"}

    def run(self) -> CellResult:
        """Train to the last step (or divergence), evaluate, save the final checkpoint and samples."""
        status, reason = CellStatus.FINISHED, ""
        self.state.model.train()
        try:
            self._loop()
        except Diverged as err:
            status, reason = CellStatus.DIVERGED, str(err)
        finally:
            self.batches.close()
            if self.regularizer is not None:
                self.regularizer.detach()
        summary = self.summary(self.final_eval() if status is CellStatus.FINISHED else {})
        ckpt = self.save() if status is CellStatus.FINISHED else None
        if ckpt is not None:
            save_samples(self.state.eval_model, self.cell, self.device, ckpt / "samples.png")
        return CellResult(status, reason, self.state.step, summary, self.state.history, ckpt,
                          self.provenance())

    def _loop(self) -> None:
        if self._probe is not None and self.state.step == 0:  # the untrained state: the trace's step 0
            self._report(0, {"ref/psnr_input": self.ref_psnr}, self._measure())
        for step in range(self.state.step + 1, self.spec.train.steps + 1):
            grad_norm = self.step(step)
            traces = self.probe(step)
            self.end_step(step, self.evaluate(step), traces, grad_norm)

    def step(self, step: int) -> Tensor | None:
        """One optimisation step on the batch of ``step``; the gradient norm when ``train.grad_clip`` is set."""
        s, tr = self.state, self.spec.train
        t0 = time.perf_counter()
        s.step = step
        lq, gt = self.batches.get(step)
        lq, gt = lq.to(self.device, non_blocking=True), gt.to(self.device, non_blocking=True)
        s.optimizer.zero_grad(set_to_none=True)
        loss = self.step_model.run(lambda model: self._forward_backward(model, lq, gt))
        grad_norm = self._apply_gradients()
        s.update_ema(tr.ema)
        s.loss_sum += loss.detach()
        s.loss_n += 1
        if step % self.guard_every == 0 and not torch.isfinite(s.loss_sum):
            raise Diverged(f"non-finite loss by step {step}")
        self.timers["train"] += time.perf_counter() - t0
        return grad_norm

    def _forward_backward(self, model: torch.nn.Module, lq: Tensor, gt: Tensor) -> Tensor:
        """The loss of ``model`` on one batch (forward under ``train.amp``'s autocast), backpropagated."""
        dtype = _AMP_DTYPES[self.spec.train.amp]
        with tf32_mode(self.spec.train.tf32):  # the backward too: its matmuls read the flags as they run
            with torch.autocast(self.device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                loss = self.loss_fn(model(lq).float(), gt)
            self.state.scaler.scale(self._objective(loss)).backward()  # without fp16, the objective itself
        return loss

    def _apply_gradients(self) -> Tensor | None:
        """Clip (with ``train.grad_clip``: its norm is returned), step the optimizer and the schedule."""
        s, clip = self.state, self.spec.train.grad_clip
        grad_norm = None
        if clip is not None:
            s.scaler.unscale_(s.optimizer)  # clip the true gradients, not fp16's scaled ones
            grad_norm = torch.nn.utils.clip_grad_norm_(s.model.parameters(), clip)
        s.scaler.step(s.optimizer)  # fp16: skipped when a gradient overflowed, and the scale backs off
        s.scaler.update()
        if not s.scaler.is_enabled():
            s.scheduler.step()
            return grad_norm
        with warnings.catch_warnings():
            # a step the scaler skipped looks to torch like a schedule stepped before its optimizer;
            # the schedule follows the step count either way
            warnings.filterwarnings("ignore", r"Detected call of `lr_scheduler\.step\(\)`", UserWarning)
            s.scheduler.step()
        return grad_norm

    def _objective(self, loss: Tensor) -> Tensor:
        """What ``step`` differentiates: the data loss plus the regularizer's weighted term. The data loss
        alone is what ``train/loss`` reports, so cells that differ in the regularizer compare on it."""
        if self.regularizer is None:
            return loss
        reg = self.regularizer.value()
        self.reg_value = reg.detach()
        return loss + self.regularizer.weight * reg if self.regularizer.weight else loss

    def probe(self, step: int) -> Trace | None:
        """The probe trace when one is due at ``step``; a non-finite or exploding one stops the cell."""
        if self._probe is None or step % self.spec.probes.every:
            return None
        traces = self._measure()
        bad = _finite_trace_guard(traces, self.spec.train.max_msq)
        if bad:
            self._report(step, {"train/loss": self.state.mean_loss()}, traces)
            raise Diverged(f"{bad} at step {step}")
        return traces

    def _measure(self) -> Trace:
        assert self._probe is not None
        t0 = time.perf_counter()
        self.state.last_trace = self._probe.measure()
        self.timers["probe"] += time.perf_counter() - t0
        return self.state.last_trace

    def evaluate(self, step: int) -> dict[str, float]:
        """Validation PSNR/SSIM when due at ``step`` (every ``train.eval_every`` steps and the last), else {}."""
        tr = self.spec.train
        if step % tr.eval_every and step != tr.steps:
            return {}
        t0 = time.perf_counter()
        with tf32_mode(False):  # validation in float32 whatever the training step's precision
            val_psnr, val_ssim = evaluate(self.state.eval_model, self.cell, self.device)
        self.timers["eval"] += time.perf_counter() - t0
        self.state.best_psnr = max(self.state.best_psnr, val_psnr)
        return {"val/psnr": val_psnr, "val/ssim": val_ssim}

    def end_step(self, step: int, metrics: dict[str, float], traces: Trace | None, grad_norm: Tensor | None
                 ) -> None:
        """What is due after ``step``: its report (with the loss since the last one) when anything is to
        report, and a checkpoint every ``train.checkpoint_every`` steps (saved with the report).

        The last step's checkpoint is left to ``run()``, which saves it after the final evaluation.
        """
        s, tr = self.state, self.spec.train
        ckpt_due = bool(tr.checkpoint_every) and step % tr.checkpoint_every == 0 and step < tr.steps
        if not (metrics or traces is not None or step % self.log_every == 0):
            if ckpt_due:
                self.reporter.report(step, {}, None, self.save())
            return
        if not torch.isfinite(s.loss_sum):
            raise Diverged(f"non-finite loss by step {step}")
        metrics["train/loss"] = s.mean_loss()
        if grad_norm is not None:
            metrics["train/grad_norm"] = float(grad_norm)
        if self.reg_value is not None:
            metrics["train/reg"] = float(self.reg_value)
        metrics["train/lr"] = float(s.scheduler.get_last_lr()[0])
        s.loss_sum.zero_()
        s.loss_n = 0
        self._report(step, metrics, traces, checkpoint=ckpt_due)

    def _report(self, step: int, metrics: dict[str, float], traces: Trace | None, checkpoint: bool = False
                ) -> None:
        """Report one point, first adding it to ``state.history``: a checkpoint then holds every point
        reported up to its step, which a resumed run can report again (see ``TrainState``)."""
        self.state.history.append({"step": step, **metrics, **flatten_traces(traces)})
        self.reporter.report(step, metrics, traces, self.save() if checkpoint else None)

    def final_eval(self) -> dict[str, float]:
        """Final PSNR/SSIM in float32 and, with ``train.lowprec_eval``, PSNR of fp16 and bf16 copies."""
        model = self.state.eval_model
        t0 = time.perf_counter()
        with tf32_mode(False):
            psnr32, ssim32 = evaluate(model, self.cell, self.device)
        out = {"final/psnr": psnr32, "final/ssim": ssim32}
        if self.spec.train.lowprec_eval:
            for name, dtype in (("fp16", torch.float16), ("bf16", torch.bfloat16)):
                low = copy.deepcopy(model).to(dtype)
                out[f"final/psnr_{name}"] = evaluate(low, self.cell, self.device, dtype)[0]
                del low
        self.timers["eval"] += time.perf_counter() - t0
        return out

    def summary(self, final: dict[str, float]) -> dict[str, float]:
        """The cell's summary metrics, with ``final`` (from ``final_eval``, or {} for a diverged cell)."""
        s = self.state
        out = {"ref/psnr_input": self.ref_psnr, "steps": float(s.step), **final}
        if s.best_psnr > float("-inf"):
            out["best/psnr"] = s.best_psnr
        out.update(_trace_summary(s.last_trace))
        out.update({f"time/{k}_s": v for k, v in self.timers.items()})
        out["time/total_s"] = time.perf_counter() - self.t_start
        out["params"] = float(sum(p.numel() for p in s.model.parameters()))
        return out

    def save(self) -> Path | None:
        """Checkpoint the whole state into ``checkpoint_dir``; its path, or None without one."""
        if self.checkpoint_dir is None:
            return None
        return save_checkpoint(self.checkpoint_dir, self.state.state_dict())

    def restore(self, path: Path) -> None:
        """Continue from the checkpoint in ``path`` (a directory or the file itself)."""
        self.state.load_state_dict(load_checkpoint(path))


def run_cell(spec: CellSpec, reporter: Reporter | None = None, *, checkpoint_dir: Path | None = None,
             resume_from: Path | None = None) -> CellResult:
    """Train and evaluate one cell; report as it goes; return its result.

    ``resume_from`` continues from a checkpoint written into ``checkpoint_dir`` by an earlier run of the
    same cell (see ``Trainer``).
    """
    trainer = Trainer(spec, reporter, checkpoint_dir=checkpoint_dir)
    if resume_from is not None:
        trainer.restore(resume_from)
    return trainer.run()
