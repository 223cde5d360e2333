"""The paper's results table from ``ablate eval``: variants × test sets, PSNR/SSIM and the fp16 column.

    from ablate.report import eval_table
    table = eval_table("quickstart")               # after `ablate eval experiments/quickstart.yaml`
    print(table.to_markdown())                      # or .to_csv(), .to_latex()

Rows: the norm variants in the experiment's order (the newest sweep's plan), prefixed by the backbone
when the experiment has several, after the task's baseline row (bicubic for SR, the degraded input
otherwise; ``eval/<set>/psnr_input``). Column groups: the test sets in the order of the ``eval:``
section, times the task when the experiment has several (``Set5 ×2``, ``Set5 ×4``). Columns: PSNR,
SSIM and PSNR in each low precision evaluated (``PSNR fp16``). An entry is the mean ± sample std
over the cells (seeds) of its row whose status the table takes (finished by default); ``n`` is
their number. The best entry of a column is bold only when every competing row has n ≥ 2: a single
seed cannot rank variants (the README's quickstart shows single-seed PSNR moving by dB).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ablate.track import Tag

from ._data import Cells, field_value
from ._table import Entry, fmt, latex_escape, records_csv

# eval/<set>/<metric>[_<precision or input>]
_KEY = re.compile(r"^eval/(?P<set>[^/]+)/(?P<metric>psnr|ssim)(?:_(?P<kind>fp16|bf16|input))?$")
_SR = re.compile(r"^sr-x(?P<scale>\d+)")
_LOW = ("fp16", "bf16")


@dataclass(frozen=True)
class Group:
    """One column group: a test set (under one task)."""

    label: str
    set: str
    task: str


@dataclass(frozen=True)
class Column:
    """One column of every group: a metric in one precision (``psnr``, ``ssim``, ``psnr_fp16``)."""

    key: str
    header: str
    precision: int  # decimals shown


@dataclass
class EvalTable:
    experiment: str
    rows: list[str]  # the reference row first (when there is one), then the variants
    reference: str | None  # the baseline row's label
    groups: list[Group]
    columns: list[Column]
    entries: dict[tuple[str, str, str], Entry]  # (row, group label, column key)
    n: dict[str, int]  # row -> cells counted (the most over its entries)
    notes: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.groups

    def text(self, row: str, group: Group, col: Column, *, sign: str = "±") -> str:
        """``mean ± std`` (the std with two cells or more), ``(n=k)`` when k differs from the row's n."""
        e = self.entries.get((row, group.label, col.key))
        if e is None or e.n == 0:
            return "—"
        text = fmt(e.mean, col.precision)
        if e.n >= 2:
            text += f" {sign} {fmt(e.std, col.precision)}"
        if row != self.reference and e.n != self.n.get(row):
            text += f" (n={e.n})"
        return text

    def best(self, row: str, group: Group, col: Column) -> bool:
        e = self.entries.get((row, group.label, col.key))
        return bool(e and e.best)

    def _title(self) -> str:
        return ("whole test images (ablate eval), each task's protocol (SR: Y channel, border cropped); "
                "mean ± std over seeds; best per column in bold when every row has n ≥ 2")

    # exports ------------------------------------------------------------------------------------
    def records(self) -> list[dict[str, Any]]:
        """Long format: one dict per (row, group, column) with the numbers."""
        out = []
        for row in self.rows:
            for g in self.groups:
                for c in self.columns:
                    e = self.entries.get((row, g.label, c.key), Entry([]))
                    out.append({"row": row, "set": g.set, "task": g.task, "metric": c.key, "value": e.mean,
                                "std": e.std, "n": e.n, "best": e.best, "reference": row == self.reference})
        return out

    def to_csv(self) -> str:
        return records_csv(self.records())

    def to_markdown(self) -> str:
        head = ["variant", "n", *(f"{g.label} {c.header}" for g in self.groups for c in self.columns)]
        lines = [f"**{self.experiment}** — {self._title()}", "",
                 "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for row in self.rows:
            cells = []
            for g in self.groups:
                for c in self.columns:
                    text = self.text(row, g, c)
                    cells.append(f"**{text}**" if self.best(row, g, c) else text)
            n = "" if row == self.reference else str(self.n.get(row, 0))
            lines.append("| " + " | ".join([row, n, *cells]) + " |")
        lines.extend(f"\n_{note}_" for note in self.notes)
        return "\n".join(lines) + "\n"

    def to_latex(self) -> str:
        def esc(s: str) -> str:
            return latex_escape(s).replace("×", r"$\times$")

        k = len(self.columns)
        lines = [f"% {esc(self.experiment)}: {esc(self._title())}",
                 r"\begin{tabular}{lc" + "".join("|" + "c" * k for _ in self.groups) + "}", r"\toprule",
                 " & ".join(["", "", *(r"\multicolumn{" + str(k) + "}{c}{" + esc(g.label) + "}"
                                       for g in self.groups)]) + r" \\",
                 " ".join(r"\cmidrule(lr){" + f"{3 + i * k}-{2 + (i + 1) * k}" + "}" for i in range(len(self.groups))),
                 " & ".join(["variant", "n", *(esc(c.header) for _ in self.groups for c in self.columns)]) + r" \\",
                 r"\midrule"]
        for row in self.rows:
            cells = []
            for g in self.groups:
                for c in self.columns:
                    text = esc(self.text(row, g, c, sign="\x00")).replace("\x00", r"$\pm$")
                    cells.append(r"\textbf{" + text + "}" if self.best(row, g, c) else text)
            n = "" if row == self.reference else str(self.n.get(row, 0))
            lines.append(" & ".join([esc(row), n, *cells]) + r" \\")
            if row == self.reference:
                lines.append(r"\midrule")
        lines += [r"\bottomrule", r"\end{tabular}"]
        return "\n".join(lines) + "\n"

    def to_format(self, fmt_name: str) -> str:
        return {"md": self.to_markdown, "csv": self.to_csv, "latex": self.to_latex}[fmt_name]()


# building --------------------------------------------------------------------------------------
def _set_info(run: dict[str, Any], set_name: str) -> dict[str, Any]:
    """What ``ablate eval`` recorded about how the run scored ``set_name`` (tag ablate.eval.<set>)."""
    try:
        info = json.loads(run["tags"].get(f"{Tag.EVAL}{set_name}", "null"))
    except ValueError:
        return {}
    return info if isinstance(info, dict) else {}


def _group_label(set_name: str, task: str, tasks: list[str]) -> str:
    if len(tasks) == 1:
        return set_name
    sr = [_SR.match(t) for t in tasks]
    if all(sr) and len({m.group("scale") for m in sr if m}) == len(tasks):
        m = _SR.match(task)
        return f"{set_name} ×{m.group('scale')}" if m else set_name
    return f"{set_name} · {task}"


class _Builder:
    """Collects the eval metrics of the cells into an :class:`EvalTable`."""

    def __init__(self, cells: Cells, statuses: tuple[str, ...]) -> None:
        self.cells, self.statuses = cells, statuses
        self.runs = [cells.runs[r.run_id] for r in cells.rows]
        self.backbones = sorted({field_value(r, "backbone") for r in self.runs})
        self.set_index: dict[str, float] = {}
        self.low: set[str] = set()
        self.baselines: set[str] = set()
        # (row or None for the reference, set, task, column key) -> values, one per cell
        self.values: dict[tuple[str | None, str, str, str], list[float]] = {}
        self.excluded: dict[str, dict[str, int]] = {}

    def row_of(self, run: dict[str, Any]) -> str:
        variant = field_value(run, "norm")
        return f"{field_value(run, 'backbone')} · {variant}" if len(self.backbones) > 1 else variant

    def add(self, run: dict[str, Any]) -> None:
        counted = run["status"] in self.statuses
        row = self.row_of(run)
        if not counted and any(k.startswith("eval/") and _KEY.match(k) and not k.endswith("_input")
                               for k in run["metrics"]):
            self.excluded.setdefault(row, {}).setdefault(run["status"], 0)
            self.excluded[row][run["status"]] += 1
        for key, value in run["metrics"].items():
            m = _KEY.match(key) if key.startswith("eval/") else None
            if m is None or not math.isfinite(value):
                continue
            name, metric, kind = m.group("set"), m.group("metric"), m.group("kind")
            info = _set_info(run, name)
            task = str(info.get("task") or field_value(run, "task"))
            self.set_index[name] = min(self.set_index.get(name, math.inf), float(info.get("index", math.inf)))
            if kind == "input":  # the task's baseline: the same on every cell of the task
                self.baselines.add(str(info.get("baseline") or ("bicubic" if _SR.match(task) else "input")))
                self.values.setdefault((None, name, task, metric), []).append(value)
                continue
            if not counted:
                continue
            if kind:
                self.low.add(kind)
            col = metric if kind is None else f"{metric}_{kind}"
            self.values.setdefault((row, name, task, col), []).append(value)

    def build(self, experiment: str) -> EvalTable:
        for run in self.runs:
            self.add(run)
        tasks = sorted({task for (_, _, task, _) in self.values})
        sets = sorted({s for (_, s, _, _) in self.values}, key=lambda s: (self.set_index.get(s, math.inf), s))
        groups = [Group(_group_label(s, t, tasks), s, t) for s in sets for t in tasks
                  if any(k[1] == s and k[2] == t for k in self.values)]
        columns = [Column("psnr", "PSNR", 2), Column("ssim", "SSIM", 4),
                   *(Column(f"psnr_{p}", f"PSNR {p}", 2) for p in _LOW if p in self.low)]
        rows = self._rows()
        reference = None
        if any(k[0] is None for k in self.values):
            reference = " / ".join(sorted(self.baselines, reverse=True)) or "baseline"
        entries: dict[tuple[str, str, str], Entry] = {}
        for (row, s, t, col), values in self.values.items():
            label = next(g.label for g in groups if g.set == s and g.task == t)
            # the baseline is deterministic: one value, however many cells carry it
            key_row = row if row is not None else reference or "baseline"
            entries[(key_row, label, col)] = Entry(values[:1] if row is None else values)
        n = {r: max((e.n for (row, _, _), e in entries.items() if row == r), default=0) for r in rows}
        table = EvalTable(experiment, ([reference] if reference else []) + rows, reference, groups, columns,
                          entries, n)
        self._mark_best(table, rows)
        for row, counts in self.excluded.items():
            left = ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
            table.notes.append(f"{row}: {left} cell(s) left out (the table counts {', '.join(self.statuses)})")
        return table

    def _rows(self) -> list[str]:
        present = {k[0] for k in self.values if k[0] is not None}
        if not present:
            return []
        order = self.cells.cell_order
        first: dict[str, float] = {}
        for run in self.runs:
            row = self.row_of(run)
            first[row] = min(first.get(row, math.inf), order.get(run["cell"], math.inf))
        return sorted(present, key=lambda r: (first.get(r, math.inf), r))

    @staticmethod
    def _mark_best(table: EvalTable, rows: list[str]) -> None:
        single = False
        for g in table.groups:
            for c in table.columns:
                scored = [table.entries[(r, g.label, c.key)] for r in rows
                          if (r, g.label, c.key) in table.entries and table.entries[(r, g.label, c.key)].n]
                if len(scored) < 2:
                    continue
                if any(e.n < 2 for e in scored):
                    single = True
                    continue
                best = max(e.mean for e in scored)
                for e in scored:
                    e.best = e.mean == best
        if single:
            table.notes.append("no best marked where a row has a single seed: n = 1 cannot rank variants "
                               "(add seeds: grid: {seed: [0, 1, 2]})")


def build_eval_table(cells: Cells, statuses: tuple[str, ...], experiment: str = "") -> EvalTable:
    """The eval table of :class:`Cells` (their latest runs' ``eval/…`` metrics)."""
    table = _Builder(cells, statuses).build(experiment)
    if table.empty:
        table.notes.append("no cell has eval/… metrics yet: run `ablate eval SPEC.yaml`")
    return table


def eval_table(experiment: str | list[str], tracking_uri: str | None = None, spec: str | Path | Any = None, *,
               state_dir: str | Path | None = None) -> EvalTable:
    """The eval table alone (for ``ablate report NAME --eval``): ``.to_markdown()``, ``.to_csv()``,
    ``.to_latex()``. ``spec``: a dashboard spec whose filters and ``table.statuses`` apply."""
    from ablate.track import default_state_dir, resolve_tracking_uri

    from ._data import load_cells
    from ._spec import load_dashboard_spec

    dspec = load_dashboard_spec(spec)
    names = [experiment] if isinstance(experiment, str) else list(experiment)
    sdir = Path(state_dir) if state_dir is not None else default_state_dir()
    uri = tracking_uri or resolve_tracking_uri(None, None, sdir)
    cells = load_cells(names, uri, dspec)
    return build_eval_table(cells, dspec.table.statuses, ", ".join(names))


def eval_context(cells: Cells, statuses: tuple[str, ...]) -> dict[str, Any] | None:
    """The dashboard's eval section (None when no cell has eval metrics)."""
    table = build_eval_table(cells, statuses)
    if table.empty:
        return None
    rows = []
    for row in table.rows:
        out = []
        for g in table.groups:
            for c in table.columns:
                e = table.entries.get((row, g.label, c.key))
                out.append({"text": table.text(row, g, c), "best": table.best(row, g, c),
                            "mean": "" if e is None or not e.n else repr(e.mean),
                            "std": "" if e is None or e.n < 2 else repr(e.std), "n": e.n if e else 0,
                            "group": g.label, "metric": c.key})
        rows.append({"label": row, "colour": cells.colours.get(row), "reference": row == table.reference,
                     "n": table.n.get(row, 0), "cells": out})
    return {"groups": [{"label": g.label, "span": len(table.columns)} for g in table.groups],
            "columns": [c.header for c in table.columns], "rows": rows, "notes": table.notes}
