"""``ablate report NAME --eval``: the paper's table, checked against numbers written into a store by hand.

Cells are synthetic sweeps logged through the real Tracker; their eval metrics and tags are logged
here the way ``ablate eval`` logs them, with values chosen so every mean, std and bold mark is known.
"""

from __future__ import annotations

import csv
import io
import json
import statistics
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from ablate.cli import main

# the experiment's order: neither alphabetical nor baseline-first, so the table must read the plan
VARIANTS = ("i_ln", "batch_norm", "token_ln")
TASKS = ("sr-x2", "sr-x4")
SETS = ("Set5", "BSD100")  # the eval: section's order (alphabetical would put BSD100 first)
BICUBIC = {("sr-x2", "Set5"): (33.66, 0.9299), ("sr-x2", "BSD100"): (29.56, 0.8431),
           ("sr-x4", "Set5"): (28.42, 0.8104), ("sr-x4", "BSD100"): (25.96, 0.6675)}


def psnr(variant: str, seed: int, task: str, set_name: str) -> float:
    base = {"i_ln": 38.30, "batch_norm": 38.10, "token_ln": 38.20}[variant]
    return base - (4.0 if task == "sr-x4" else 0.0) - (5.0 if set_name == "BSD100" else 0.0) + 0.02 * seed


def ssim(variant: str, seed: int, task: str, set_name: str) -> float:
    return {"i_ln": 0.9610, "batch_norm": 0.9620, "token_ln": 0.9600}[variant] + 0.001 * seed


def log_eval(tracker: Any, cells: list[Any], runs: dict[str, str], fp16_drop: float = 0.05) -> None:
    """What ``ablate eval`` logs: per set, the model's numbers, the fp16 PSNR and the bicubic baseline."""
    for cell in cells:
        if cell.status not in ("finished", "diverged"):
            continue
        task = cell.spec.task.name
        metrics, tags = {}, {}
        for i, name in enumerate(SETS):
            p, s = psnr(cell.label, cell.spec.seed, task, name), ssim(cell.label, cell.spec.seed, task, name)
            drop = 7.5 if cell.label == "token_ln" else fp16_drop
            metrics.update({f"eval/{name}/psnr": p, f"eval/{name}/ssim": s, f"eval/{name}/psnr_fp16": p - drop,
                            f"eval/{name}/ssim_fp16": s - 0.01, f"eval/{name}/psnr_input": BICUBIC[task, name][0],
                            f"eval/{name}/ssim_input": BICUBIC[task, name][1]})
            tags[f"ablate.eval.{name}"] = json.dumps({"index": i, "task": task, "baseline": "bicubic",
                                                      "self_ensemble": False, "seed": 1234, "images": 5})
        tracker.log(runs[cell.id], metrics, 20)
        tracker.set_tags(runs[cell.id], tags)
    tracker.flush()


@pytest.fixture(scope="module")
def paper(store: dict[str, Any]) -> dict[str, Any]:
    """Experiments ``paper`` (3 variants × seeds 0, 1 × two SR scales, plus a diverged token_ln cell)
    and ``paper-1seed`` (seed 0 only), in the report fixtures' store."""
    from ablate.testing.synthetic import log_synthetic, synthetic_cells

    tracker = store["tracker"]
    cells = synthetic_cells(VARIANTS, (0, 1), tasks=TASKS, steps=20, extra=[("token_ln", 2, "diverged")])
    log_eval(tracker, cells, log_synthetic(tracker, "paper", cells))
    single = synthetic_cells(VARIANTS, (0,), tasks=("sr-x2",), steps=20)
    log_eval(tracker, single, log_synthetic(tracker, "paper-1seed", single))
    return store


def _run(*args: str) -> Any:
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_the_table_layout_and_numbers(paper: dict[str, Any]) -> None:
    from ablate.report import eval_table

    table = eval_table("paper", paper["uri"])
    assert table.rows == ["bicubic", *VARIANTS] and table.reference == "bicubic"
    assert [g.label for g in table.groups] == ["Set5 ×2", "Set5 ×4", "BSD100 ×2", "BSD100 ×4"]
    assert [c.header for c in table.columns] == ["PSNR", "SSIM", "PSNR fp16"]
    assert table.n == {"i_ln": 2, "batch_norm": 2, "token_ln": 2}  # the diverged seed 2 is left out
    for g in table.groups:
        e = table.entries[("bicubic", g.label, "psnr")]
        assert e.values == [BICUBIC[g.task, g.set][0]]
        for v in VARIANTS:
            values = [psnr(v, s, g.task, g.set) for s in (0, 1)]
            e = table.entries[(v, g.label, "psnr")]
            assert e.mean == pytest.approx(statistics.mean(values)) and e.std == pytest.approx(statistics.stdev(values))
        # every row has two seeds: the best is marked — PSNR i_ln, SSIM batch_norm, fp16 not token_ln
        assert [v for v in VARIANTS if table.entries[(v, g.label, "psnr")].best] == ["i_ln"]
        assert [v for v in VARIANTS if table.entries[(v, g.label, "ssim")].best] == ["batch_norm"]
        assert [v for v in VARIANTS if table.entries[(v, g.label, "psnr_fp16")].best] == ["i_ln"]
    assert any("token_ln: 2 diverged cell(s) left out" in n for n in table.notes)  # one per task


