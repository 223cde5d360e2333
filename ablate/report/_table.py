"""The ablation table: mean ± std over seeds per (row, column), best per column, paired differences.

    from ablate.report import ablation_table
    table = ablation_table("quickstart", "sqlite:////abs/.ablate/mlflow.db")
    print(table.to_markdown())

Paired differences: a variant's cell and the baseline's cell with the same ``ablate.pairing`` tag
(equal in everything but the norm variant: same seed, init and batches) in the same column form a
pair; we report the mean of (variant − baseline), its 95% percentile bootstrap interval (the seed
pairs resampled whole) and a two-sided paired t-test p-value when there are at least two pairs, the
p-values Holm-adjusted over the variants compared with the baseline in each column. ``±`` is the
sample standard deviation (ddof = 1) over seeds; ``n`` is printed beside every number. A column
marks its best row only when every row in it has at least two seeds: one value per variant says
nothing about which is better, and a table of single seeds says so.

Plain Python and numpy, so ``ablate report`` answers in a fraction of a second: the statistics come
from :mod:`ablate.report._stats` (checked against scipy in the tests).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ablate.track import default_state_dir, resolve_tracking_uri

from ._anova import Anova, factor_anova
from ._data import CellRow, Cells, experiment_order, load_cells
from ._spec import STATUS_ORDER, DashboardSpec, TableSpec, load_dashboard_spec
from ._stats import bootstrap_ci, holm, paired_t_p

SINGLE_SEED = ("one seed per variant: this table cannot rank the variants (a single seed's PSNR moves by "
               "up to several dB across machines at this scale); run three or more seeds: grid: {seed: [0, 1, 2]}")


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
    """Paired difference of one variant against the baseline in one column: the differences, one per
    shared pairing key (seed), their 95% bootstrap interval, the paired t-test's p-value and (set by
    :func:`build_table`) that p-value Holm-adjusted over every comparison in the table."""

    diffs: list[float]
    p_holm: float = math.nan

    @property
    def n(self) -> int:
        return len(self.diffs)

    @property
    def mean(self) -> float:
        return float(np.mean(self.diffs)) if self.diffs else math.nan

    @property
    def ci(self) -> tuple[float, float]:
        """95% percentile bootstrap interval of the mean difference over the pairs (NaN below two)."""
        return bootstrap_ci(self.diffs)

    @property
    def p(self) -> float:
        """Two-sided paired t-test p-value (NaN with fewer than two pairs or zero spread)."""
        return paired_t_p(self.diffs)


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


def pvalue(p: float) -> str:
    """A p-value in three significant digits ("—" when there is no test)."""
    return "—" if math.isnan(p) else f"{p:.3g}"


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
    anova: Anova | None = None  # factor importance over the grid's axes (ablation_table sets it)

    @property
    def has_test(self) -> bool:
        return any(p.n >= 2 for p in self.paired.values())

    @property
    def has_best(self) -> bool:
        return any(e.best for e in self.entries.values())

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
                    "ci_low": lo, "ci_high": hi, "p": pr.p if pr else math.nan,
                    "p_holm": pr.p_holm if pr else math.nan, "pairs": pr.n if pr else 0,
                })
        return out

    def to_csv(self) -> str:
        return records_csv(self.records())

    def _title(self) -> str:
        unit = f" ({self.spec.unit})" if self.spec.unit else ""
        agg = "mean" if self.spec.aggregate == "mean" else "median"
        return f"{self.spec.metric}{unit}, {agg} ± std over seeds" + (", best per column in bold" if self.has_best else "")

    def to_markdown(self) -> str:
        head = [self.spec.rows, *self.columns]
        lines = [f"**{self.experiment}** — {self._title()}", ""]
        if SINGLE_SEED in self.notes:
            lines += [f"> **{SINGLE_SEED}**", ""]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
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
        if self.anova is not None and self.anova.terms:
            lines += ["", self.anova.to_markdown().rstrip("\n")]
        lines.extend(f"\n_{n}_" for n in self.notes if n != SINGLE_SEED)
        return "\n".join(lines) + "\n"

    def _paired_markdown(self) -> list[str]:
        prow = self.paired_rows()
        if not prow:
            return []
        out = ["", f"Paired difference vs **{self.baseline}** ({self.paired_caption()}):", "",
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
            text += f" [{fmt(lo, p)}, {fmt(hi, p)}], p={pvalue(pr.p)}"
            if self.family > 1:
                text += f", Holm p={pvalue(pr.p_holm)}"
        return text + f" (n={pr.n})"

    @property
    def family(self) -> int:
        """The most comparisons with a p-value in one column: Holm's correction adjusts over each
        column's (the variants compared with the baseline under one setting)."""
        per: dict[str, int] = {}
        for (_, col), pr in self.paired.items():
            per[col] = per.get(col, 0) + (not math.isnan(pr.p))
        return max(per.values(), default=0)

    def paired_caption(self) -> str:
        text = "variant − baseline over seed pairs: mean [95% bootstrap CI], paired t-test p"
        if self.family > 1:
            text += ", Holm-adjusted over the variants compared in each column"
        return text

    def to_latex(self) -> str:
        cols = "l" + "c" * len(self.columns)
        head = [latex_escape(self.spec.rows), *map(latex_escape, self.columns)]
        lines = [r"% " + latex_escape(self._title()) + f" -- {latex_escape(self.experiment)}",
                 r"\begin{tabular}{" + cols + "}", r"\toprule", " & ".join(head) + r" \\", r"\midrule"]
        for row in self.rows:
            cells = []
            for col in self.columns:
                e = self.entries.get((row, col))
                text = self.cell_text(row, col, sign="$\\pm$") if e and e.n else "--"
                cells.append(r"\textbf{" + text + "}" if e and e.best else text)
            lines.append(" & ".join([latex_escape(row), *cells]) + r" \\")
        lines += [r"\bottomrule", r"\end{tabular}"]
        prow = self.paired_rows()
        if prow:
            lines += ["", r"% paired difference vs " + latex_escape(self.baseline or "") + ": "
                      + latex_escape(self.paired_caption()),
                      r"\begin{tabular}{" + cols + "}", r"\toprule",
                      " & ".join(head) + r" \\", r"\midrule"]
            for row in prow:
                diffs = (latex_escape(self.paired_text(row, c)) for c in self.columns)
                lines.append(" & ".join([latex_escape(row), *diffs]) + r" \\")
            lines += [r"\bottomrule", r"\end{tabular}"]
        return "\n".join(lines) + "\n"

    def to_format(self, fmt_name: str) -> str:
        return {"md": self.to_markdown, "csv": self.to_csv, "latex": self.to_latex}[fmt_name]()


