"""The ablation table: mean ± std over seeds per (row, column), best per column, paired differences.

    from ablate.report import ablation_table
    table = ablation_table("quickstart", "sqlite:////abs/.ablate/mlflow.db")
    print(table.to_markdown())

Paired differences: a variant's cell and the baseline's cell with the same ``ablate.pairing`` tag
(equal in everything but the norm variant: same seed, init and batches) in the same column form a
pair; we report the mean of (variant − baseline), its 95% t-interval and a paired t-test p-value
when there are at least two pairs. ``±`` is the sample standard deviation (ddof = 1) over seeds.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from ._data import Cells
from ._spec import STATUS_ORDER, TableSpec


@dataclass
class Entry:
    """One (row, column) of the table."""

    values: list[float]  # the metric of each included cell (finite values only)
    excluded: dict[str, int] = field(default_factory=dict)  # status -> cells left out
    missing: int = 0  # included-status cells that did not log the metric
    best: bool = False

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return float(np.mean(self.values)) if self.values else math.nan

    @property
    def median(self) -> float:
        return float(np.median(self.values)) if self.values else math.nan

    @property
    def std(self) -> float:
        return float(np.std(self.values, ddof=1)) if len(self.values) >= 2 else math.nan


@dataclass
class Paired:
    """Paired difference of one variant against the baseline in one column."""

    diffs: list[float]

    @property
    def n(self) -> int:
        return len(self.diffs)

    @property
    def mean(self) -> float:
        return float(np.mean(self.diffs)) if self.diffs else math.nan

    @property
    def ci(self) -> tuple[float, float]:
        """95% t-interval of the mean difference (NaN with fewer than two pairs)."""
        if self.n < 2:
            return (math.nan, math.nan)
        half = float(stats.t.ppf(0.975, self.n - 1)) * float(np.std(self.diffs, ddof=1)) / math.sqrt(self.n)
        return (self.mean - half, self.mean + half)

    @property
    def p(self) -> float:
        """Two-sided paired t-test p-value (NaN with fewer than two pairs or zero spread)."""
        if self.n < 2 or float(np.std(self.diffs, ddof=1)) == 0.0:
            return math.nan
        return float(stats.ttest_1samp(self.diffs, 0.0).pvalue)  # == ttest_rel(variant, baseline)


def fmt(value: float, precision: int = 2) -> str:
    """Fixed-point, or scientific for very large/small magnitudes (feature msq reaches 1e7)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if math.isinf(value):
        return "∞" if value > 0 else "−∞"
    if abs(value) >= 1e5:
        return f"{value:.{max(precision, 1)}e}"
    if value != 0 and abs(value) < 0.5 * 10 ** (-precision):  # would print as 0.00: one significant digit
        return f"{value:.1g}"
    return f"{value:.{precision}f}"


def fmt_signed(value: float, precision: int = 2) -> str:
    text = fmt(value, precision)
    return f"+{text}" if not math.isnan(value) and value > 0 else text


