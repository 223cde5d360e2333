"""Ray Tune driver: one trial per cell, MLflow logging by one writer on the driver.

    from ablate.spec import load_experiment
    from ablate.tune import run_sweep
    summary = run_sweep(load_experiment("experiments/quickstart.yaml"))

``RayEvalRunner`` runs ``ablate eval``'s jobs (``ablate.evaluate``) as Ray tasks, one per cell.
This is the only subpackage that imports ``ray``.
"""

from __future__ import annotations

from ._base import SweepOptions, SweepSummary
from ._eval import RayEvalRunner
from ._search import run_search
from ._sweep import run_sweep

__all__ = ["RayEvalRunner", "SweepOptions", "SweepSummary", "run_search", "run_sweep"]
