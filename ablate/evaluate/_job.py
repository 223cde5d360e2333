"""One cell's evaluation: its final weights on whole test images, per set and precision (no MLflow, no Ray).

    from ablate.evaluate import EvalJob, SetWork, run_job
    job = EvalJob(key=cell.id, label="i_ln·s0", cell=cell.to_config(), checkpoint="…/state.pt",
                  sets=(SetWork("Set5", {"name": "folder", "path": "/data/Set5/HR"}, ("fp32", "fp16")),))
    result = run_job(job)            # JobResult: per set, metrics eval/Set5/psnr, eval/Set5/psnr_fp16, …
    ref = evaluate_reference("sr-x4", "Set5", {"name": "folder", "path": "/data/Set5/HR"})

The protocol is the task's (``ablate.tasks``): each GT image is mod-cropped to the scale and degraded
with the trainer's fixed validation seed (``ablate.train.VAL_SEED``), the restoration is scored on
the 8-bit images with the task's channel (Y for SR) and border crop (``ablate.metrics``), and a set's
number is the mean over its images — how published tables are computed. Jobs and results are plain
data, so a Ray worker can run a job the driver built.
"""

from __future__ import annotations

import copy
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ablate.errors import AblateError
from ablate.spec import CellSpec

from ._infer import Restorer

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def metric_key(set_name: str, metric: str, precision: str = "fp32") -> str:
    """``eval/<set>/<metric>``, suffixed ``_<precision>`` unless float32, ``_input`` for the reference."""
    suffix = "" if precision == "fp32" else f"_{precision}"
    return f"eval/{set_name}/{metric}{suffix}"


@dataclass(frozen=True)
class SetWork:
    """One test set of a job: its name (in metric keys), its dataset config and the precisions to run."""

    name: str
    data: Any  # a dataset component config (str or mapping)
    precisions: tuple[str, ...]


@dataclass(frozen=True)
class EvalJob:
    """Everything a worker needs to evaluate one cell; ``expect_step``: the step the checkpoint must be
    at (a finished cell's last step; None to take any)."""

    key: str  # the cell id
    label: str  # for progress lines
    cell: dict[str, Any]  # the cell config (CellSpec.to_config())
    checkpoint: str
    sets: tuple[SetWork, ...]
    self_ensemble: bool = False
    tile: int | None = None
    overlap: int = 32
    device: str = "auto"
    expect_step: int | None = None


@dataclass
class SetResult:
    name: str
    metrics: dict[str, float] = field(default_factory=dict)
    images: int = 0
    tiled: int = 0  # images evaluated in tiles (at any precision)
    seconds: float = 0.0
    error: str = ""


@dataclass
class JobResult:
    key: str
    sets: list[SetResult] = field(default_factory=list)
    step: int | None = None  # the checkpoint's step
    weights: str = ""  # "ema" or "model"
    device: str = ""
    error: str = ""  # the job failed before any set (unreadable checkpoint, wrong cell…)