def build_table(cells: Cells, spec: TableSpec) -> AblationTable:
    """Aggregate the cells of :class:`Cells` into the ablation table described by ``spec``."""
    notes: list[str] = []
    by_variant = spec.rows in ("norm", "variant")
    rows = list(cells.variants) if by_variant else experiment_order(cells.rows, cells.cell_order, lambda r: r.row)
    columns = list(cells.columns)
    baseline = cells.baseline if by_variant else None
    if spec.baseline and baseline != spec.baseline and by_variant:
        notes.append(f"baseline {spec.baseline!r} has no cells here: no paired differences")
        baseline = None
    entries: dict[tuple[str, str], Entry] = {}
    counts: dict[str, dict[str, int]] = {r: {} for r in rows}
    if cells.empty:
        return AblationTable(spec, rows, columns, entries, baseline, {}, counts, notes)
    has_metric = any(spec.metric in r.metrics for r in cells.rows)
    if not has_metric:
        notes.append(f"no cell logged the metric {spec.metric!r}")
    for (row, col), group in _groups(cells.rows, lambda r: (r.row, r.column)).items():
        entries[(row, col)] = _entry(group, spec, has_metric, counts[row])
    if not _mark_best(entries, rows, columns, spec):
        notes.insert(0, SINGLE_SEED if max((e.n for e in entries.values()), default=0) <= 1 else
                     "no best marked in a column where a variant has a single seed: n = 1 cannot rank")
    paired = _paired(cells.rows, spec, baseline) if baseline is not None and has_metric else {}
    for col in columns:  # the family: the variants compared with the baseline in one column
        family = [pr for (_, c), pr in paired.items() if c == col]
        for pr, adjusted in zip(family, holm([pr.p for pr in family])):
            pr.p_holm = adjusted
    if paired and not any(p.n >= 2 for p in paired.values()):
        notes.append("a paired test needs at least two seeds per variant: only differences are shown")
    varying = _confounds(cells, spec)
    if varying:
        notes.append("cells averaged together also differ in " + ", ".join(varying)
                     + ": add them to table.columns or filter them")
    return AblationTable(spec, rows, columns, entries, baseline, paired, counts, notes)


def _groups(rows: list[CellRow], key: Any) -> dict[Any, list[CellRow]]:
    """Rows grouped by ``key(row)``, groups and rows in the order they come."""
    out: dict[Any, list[CellRow]] = {}
    for r in rows:
        out.setdefault(key(r), []).append(r)
    return out


def _entry(group: list[CellRow], spec: TableSpec, has_metric: bool, counts: dict[str, int]) -> Entry:
    """One table cell: the metric of the group's cells whose status the table takes; ``counts`` (the
    row's cells per status) is updated."""
    e = Entry([])
    for cell in group:
        counts[cell.status] = counts.get(cell.status, 0) + 1
        if cell.status not in spec.statuses:
            e.excluded[cell.status] = e.excluded.get(cell.status, 0) + 1
            continue
        value = cell.metric(spec.metric) if has_metric else math.nan
        if not math.isfinite(value):
            e.missing += 1
            continue
        e.values.append(float(value))
    return e


