"""Run descriptions: the Markdown MLflow's UI renders from the run tag ``mlflow.note.content``.

    from ablate.track._notes import cell_note, plan_note, results_note, results_rows
    plan_note("quick", plan_rows)                     # the sweep run when it starts: what it will run
    results_note("quick", results_rows(plan_rows, runs, parent), "finished")   # … and when it ends
    cell_note({"cell": "c0ffee1234", "norm": "token_ln", "seed": 0}, "diverged", "msq > 1e12", summary)

MLflow keeps at most 8,000 characters of a run tag, so a table stops at ``MAX_ROWS`` rows or
``NOTE_BUDGET`` characters, whichever comes first, and says how many rows it left out; the status
counts above it always cover every cell. Plain functions of plain data: the Tracker calls them.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from ._names import Tag

NOTE_BUDGET = 7500  # characters, under MLflow's 8,000 per tag value with room for the closing line
MAX_ROWS = 50
NOT_RUN = "not run"
_COMPONENTS = ("norm", "backbone", "task", "data")
_MARKDOWN = re.compile(r"([\\`*_\[\]])")
# summary metric -> (column, format) of the results table, in column order
_RESULT_METRICS = {"final/psnr": ("final PSNR (dB)", "{:.2f}"), "final/ssim": ("final SSIM", "{:.4f}"),
                   "final/max_msq": ("final max msq", "{:.3g}"), "final/deep_entropy": ("deep entropy", "{:.3f}")}


def text(value: Any) -> str:
    """``value`` as literal Markdown text inside a table cell (no emphasis, links, HTML or new lines)."""
    out = str(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("|", "&#124;")
    return _MARKDOWN.sub(r"\\\1", " ".join(out.split()))


def code(value: Any) -> str:
    """``value`` as inline code (labels, ids); backticks inside fall back to plain text."""
    value = " ".join(str(value).split())
    return f"`{value}`" if value and "`" not in value and "|" not in value else text(value)


def _number(value: Any, fmt: str) -> str:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return "–"
    return "NaN" if math.isnan(value) else fmt.format(value)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], used: int, more: str) -> str:
    """A Markdown table of as many ``rows`` as fit; ``more`` says where the rest is."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    size = used + sum(len(line) + 1 for line in lines)
    shown = 0
    for row in rows:
        line = "| " + " | ".join(row) + " |"
        if shown >= MAX_ROWS or size + len(line) + 1 > NOTE_BUDGET:
            break
        lines.append(line)
        size += len(line) + 1
        shown += 1
    out = "\n".join(lines)
    if shown < len(rows):
        out += f"\n\n_{len(rows) - shown} more not shown: {more}_"
    return out


def _counts(statuses: Sequence[str]) -> str:
    """``**12 cells** · 9 finished · 2 diverged · 1 failed`` (statuses in order of first appearance)."""
    return f"**{len(statuses)} cells**" + "".join(f" · {n} {text(s)}" for s, n in Counter(statuses).items())


def _cell_id(row: Mapping[str, Any]) -> str:
    return str(row.get("id") or row.get("cell") or "")


def plan_note(experiment: str, plan: Sequence[Mapping[str, Any]]) -> str:
    """The sweep run's description when it starts: the plan, one row per cell."""
    head = f"### Plan of {code(experiment)}\n\n**{len(plan)} cells** · sweep running\n\n"
    rows = [[code(_cell_id(r)), code(r.get("norm", "")), text(r.get("rescale", "")),
             code(r.get("backbone", "")), code(r.get("task", "")), text(r.get("seed", ""))] for r in plan]
    table = _table(["cell", "norm", "rescale", "backbone", "task", "seed"], rows, len(head),
                   "artifact `plan/plan.csv`")
    return head + table