def test_markdown_csv_and_latex(paper: dict[str, Any]) -> None:
    md = _run("report", "paper", "--eval", "--tracking-uri", paper["uri"]).stdout
    lines = md.splitlines()
    header = next(line for line in lines if line.startswith("| variant"))
    assert header.startswith("| variant | n | Set5 ×2 PSNR | Set5 ×2 SSIM | Set5 ×2 PSNR fp16 | Set5 ×4 PSNR |")
    rows = [line for line in lines if line.startswith("| ") and not line.startswith("| variant")]
    assert [r.split(" | ")[0][2:] for r in rows] == ["bicubic", *VARIANTS]
    assert rows[0].startswith("| bicubic |  | 33.66 | 0.9299 | — |")
    assert rows[1].startswith("| i_ln | 2 | **38.31 ± 0.01** | 0.9615 ± 0.0007 | **38.26 ± 0.01** |")
    assert "| **0.9625 ± 0.0007** |" in rows[2]
    rows_csv = list(csv.DictReader(io.StringIO(_run("report", "paper", "--eval", "--format", "csv",
                                                    "--tracking-uri", paper["uri"]).stdout)))
    got = {(r["row"], r["set"], r["task"], r["metric"]): r for r in rows_csv}
    r = got[("token_ln", "BSD100", "sr-x4", "psnr_fp16")]
    assert float(r["value"]) == pytest.approx(38.21 - 9 - 7.5) and r["n"] == "2" and r["best"] == "False"
    assert got[("bicubic", "Set5", "sr-x4", "ssim")]["value"] == repr(0.8104)
    assert got[("bicubic", "Set5", "sr-x4", "ssim")]["reference"] == "True"
    tex = _run("report", "paper", "--eval", "--format", "latex", "--tracking-uri", paper["uri"]).stdout
    assert r"\begin{tabular}{lc|ccc|ccc|ccc|ccc}" in tex
    assert r"\multicolumn{3}{c}{Set5 $\times$2}" in tex and r"\cmidrule(lr){3-5}" in tex
    assert r"i\_ln & 2 & \textbf{38.31 $\pm$ 0.01}" in tex and r"bicubic &  & 33.66 & 0.9299 & --" in tex


def test_a_single_seed_marks_no_best(paper: dict[str, Any]) -> None:
    res = _run("report", "paper-1seed", "--eval", "--tracking-uri", paper["uri"])
    assert res.exit_code == 0
    md = res.stdout
    assert "**3" not in md and "| variant | n | Set5 PSNR | Set5 SSIM | Set5 PSNR fp16 | BSD100 PSNR |" in md
    assert "| i_ln | 1 | 38.30 | 0.9610 | 38.25 |" in md  # one task: the groups are the sets alone
    assert "no best marked where a row has a single seed" in md


def test_the_dashboard_has_the_same_table(paper: dict[str, Any], tmp_path: Path) -> None:
    from ablate.report import build_dashboard

    html = build_dashboard(None, "paper", paper["uri"], tmp_path / "p.html").read_text()
    section = html.split('<section id="eval-table">', 1)[1].split("</section>", 1)[0]
    assert 'colspan="3" style="text-align:center">Set5 ×2<' in section
    assert section.index('data-row="bicubic"') < section.index('data-row="i_ln"') < section.index(
        'data-row="token_ln"')
    mean = statistics.mean(psnr("i_ln", s, "sr-x2", "Set5") for s in (0, 1))
    assert f'class="best" data-group="Set5 ×2" data-metric="psnr" data-mean="{mean!r}"' in section
    # a store without eval metrics: no section
    plain = build_dashboard(None, "ablation", paper["uri"], tmp_path / "a.html").read_text()
    assert 'id="eval-table"' not in plain


def test_eval_flag_errors(paper: dict[str, Any]) -> None:
    res = CliRunner().invoke(main, ["report", "paper", "--eval", "--metric", "final/ssim",
                                    "--tracking-uri", paper["uri"]])
    assert res.exit_code == 2 and "--metric and --baseline are for the ablation table" in res.output
    res = _run("report", "ablation", "--eval", "--tracking-uri", paper["uri"])
    assert res.exit_code == 0 and "no cell has eval/… metrics yet: run `ablate eval SPEC.yaml`" in res.stdout