def _mark_best(entries: dict[tuple[str, str], Entry], rows: list[str], columns: list[str],
               spec: TableSpec) -> bool:
    """Per column, flag the best aggregated value among rows with values (two rows or more), when
    every one of them has at least two: a single seed per variant ranks noise. False when some
    column with two rows or more went unmarked for that reason."""
    ranked = True
    for col in columns:
        scored = [entries[(r, col)] for r in rows if (r, col) in entries and entries[(r, col)].n]
        if len(scored) < 2:
            continue
        if any(e.n < 2 for e in scored):
            ranked = False
            continue
        pick = max if spec.goal == "max" else min
        best_value = pick(_center(e, spec) for e in scored)
        for e in scored:
            e.best = _center(e, spec) == best_value
    return ranked


def _center(e: Entry, spec: TableSpec) -> float:
    return e.median if spec.aggregate == "median" else e.mean


def _paired(cells: list[CellRow], spec: TableSpec, baseline: str) -> dict[tuple[str, str], Paired]:
    ok = [c for c in cells if c.status in spec.statuses and math.isfinite(c.metric(spec.metric))]

    def key(c: CellRow) -> str:  # without the pairing tag (runs logged by something else), the seed
        return c.pairing or f"seed={c.seed}"

    base = {(c.column, key(c)): c.metric(spec.metric) for c in ok if c.variant == baseline}
    out: dict[tuple[str, str], Paired] = {}
    for (variant, col), group in _groups([c for c in ok if c.variant != baseline],
                                         lambda c: (c.variant, c.column)).items():
        out[(variant, col)] = Paired([c.metric(spec.metric) - base[(col, key(c))] for c in group
                                      if (col, key(c)) in base])
    return out


_IGNORED = {"seed", "norm", "rescale"}


def _confounds(cells: Cells, spec: TableSpec) -> list[str]:
    """Params that vary within one table entry (besides seed and the row/column fields)."""
    used = {spec.rows, *spec.columns, *(f"params.{c}" for c in spec.columns)}
    by_entry = _groups(cells.rows, lambda r: (r.row, r.column))
    varying: set[str] = set()
    for group in by_entry.values():
        if len(group) < 2:
            continue
        params_list = [cells.runs[c.run_id]["params"] for c in group]
        keys = set().union(*params_list)
        for k in keys:
            top = k.split(".", 1)[0]
            if k in _IGNORED or top in _IGNORED or k in used or top in used:
                continue
            if len({p.get(k) for p in params_list}) > 1:
                varying.add(k)
    return sorted(varying)


def ablation_table(experiment: str | list[str], tracking_uri: str | None = None,
                   spec: str | Path | DashboardSpec | None = None, *, state_dir: str | Path | None = None,
                   metric: str | None = None, baseline: str | None = None) -> AblationTable:
    """The ablation table alone (for ``ablate report``): ``.to_markdown()``, ``.to_csv()``, ``.to_latex()``.

    Reads what the table needs and no plotting library (matplotlib, plotly, jinja2) is imported.
    """
    dspec = load_dashboard_spec(spec)
    table_spec = dspec.table
    if metric:
        table_spec = dataclasses.replace(table_spec, metric=metric,
                                         unit=table_spec.unit if metric == dspec.table.metric else "")
    if baseline:
        table_spec = dataclasses.replace(table_spec, baseline=baseline)
    dspec = dataclasses.replace(dspec, table=table_spec)
    names = [experiment] if isinstance(experiment, str) else list(experiment)
    sdir = Path(state_dir) if state_dir is not None else default_state_dir()
    uri = tracking_uri or resolve_tracking_uri(None, None, sdir)
    cells = load_cells(names, uri, dspec)
    table = build_table(cells, table_spec)
    table.experiment = ", ".join(names)
    table.anova = factor_anova(cells, table_spec) if not cells.empty else None
    if cells.empty:
        table.notes.insert(0, f"experiment {table.experiment!r} has no cell runs yet")
    return table


def latex_escape(s: str) -> str:
    """``s`` as LaTeX text: its special characters escaped, the em dash and the middle dot spelled out."""
    for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("$", r"\$"), ("#", r"\#"),
                 ("_", r"\_"), ("{", r"\{"), ("}", r"\}"), ("~", r"\textasciitilde{}"), ("^", r"\textasciicircum{}")):
        s = s.replace(a, b)
    return s.replace("—", "--").replace("·", r"$\cdot$")


def records_csv(recs: list[dict[str, Any]]) -> str:
    """Records as CSV: NaN as an empty field, other floats at full precision (``repr``)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(recs[0]) if recs else ["row"], lineterminator="\n")
    writer.writeheader()
    for r in recs:
        writer.writerow({k: ("" if isinstance(v, float) and math.isnan(v) else
                             repr(v) if isinstance(v, float) else v) for k, v in r.items()})
    return buf.getvalue()