def results_rows(plan: Sequence[Mapping[str, Any]], runs: Sequence[Mapping[str, Any]],
                 sweep_run_id: str) -> list[dict[str, Any]]:
    """One row per cell for :func:`results_note`, in the plan's order.

    ``runs`` are :meth:`RunStore.runs` records, one per cell (the latest). A planned cell without a
    run is ``not run``. Runs of this sweep that are not in the plan (a search's trials) follow in
    the order they started, and then the plan's cells (a search's base cells) are not listed.
    """
    by_cell = {r["cell"]: r for r in runs if r.get("cell")}
    plan_rows: dict[str, Mapping[str, Any]] = {_cell_id(p): p for p in plan}
    extra = [r for r in runs if r.get("parent_run_id") == sweep_run_id and r["cell"] not in plan_rows]
    cells = ([c for c in plan_rows if c in by_cell] if extra else list(plan_rows)) + [r["cell"] for r in extra]
    out = []
    for cell in cells:
        run, spec = by_cell.get(cell), plan_rows.get(cell, {})
        params = run["params"] if run else {}
        variant = (run or {}).get("norm") or (
            f"{spec.get('norm', '')}+rescale" if spec.get("rescale") is True else spec.get("norm", ""))
        out.append({"cell": cell, "variant": variant,
                    "backbone": spec.get("backbone") or params.get("backbone") or params.get("backbone.name", ""),
                    "task": spec.get("task") or params.get("task") or params.get("task.name", ""),
                    "seed": spec.get("seed", params.get("seed", "")),
                    "status": run["status"] if run else NOT_RUN,
                    "metrics": {k: run["metrics"][k] for k in _RESULT_METRICS if run and k in run["metrics"]}})
    return out


def results_note(experiment: str, rows: Sequence[Mapping[str, Any]], sweep_status: str) -> str:
    """The sweep run's description when it ends: status counts, then one row per cell."""
    head = (f"### Results of {code(experiment)}\n\n{_counts([r['status'] for r in rows])} · "
            f"sweep {text(sweep_status)}\n\n")
    table_rows = []
    for r in rows:
        status = text(r["status"]) if r["status"] == "finished" else f"**{text(r['status'])}**"
        table_rows.append([code(r["cell"]), code(r["variant"]), code(r["backbone"]), code(r["task"]),
                           text(r["seed"]), status]
                          + [_number(r["metrics"].get(k), fmt) for k, (_, fmt) in _RESULT_METRICS.items()])
    header = ["cell", "variant", "backbone", "task", "seed", "status"] + [c for c, _ in _RESULT_METRICS.values()]
    return head + _table(header, table_rows, len(head), f"{code(f'ablate report {experiment}')} lists every cell")


def cell_info(cell_id: str, params: Mapping[str, Any], tags: Mapping[str, Any]) -> dict[str, Any]:
    """What a cell's description shows of its flattened params and tags (``ablate.norm``)."""
    info: dict[str, Any] = {"cell": cell_id}
    if tags.get(Tag.NORM):
        info["variant"] = tags[Tag.NORM]
    for key in ("norm", "rescale", "backbone", "task", "seed", "data"):
        value = params.get(key, params.get(f"{key}.name") if key in _COMPONENTS else None)
        if value is not None:  # a component with params is flattened to key.name, key.<param>…
            info[key] = value
    return info


def cell_note(info: Mapping[str, Any], status: str, reason: str = "",
              summary: Mapping[str, Any] | None = None) -> str:
    """A cell run's description: what the cell is (from :func:`cell_info`), its status and why."""
    rows = [["status", text(status) if status in ("finished", "running") else f"**{text(status)}**"]]
    if reason:
        rows.append(["reason", text(reason)])
    for key, value in info.items():
        if key != "cell":
            rows.append([key, code(value) if key in ("variant", *_COMPONENTS) else text(value)])
    for key, (column, fmt) in _RESULT_METRICS.items():
        if summary and summary.get(key) is not None:
            rows.append([column, _number(summary[key], fmt)])
    return _table(["cell", code(info.get("cell", ""))], rows, 0, "")
