"""Ray Tune driver: one trial per cell, MLflow logging by one writer on the driver.

    from ablate.spec import load_experiment
    from ablate.tune import run_sweep
    summary = run_sweep(load_experiment("experiments/quickstart.yaml"))

``RayEvalRunner`` runs ``ablate eval``'s jobs (``ablate.evaluate``) as Ray tasks, one per cell.
This is the only subpackage that imports ``ray``.
"""

from __future__ import annotations

from ._eval import RayEvalRunner
from ._search import SearchSummary, run_search, search_preview
from ._setup import SweepOptions, SweepSummary
from ._studies import VariantBudget, read_budgets, storage_url
from ._sweep import run_sweep

__all__ = ["RayEvalRunner", "SearchSummary", "SweepOptions", "SweepSummary", "VariantBudget", "read_budgets",
           "run_search", "run_sweep", "search_preview", "storage_url"]