@dataclass
class AblationTable:
    spec: TableSpec
    rows: list[str]
    columns: list[str]
    entries: dict[tuple[str, str], Entry]
    baseline: str | None
    paired: dict[tuple[str, str], Paired]
    counts: dict[str, dict[str, int]]  # row -> status -> cells
    notes: list[str] = field(default_factory=list)
    experiment: str = ""

    @property
    def has_test(self) -> bool:
        return any(p.n >= 2 for p in self.paired.values())

    def center(self, e: Entry) -> float:
        return e.median if self.spec.aggregate == "median" else e.mean

    def cell_text(self, row: str, col: str, *, sign: str = "±") -> str:
        e = self.entries.get((row, col))
        if e is None or e.n == 0:
            return "—"
        p = self.spec.precision
        text = fmt(self.center(e), p)
        if e.n >= 2:
            text += f" {sign} {fmt(e.std, p)}"
        return text

    def excluded_text(self, row: str, col: str) -> str:
        e = self.entries.get((row, col))
        if e is None:
            return ""
        parts = [f"{k} {v}" for k, v in sorted(e.excluded.items(), key=lambda kv: STATUS_ORDER.index(kv[0])
                                                if kv[0] in STATUS_ORDER else 99)]
        if e.missing:
            parts.append(f"no metric {e.missing}")
        return ", ".join(parts)

    def paired_rows(self) -> list[str]:
        return [r for r in self.rows if r != self.baseline and any((r, c) in self.paired for c in self.columns)]

    # exports ------------------------------------------------------------------------------------
    def records(self) -> list[dict[str, Any]]:
        """Long format: one dict per (row, column) with the numbers, the paired difference and counts."""
        out = []
        for row in self.rows:
            for col in self.columns:
                e = self.entries.get((row, col), Entry([]))
                pr = self.paired.get((row, col))
                lo, hi = pr.ci if pr else (math.nan, math.nan)
                out.append({
                    "row": row, "column": col, "metric": self.spec.metric, "aggregate": self.spec.aggregate,
                    "value": self.center(e), "std": e.std, "n": e.n, "best": e.best,
                    "excluded": self.excluded_text(row, col),
                    "baseline": self.baseline or "", "delta": pr.mean if pr else math.nan,
                    "ci_low": lo, "ci_high": hi, "p": pr.p if pr else math.nan, "pairs": pr.n if pr else 0,
                })
        return out

    def to_csv(self) -> str:
        return records_csv(self.records())

    def _title(self) -> str:
        unit = f" ({self.spec.unit})" if self.spec.unit else ""
        agg = "mean" if self.spec.aggregate == "mean" else "median"
        return f"{self.spec.metric}{unit}, {agg} ± std over seeds, best per column in bold"

    def to_markdown(self) -> str:
        head = [self.spec.rows, *self.columns]
        lines = [f"**{self.experiment}** — {self._title()}", "",
                 "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for row in self.rows:
            cells = []
            for col in self.columns:
                text = self.cell_text(row, col)
                e = self.entries.get((row, col))
                if e and e.best:
                    text = f"**{text}**"
                if e and e.n:
                    text += f" (n={e.n})"
                cells.append(text)
            lines.append("| " + " | ".join([row, *cells]) + " |")
        lines.extend(self._paired_markdown())
        lines.extend(f"\n_{n}_" for n in self.notes)
        return "\n".join(lines) + "\n"

    def _paired_markdown(self) -> list[str]:
        prow = self.paired_rows()
        if not prow:
            return []
        out = ["", f"Paired difference vs **{self.baseline}** (variant − baseline, 95% CI, paired t-test):", "",
               "| " + " | ".join([self.spec.rows, *self.columns]) + " |", "|" + "---|" * (1 + len(self.columns))]
        for row in prow:
            out.append("| " + " | ".join([row, *(self.paired_text(row, c) for c in self.columns)]) + " |")
        return out

    def paired_text(self, row: str, col: str) -> str:
        pr = self.paired.get((row, col))
        if pr is None or pr.n == 0:
            return "—"
        p = self.spec.precision
        text = fmt_signed(pr.mean, p)
        if pr.n >= 2:
            lo, hi = pr.ci
            pv = pr.p
            text += f" [{fmt(lo, p)}, {fmt(hi, p)}]"
            text += f", p={pv:.3g}" if not math.isnan(pv) else ", p=—"
        return text + f" (n={pr.n})"

    def to_latex(self) -> str:
        def esc(s: str) -> str:
            for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("$", r"\$"), ("#", r"\#"),
                         ("_", r"\_"), ("{", r"\{"), ("}", r"\}"), ("~", r"\textasciitilde{}"),
                         ("^", r"\textasciicircum{}")):
                s = s.replace(a, b)
            return s.replace("—", "--").replace("·", r"$\cdot$")

        cols = "l" + "c" * len(self.columns)
        lines = [r"% " + esc(self._title()) + f" -- {esc(self.experiment)}", r"\begin{tabular}{" + cols + "}",
                 r"\toprule", " & ".join([esc(self.spec.rows), *map(esc, self.columns)]) + r" \\", r"\midrule"]
        for row in self.rows:
            cells = []
            for col in self.columns:
                e = self.entries.get((row, col))
                text = self.cell_text(row, col, sign="$\\pm$") if e and e.n else "--"
                cells.append(r"\textbf{" + text + "}" if e and e.best else text)
            lines.append(" & ".join([esc(row), *cells]) + r" \\")
        lines += [r"\bottomrule", r"\end{tabular}"]
        prow = self.paired_rows()
        if prow:
            lines += ["", r"% paired difference vs " + esc(self.baseline or "") + ": mean [95% CI], paired t-test",
                      r"\begin{tabular}{" + cols + "}", r"\toprule",
                      " & ".join([esc(self.spec.rows), *map(esc, self.columns)]) + r" \\", r"\midrule"]
            for row in prow:
                lines.append(" & ".join([esc(row), *(esc(self.paired_text(row, c)) for c in self.columns)]) + r" \\")
            lines += [r"\bottomrule", r"\end{tabular}"]
        return "\n".join(lines) + "\n"

    def to_format(self, fmt_name: str) -> str:
        return {"md": self.to_markdown, "csv": self.to_csv, "latex": self.to_latex}[fmt_name]()


