"""Synthetic-but-realistic sweeps, logged through the real :class:`~ablate.track.Tracker` (tests,
benchmarks, demos). Not part of a sweep: import it explicitly (it needs mlflow, ``ablate.testing`` does not).

    from ablate.track import Tracker
    from ablate.testing.synthetic import synthetic_cells, log_synthetic
    cells = synthetic_cells(variants=("token_ln", "i_ln"), seeds=(0, 1), steps=20,
                            extra=[("token_ln", 2, "diverged")])
    runs = log_synthetic(Tracker(None, "/tmp/demo"), "demo", cells)

The traces have the shapes the normalization study expects: under token LN the mean square of deep
blocks grows with training and channel entropy falls; Global LN with rescale (i-LN) stays flat; a
diverged cell's deepest msq explodes and it stops early; a failed cell stops without summary metrics.
Cells are real :class:`ablate.spec.CellSpec` objects, so ids, pairing keys and params are what a sweep
logs, and run names are :func:`ablate.track.cell_run_name`'s. Provenance tags are fixed strings, so
logging a synthetic sweep never imports the components (nor torch).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ablate.spec import CellSpec, Component, OptimizerSpec, ProbeSpec, TrainSpec
from ablate.status import CellStatus
from ablate.track import Tag, Tracker, cell_run_name, default_tracking_uri, seed_sqlite_store

Trace = tuple[np.ndarray, np.ndarray]  # (steps, values)

DEFAULT_SITES = tuple(f"g{g}.b{b}" for g in range(2) for b in range(4)) + ("final",)
DEFAULT_STATS = ("msq", "maxabs", "entropy", "top1")
CHANNELS = 48  # embed dim: the entropy ceiling is ln 48 = 3.87 nats

# per variant: (final PSNR dB, deep-msq growth over training, entropy loss in deep blocks, fp16 drop dB)
_PROFILE = {
    "token_ln": (33.20, 4.0, 1.6, 7.5),
    "rms_norm": (33.15, 4.4, 1.7, 8.5),
    "batch_norm": (33.45, 0.3, 0.25, 0.05),
    "global_ln": (33.50, 1.0, 0.5, 0.4),
    "global_ln+rescale": (33.80, -0.6, -0.05, 0.02),
    "i_ln": (33.85, -0.7, -0.05, 0.02),
}


@dataclass
class SyntheticCell:
    spec: CellSpec
    label: str  # the variant label (tag ablate.norm)
    status: str
    reason: str
    traces: dict[str, Trace]  # key -> (steps, values)
    summary: dict[str, float] = field(default_factory=dict)

    @property
    def id(self) -> str:
        return self.spec.id

    def steps(self) -> np.ndarray:
        return np.unique(np.concatenate([s for s, _ in self.traces.values()])) if self.traces else np.array([])


def _norm_of(label: str) -> tuple[str, bool | None]:
    if label.endswith("+rescale"):
        return label[: -len("+rescale")], True
    return label, None if label == "i_ln" else False


def _profile(label: str) -> tuple[float, float, float, float]:
    if label in _PROFILE:
        return _PROFILE[label]
    h = int(hashlib.sha1(label.encode()).hexdigest()[:6], 16)  # an unknown variant: stable made-up numbers
    return (33.0 + (h % 100) / 100, (h % 7) / 2 - 0.5, (h % 5) / 4, (h % 9) / 3)


def _rng(*parts: Any) -> np.random.Generator:
    return np.random.default_rng(int(hashlib.sha1(repr(parts).encode()).hexdigest()[:12], 16))


def _spec(label: str, seed: int, backbone: str, task: str, steps: int, probe_every: int,
          eval_every: int | None, lr: float) -> CellSpec:
    norm, rescale = _norm_of(label)
    return CellSpec(norm=Component(norm), rescale=rescale, backbone=Component(backbone), task=Component(task),
                    seed=seed, train=TrainSpec(steps=steps * max(1, probe_every),
                                               eval_every=max(1, eval_every or probe_every),
                                               optimizer=OptimizerSpec(lr=lr)),
                    probes=ProbeSpec(every=max(1, probe_every)))


def _site_stats(site: str, depth: float, frac: np.ndarray, growth: float, ent_loss: float, diverged: bool,
                rng: np.random.Generator) -> dict[str, np.ndarray]:
    """msq, maxabs, entropy and top1 of one probe site over the probe steps (``frac``: share of training)."""
    noise = rng.normal(0.0, 0.03, size=len(frac))
    if site == "final":  # the final norm's output: normalized, O(1) whatever happens upstream
        msq = 1.0 + 0.05 * np.sin(frac * 3) + noise * 0.2
    else:
        base = 0.8 + 2.5 * depth
        rate = growth * depth ** 2
        msq = base * np.exp(rate * frac * (3.0 if diverged else 1.0) + noise)
    msq = np.maximum(msq, 1e-3)
    ent0 = math.log(CHANNELS) - 0.25 - 0.3 * depth
    entropy = np.clip(ent0 - ent_loss * depth ** 2 * frac + noise, 0.05, math.log(CHANNELS))
    top1 = np.clip(np.exp(-entropy) * 1.8 + 0.01, 1 / CHANNELS, 1.0)
    maxabs = np.sqrt(msq) * (4 + 6 * (1 - entropy / math.log(CHANNELS)))
    return {"msq": msq, "maxabs": maxabs, "entropy": entropy, "top1": top1}


def _outcome(status: str, psnr_curve: np.ndarray, ssim_curve: np.ndarray, last_msq: dict[str, float],
             deepest: str, fp16_drop: float, rng: np.random.Generator) -> tuple[dict[str, float], str]:
    """The summary metrics and the reason a cell with ``status`` ends with."""
    if status == CellStatus.FINISHED:
        final = float(psnr_curve[-1])
        return {"final/psnr": final, "best/psnr": float(psnr_curve.max()), "final/ssim": float(ssim_curve[-1]),
                "final/max_msq": max(last_msq.values()),
                "final/psnr_fp16": final - max(0.0, fp16_drop * (1 + rng.normal(0, 0.1))),
                "final/psnr_bf16": final - abs(0.05 + 0.02 * rng.normal()),
                "ref/psnr_input": 30.0}, ""
    if status == CellStatus.DIVERGED:
        reason = f"probe msq at {deepest} exceeded train.max_msq ({last_msq.get(deepest, math.inf):.3g} > 1e+12)"
        return {"final/max_msq": max(last_msq.values()), "ref/psnr_input": 30.0}, reason
    if status == CellStatus.FAILED:
        return {}, "RuntimeError: synthetic failure (out of memory in the attention block)"
    return {}, f"synthetic {status} cell"


def make_cell(label: str, seed: int, *, backbone: str = "swinir-tiny", task: str = "sr-x2", steps: int = 20,
              probe_every: int = 1, eval_every: int | None = None, status: str = "finished",
              sites: Sequence[str] = DEFAULT_SITES, stats: Sequence[str] = DEFAULT_STATS,
              lr: float = 2e-4) -> SyntheticCell:
    """One synthetic cell: probe traces every ``probe_every`` steps up to ``steps`` (fewer when it
    diverged or failed), validation every ``eval_every`` steps, summary metrics when it finished."""
    spec = _spec(label, seed, backbone, task, steps, probe_every, eval_every, lr)
    psnr_final, growth, ent_loss, fp16_drop = _profile(label)
    rng = _rng(label, seed, backbone, task, lr)
    diverged = status == CellStatus.DIVERGED
    n = steps
    if diverged:
        n = max(3, int(steps * 0.6))
        growth = max(growth, 4.0) * 4  # the explosion: deep msq reaches ~1e13 before the guard stops it
    elif status in (CellStatus.FAILED, CellStatus.KILLED, CellStatus.PRUNED):
        n = max(2, int(steps * 0.3))
    probe_steps = (np.arange(1, n + 1) * max(1, probe_every)).astype(np.int64)
    frac = probe_steps / float(steps * max(1, probe_every))
    blocks = [s for s in sites if s != "final"]
    traces: dict[str, Trace] = {}
    last_msq: dict[str, float] = {}
    for site in sites:
        depth = (blocks.index(site) + 1) / len(blocks) if site in blocks else 1.0
        values = _site_stats(site, depth, frac, growth, ent_loss, diverged, rng)
        traces.update({f"feat/{site}/{stat}": (probe_steps, values[stat].astype(np.float64)) for stat in stats})
        last_msq[site] = float(values["msq"][-1])
    loss = 0.06 * np.exp(-2.5 * frac) + 0.02 + rng.normal(0, 0.001, size=n)
    if diverged:
        loss[-1] = math.nan
    traces["train/loss"] = (probe_steps, loss)
    ev = max(1, (eval_every or probe_every) // max(1, probe_every))  # probe steps between evaluations
    eval_idx = np.arange(ev - 1, n, ev)
    psnr_curve = 30.0 + (psnr_final + rng.normal(0.0, 0.12) - 30.0) * (1 - np.exp(-4 * frac[eval_idx]))
    if diverged:
        psnr_curve[-max(1, len(psnr_curve) // 4):] -= np.linspace(0.5, 6.0, max(1, len(psnr_curve) // 4))
    traces["val/psnr"] = (probe_steps[eval_idx], psnr_curve)
    traces["val/ssim"] = (probe_steps[eval_idx], 0.80 + 0.12 * (1 - np.exp(-4 * frac[eval_idx])))
    summary, reason = _outcome(status, psnr_curve, traces["val/ssim"][1], last_msq,
                               blocks[-1] if blocks else "final", fp16_drop, rng)
    return SyntheticCell(spec, label, status, reason, traces, summary)


def synthetic_cells(variants: Sequence[str] = ("token_ln", "i_ln", "batch_norm"), seeds: Sequence[int] = (0, 1),
                    *, backbones: Sequence[str] = ("swinir-tiny",), tasks: Sequence[str] = ("sr-x2",),
                    steps: int = 20, probe_every: int = 1, eval_every: int | None = None,
                    extra: Iterable[tuple[str, int, str]] = (), outcomes: Mapping[tuple[str, int], str] | None = None,
                    sites: Sequence[str] = DEFAULT_SITES, stats: Sequence[str] = DEFAULT_STATS) -> list[SyntheticCell]:
    """The grid backbones × tasks × variants × seeds (status from ``outcomes``, default finished),
    plus ``extra`` cells ``(variant, seed, status)`` for every backbone and task."""
    outcomes = dict(outcomes or {})
    def cell(label: str, seed: int, backbone: str, task: str, status: str) -> SyntheticCell:
        return make_cell(label, seed, backbone=backbone, task=task, status=status, steps=steps,
                         probe_every=probe_every, eval_every=eval_every, sites=sites, stats=stats)

    cells = []
    for backbone in backbones:
        for task in tasks:
            for label in variants:
                for seed in seeds:
                    cells.append(cell(label, seed, backbone, task, outcomes.get((label, seed), "finished")))
            for label, seed, status in extra:
                cells.append(cell(label, seed, backbone, task, status))
    return cells


def experiment_cells(cells: Sequence[CellSpec], outcomes: Mapping[str, str] | None = None) -> list[SyntheticCell]:
    """Synthetic runs of a real experiment's cells (``expand(load_experiment(FILE))``), under their own
    ids, so ``ablate status FILE`` and the dashboards find them. Traces follow each cell's own
    ``probes.every``, ``train.eval_every`` and ``train.steps``; ``outcomes``: cell id -> status."""
    out = []
    for spec in cells:
        label = spec.norm_label()  # from the declarations: no torch
        every = max(1, spec.probes.every)
        cell = make_cell(label, spec.seed, backbone=spec.backbone.label(), task=spec.task.label(),
                         steps=max(2, spec.train.steps // every), probe_every=every, eval_every=spec.train.eval_every,
                         status=(outcomes or {}).get(spec.id, CellStatus.FINISHED), lr=spec.train.optimizer.lr)
        out.append(dataclasses.replace(cell, spec=spec))
    return out


def cell_tags(cell: SyntheticCell) -> dict[str, str]:
    return {Tag.NORM: cell.label, Tag.PAIRING: cell.spec.pairing_key,
            f"{Tag.SOURCE}norm": "ablate 0.1.0", f"{Tag.SOURCE}backbone": "ablate 0.1.0", Tag.SYNTHETIC: "1"}


def run_name(cell: SyntheticCell) -> str:
    return cell_run_name(cell.spec, cell.label)


def log_synthetic(tracker: Any, name: str, cells: Sequence[SyntheticCell], *, traces: bool = True) -> dict[str, str]:
    """Log ``cells`` as one sweep of experiment ``name`` through ``tracker``; ``{cell_id: run_id}``.

    ``traces=False`` logs runs, params, tags and summaries only (a benchmark bulk-loads the traces).
    """
    plan = [{"cell": c.id, "norm": c.label, "backbone": c.spec.backbone.label(), "task": c.spec.task.label(),
             "seed": c.spec.seed} for c in cells]
    parent = tracker.start_sweep(name, "synthetic", f"name: {name}\n# synthetic sweep\n", plan,
                                 tags={Tag.SYNTHETIC: "1"})
    runs: dict[str, str] = {}
    for cell in cells:
        rid = tracker.start_cell(parent, cell.id, run_name(cell), cell.spec.flat_params(), cell_tags(cell))
        runs[cell.id] = rid
        if traces:
            by_step: dict[int, dict[str, float]] = {}
            for key, (steps, values) in cell.traces.items():
                for s, v in zip(steps.tolist(), values.tolist()):
                    by_step.setdefault(s, {})[key] = v
            for s in sorted(by_step):
                tracker.log(rid, by_step[s], s)
        tracker.end_cell(rid, cell.status, cell.reason, cell.summary)
    tracker.end_sweep(parent, CellStatus.FINISHED)
    return runs


def prepared_store(state_dir: str | Path, cache_dir: str | Path) -> str:
    """Give ``state_dir`` an empty MLflow SQLite store and return its tracking URI, fast.

    What every new SQLite store gets (:func:`ablate.track.seed_sqlite_store`), with the cache of the
    empty database in ``cache_dir`` (tests keep it in pytest's cache) and an existing store replaced.
    """
    state = Path(state_dir).resolve()
    db = state / "mlflow.db"
    db.unlink(missing_ok=True)
    if not seed_sqlite_store(db, Path(cache_dir)):
        Tracker(None, state).experiment_id("Default", create=False)  # MLflow creates the tables
    return default_tracking_uri(state)
