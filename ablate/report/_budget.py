"""The budget table of a search: what each variant's study actually spent, with imbalances flagged.

    from ablate.tune import read_budgets, storage_url
    print(budget_text(read_budgets(storage_url(uri, state_dir), "search-lr")))

A fair comparison of tuned variants needs equal budgets: the same number of trials with a result
(finished, pruned or diverged) per variant. The budgets come from the studies' Optuna storage, where the
search records every trial's end, steps and time (read by ``ablate.tune.read_budgets``: any object with
the fields of ``ablate.tune.VariantBudget`` will do here).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def budget_rows(budgets: Sequence[Any]) -> list[dict[str, str]]:
    return [{"variant": b.variant, "finished": str(b.finished), "pruned": str(b.pruned), "diverged": str(b.diverged),
             "failed": str(b.failed), "running": str(b.running), "train steps": f"{b.steps:,}",
             "trial time": f"{b.wall_s / 60:.1f} min"} for b in budgets]


def imbalances(budgets: Sequence[Any]) -> list[str]:
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


def budget_text(budgets: Sequence[Any]) -> str:
    """The Markdown budget table of a search's variants, its imbalance notes below ("" when there are none)."""
    if not budgets:
        return ""
    notes = imbalances(budgets) or ["every variant got the same budget of trials"]
    return "\n## Search budget per variant\n\n" + _markdown(budget_rows(budgets)) + \
        "".join(f"\n{n}" for n in notes) + "\n"


def _markdown(rows: list[dict[str, str]]) -> str:
    """A Markdown pipe table of string cells, the columns of the first row."""
    cols = list(rows[0])
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(r[c] for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"