def build_table(cells: Cells, spec: TableSpec) -> AblationTable:
    """Aggregate the cells of :class:`Cells` into the ablation table described by ``spec``."""
    frame = cells.frame
    notes: list[str] = []
    if spec.rows in ("norm", "variant"):
        rows = list(cells.variants)
    else:
        rows = sorted(frame["row"].unique()) if not frame.empty else []
    columns = list(cells.columns)
    baseline = cells.variants[0] if cells.variants and spec.rows in ("norm", "variant") else None
    if spec.baseline and baseline != spec.baseline and spec.rows in ("norm", "variant"):
        notes.append(f"baseline {spec.baseline!r} has no cells here: no paired differences")
        baseline = None
    entries: dict[tuple[str, str], Entry] = {}
    counts: dict[str, dict[str, int]] = {r: {} for r in rows}
    if frame.empty:
        return AblationTable(spec, rows, columns, entries, baseline, {}, counts, notes)
    has_metric = spec.metric in frame.columns
    if not has_metric:
        notes.append(f"no cell logged the metric {spec.metric!r}")
    for (row, col), group in frame.groupby(["row", "column"], sort=False):
        entries[(row, col)] = _entry(group, spec, has_metric, counts[row])
    _mark_best(entries, rows, columns, spec)
    paired = _paired(frame, spec, baseline) if baseline is not None and has_metric else {}
    if paired and not any(p.n >= 2 for p in paired.values()):
        notes.append("a paired test needs at least two seeds per variant: only differences are shown")
    varying = _confounds(cells, spec)
    if varying:
        notes.append("cells averaged together also differ in " + ", ".join(varying)
                     + ": add them to table.columns or filter them")
    return AblationTable(spec, rows, columns, entries, baseline, paired, counts, notes)


def _entry(group: pd.DataFrame, spec: TableSpec, has_metric: bool, counts: dict[str, int]) -> Entry:
    """One table cell: the metric of the group's cells whose status the table takes; ``counts`` (the
    row's cells per status) is updated."""
    e = Entry([])
    for _, cell in group.iterrows():
        status = cell["status"]
        counts[status] = counts.get(status, 0) + 1
        if status not in spec.statuses:
            e.excluded[status] = e.excluded.get(status, 0) + 1
            continue
        value = cell[spec.metric] if has_metric else math.nan
        if value is None or not np.isfinite(value):
            e.missing += 1
            continue
        e.values.append(float(value))
    return e


def _mark_best(entries: dict[tuple[str, str], Entry], rows: list[str], columns: list[str], spec: TableSpec) -> None:
    """Per column, flag the best aggregated value among rows with at least one value (two rows or more)."""
    for col in columns:
        scored = [entries[(r, col)] for r in rows if (r, col) in entries and entries[(r, col)].n]
        if len(scored) >= 2:
            pick = max if spec.goal == "max" else min
            best_value = pick(_center(e, spec) for e in scored)
            for e in scored:
                e.best = _center(e, spec) == best_value


def _center(e: Entry, spec: TableSpec) -> float:
    return e.median if spec.aggregate == "median" else e.mean


def _paired(frame: pd.DataFrame, spec: TableSpec, baseline: str) -> dict[tuple[str, str], Paired]:
    ok = frame[frame["status"].isin(spec.statuses) & np.isfinite(frame[spec.metric].astype(float))]
    # without the pairing tag (runs logged by something else), the seed is the next best key
    key = np.where(ok["pairing"] != "", ok["pairing"], "seed=" + ok["seed"].astype(str))
    ok = ok.assign(_key=key)
    base = {(c, k): v for c, k, v in zip(ok.loc[ok["variant"] == baseline, "column"],
                                         ok.loc[ok["variant"] == baseline, "_key"],
                                         ok.loc[ok["variant"] == baseline, spec.metric])}
    out: dict[tuple[str, str], Paired] = {}
    for (variant, col), group in ok[ok["variant"] != baseline].groupby(["variant", "column"], sort=False):
        diffs = [float(v) - float(base[(col, k)]) for k, v in zip(group["_key"], group[spec.metric])
                 if (col, k) in base]
        out[(variant, col)] = Paired(diffs)
    return out


_IGNORED = {"seed", "norm", "rescale"}


def _confounds(cells: Cells, spec: TableSpec) -> list[str]:
    """Params that vary within one table entry (besides seed and the row/column fields)."""
    if cells.frame.empty:
        return []
    used = {spec.rows, *spec.columns, *(f"params.{c}" for c in spec.columns)}
    by_entry: dict[tuple[str, str], list[dict[str, str]]] = {}
    for _, cell in cells.frame.iterrows():
        by_entry.setdefault((cell["row"], cell["column"]), []).append(cells.runs[cell["run_id"]]["params"])
    varying: set[str] = set()
    for params_list in by_entry.values():
        if len(params_list) < 2:
            continue
        keys = set().union(*params_list)
        for k in keys:
            top = k.split(".", 1)[0]
            if k in _IGNORED or top in _IGNORED or k in used or top in used:
                continue
            if len({p.get(k) for p in params_list}) > 1:
                varying.add(k)
    return sorted(varying)


def records_csv(recs: list[dict[str, Any]]) -> str:
    """Records as CSV: NaN as an empty field, other floats at full precision (``repr``)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(recs[0]) if recs else ["row"], lineterminator="\n")
    writer.writeheader()
    for r in recs:
        writer.writerow({k: ("" if isinstance(v, float) and math.isnan(v) else
                             repr(v) if isinstance(v, float) else v) for k, v in r.items()})
    return buf.getvalue()