def build_model(cell: CellSpec, state: Mapping[str, Any]) -> tuple[nn.Module, str]:
    """The cell's model with the checkpoint's final weights — its EMA when it trained with one — in
    eval mode; and which weights they are (``"ema"`` or ``"model"``)."""
    from ablate.backbones import build_backbone
    from ablate.tasks import resolve_task

    saved = state.get("cell")
    if isinstance(saved, Mapping):
        try:
            saved_id = CellSpec.from_config(saved).id
        except AblateError:
            saved_id = "?"
        if saved_id != cell.id:
            raise AblateError(f"the checkpoint belongs to cell {saved_id}, not {cell.id}")
    model = build_backbone(cell.backbone, cell.norm_variant(),
                           resolve_task(cell.task).scale)
    weights = "ema" if state.get("ema") is not None else "model"
    try:
        model.load_state_dict(state[weights])
    except (RuntimeError, KeyError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise AblateError(f"the checkpoint's {weights} weights do not fit cell {cell.id}'s model ({first})") from None
    return model.eval().requires_grad_(False), weights


def _evaluate_set(model: nn.Module, task: Any, work: SetWork, job: EvalJob, device: torch.device) -> SetResult:
    """Every precision of ``work`` on every image of the set, one image in memory at a time."""
    from ablate.data import eval_pairs, resolve_test_set
    from ablate.metrics import psnr, ssim
    from ablate.train import VAL_SEED

    t0 = time.perf_counter()
    res = SetResult(work.name)
    ds = resolve_test_set(work.data, where=f"eval.sets.{work.name}")
    restorers = {}
    for p in work.precisions:
        net = model if p == "fp32" else copy.deepcopy(model).to(DTYPES[p])
        restorers[p] = Restorer(net, task.scale, device, DTYPES[p], tile=job.tile, overlap=job.overlap,
                                self_ensemble=job.self_ensemble)
    scores: dict[str, tuple[list[float], list[float]]] = {p: ([], []) for p in work.precisions}
    cb, y = task.crop_border, task.y_channel
    for _, lq, gt in eval_pairs(ds, task, VAL_SEED):
        tiled = False
        for p, restore in restorers.items():
            before = restore.tiled_images
            out = restore(lq)
            tiled |= restore.tiled_images > before
            scores[p][0].append(psnr(out, gt, crop_border=cb, y_channel=y))
            scores[p][1].append(ssim(out, gt, crop_border=cb, y_channel=y))
        res.images += 1
        res.tiled += tiled
    for p, (ps, ss) in scores.items():
        res.metrics[metric_key(work.name, "psnr", p)] = float(np.mean(ps))
        res.metrics[metric_key(work.name, "ssim", p)] = float(np.mean(ss))
    res.seconds = time.perf_counter() - t0
    return res


def run_job(job: EvalJob, on_set: Callable[[SetResult], None] | None = None) -> JobResult:
    """Evaluate one cell on every set of ``job`` (``on_set`` is called as each set completes).

    Never raises for a problem of the cell or its data: an unreadable checkpoint or a bad image is
    the result's (or the set's) ``error``, one line, so the other cells and sets go on.
    """
    from ablate.tasks import resolve_task
    from ablate.train import load_checkpoint, pick_device

    out = JobResult(job.key)
    try:
        cell = CellSpec.from_config(job.cell)
        device = pick_device(job.device)
        out.device = str(device)
        state = load_checkpoint(Path(job.checkpoint))
        out.step = int(state.get("step", 0))
        if job.expect_step is not None and out.step != job.expect_step:
            raise AblateError(f"checkpoint {job.checkpoint} is at step {out.step} but the cell's run ended at "
                              f"step {job.expect_step} (left by a later, unfinished rerun?); delete it to "
                              f"evaluate the run's checkpoint artifact")
        model, out.weights = build_model(cell, state)
        del state
        model.to(device)
        task = resolve_task(cell.task)
    except AblateError as err:
        out.error = str(err)
        return out
    except Exception as err:
        out.error = _one_line(err)
        return out
    for work in job.sets:
        try:
            res = _evaluate_set(model, task, work, job, device)
        except AblateError as err:
            res = SetResult(work.name, error=str(err))
        except Exception as err:
            res = SetResult(work.name, error=_one_line(err))
        out.sets.append(res)
        if on_set is not None:
            on_set(res)
    return out


def evaluate_reference(task: Any, set_name: str, data: Any) -> SetResult:
    """The task's baseline (bicubic upscaling for SR, the degraded input itself otherwise) on a set:
    ``eval/<set>/psnr_input`` and ``ssim_input``. Raises AblateError for a bad set or image."""
    from ablate.data import eval_pairs, resolve_test_set
    from ablate.metrics import psnr, ssim
    from ablate.tasks import resolve_task
    from ablate.train import VAL_SEED

    t0 = time.perf_counter()
    t = resolve_task(task)
    ds = resolve_test_set(data, where=f"eval.sets.{set_name}")
    res = SetResult(set_name)
    ps, ss = [], []
    for _, lq, gt in eval_pairs(ds, t, VAL_SEED):
        out = t.baseline(lq).clamp(0, 1)
        ps.append(psnr(out, gt, crop_border=t.crop_border, y_channel=t.y_channel))
        ss.append(ssim(out, gt, crop_border=t.crop_border, y_channel=t.y_channel))
        res.images += 1
    res.metrics = {metric_key(set_name, "psnr", "input"): float(np.mean(ps)),
                   metric_key(set_name, "ssim", "input"): float(np.mean(ss))}
    res.seconds = time.perf_counter() - t0
    return res


def _one_line(err: BaseException) -> str:
    """``Type: message (file:line)`` of an unexpected exception, for a progress line and a report."""
    tb = traceback.extract_tb(err.__traceback__)
    where = f" ({Path(tb[-1].filename).name}:{tb[-1].lineno})" if tb else ""
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text}{where}"[:500]
