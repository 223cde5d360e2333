"""Scoring trained cells on standard test sets, whole images, under each task's published protocol.

    ablate eval experiments/quickstart.yaml          # every finished cell on the spec's eval: sets

    from ablate.evaluate import EvalOptions, run_eval
    summary = run_eval(load_experiment("experiments/quickstart.yaml"), EvalOptions(state_dir=Path(".ablate")))

The engine (:func:`run_job`, :class:`Restorer`: whole images, overlapping tiles, ×8 self-ensemble,
fp16/bf16) is plain PyTorch; :func:`run_eval` decides what each cell's MLflow run still lacks, finds its
checkpoint and logs ``eval/<set>/psnr``, ``ssim``, ``psnr_fp16``… and the task baseline's
``eval/<set>/psnr_input`` back to the cell's own run. Runners: :class:`LocalRunner` here; the Ray one
is ``ablate.tune.RayEvalRunner`` (one task per cell, GPUs honoured).
"""

from __future__ import annotations

from ._driver import (
    EvalOptions,
    EvalSummary,
    LocalRunner,
    OnJob,
    OnSet,
    Runner,
    checkpoint_dir,
    run_eval,
    set_tag,
)
from ._infer import AUTO_TILES, Restorer, ensemble_forward, is_oom, tile_starts, tiled_forward
from ._job import (
    DTYPES,
    EvalJob,
    JobResult,
    SetResult,
    SetWork,
    build_model,
    evaluate_reference,
    metric_key,
    run_job,
)

__all__ = [
    "AUTO_TILES",
    "DTYPES",
    "EvalJob",
    "EvalOptions",
    "EvalSummary",
    "JobResult",
    "LocalRunner",
    "OnJob",
    "OnSet",
    "Restorer",
    "Runner",
    "SetResult",
    "SetWork",
    "build_model",
    "checkpoint_dir",
    "ensemble_forward",
    "evaluate_reference",
    "is_oom",
    "metric_key",
    "run_eval",
    "run_job",
    "set_tag",
    "tile_starts",
    "tiled_forward",
]
