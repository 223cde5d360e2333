"""The budget table of a search: what each variant's study actually spent, with imbalances flagged.

    print(budget_text("search-lr", "sqlite:///.ablate/mlflow.db", Path(".ablate")))

A fair comparison of tuned variants needs equal budgets: the same number of trials with a result
(finished, pruned or diverged) per variant. Trial counts come from the studies' Optuna storage (see
:func:`ablate.tune.storage_url`), where the search records every trial's end, steps and time.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ablate.tune import VariantBudget


def budget_rows(budgets: list[VariantBudget]) -> list[dict[str, str]]:
    return [{"variant": b.variant, "finished": str(b.finished), "pruned": str(b.pruned), "diverged": str(b.diverged),
             "failed": str(b.failed), "running": str(b.running), "train steps": f"{b.steps:,}",
             "trial time": f"{b.wall_s / 60:.1f} min"} for b in budgets]


def imbalances(budgets: list[VariantBudget]) -> list[str]:
    """One line per way the variants' budgets differ (empty: they are equal)."""
    results = {b.variant: b.finished + b.pruned + b.diverged for b in budgets}
    notes = []
    if len(set(results.values())) > 1:
        most = max(results.values())
        short = [f"{v} ({n})" for v, n in results.items() if n < most]
        notes.append(f"imbalance: {', '.join(short)} ended with fewer trials with a result than the most ({most}); "
                     "rerun the search to complete them")
    unfinished = [b.variant for b in budgets if b.running]
    if unfinished:
        notes.append(f"unfinished: {', '.join(unfinished)} still have trials the search left running")
    return notes


def budget_text(experiment: str, tracking_uri: str, state_dir: Path) -> str:
    """The Markdown budget table of ``experiment``'s latest search, its imbalance notes below ("" when
    the experiment has no search)."""
    from ablate.tune import read_budgets, storage_url

    budgets = read_budgets(storage_url(tracking_uri, state_dir), experiment)
    if not budgets:
        return ""
    notes = imbalances(budgets) or ["every variant got the same budget of trials"]
    return "\n## Search budget per variant\n\n" + _markdown(budget_rows(budgets)) + \
        "".join(f"\n{n}" for n in notes) + "\n"


def _markdown(rows: list[dict[str, str]]) -> str:
    """A pipe table (self-contained: the report package's table helpers are being reworked)."""
    cols = list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(r[c] for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"
