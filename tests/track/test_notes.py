"""Run descriptions (Markdown in ``mlflow.note.content``): content, order, escaping and the 8,000-character cap."""

from __future__ import annotations

import math
import re
from typing import Any

from ablate.track._notes import (
    MAX_ROWS,
    NOT_RUN,
    cell_info,
    cell_note,
    plan_note,
    results_note,
    results_rows,
    text,
)

MLFLOW_TAG_LIMIT = 8000


def _plan(n: int) -> list[dict[str, Any]]:
    norms = ("token_ln", "global_ln", "batch_norm", "i_ln")
    return [{"id": f"c{i:04d}", "norm": norms[i % 4], "rescale": i % 4 == 1 or None, "backbone": "swinir-tiny",
             "task": "sr-x2", "seed": i // 4} for i in range(n)]


def _run(cell: str, status: str, parent: str = "sweep-1", norm: str = "token_ln",
         metrics: dict[str, float] | None = None) -> dict[str, Any]:
    return {"cell": cell, "status": status, "norm": norm, "parent_run_id": parent, "params": {},
            "metrics": metrics or {}}


def _table_rows(note: str) -> list[list[str]]:
    rows = [line for line in note.splitlines() if line.startswith("| ")]
    return [[c.strip() for c in line.strip("|").split(" | ")] for line in rows[1:]]  # without the header


def test_plan_note_lists_every_cell_with_its_identity() -> None:
    note = plan_note("quick", _plan(3))
    assert note.startswith("### Plan of `quick`") and "**3 cells** · sweep running" in note
    header, *rows = [line for line in note.splitlines() if line.startswith("| ")]
    assert header == "| cell | norm | rescale | backbone | task | seed |"
    assert rows[1] == "| `c0001` | `global_ln` | True | `swinir-tiny` | `sr-x2` | 0 |"
    assert "more not shown" not in note


def test_notes_stay_under_mlflows_tag_limit_for_hundreds_of_cells() -> None:
    plan = _plan(250)
    note = plan_note("big", plan)
    assert len(note) < MLFLOW_TAG_LIMIT and "**250 cells**" in note
    shown = len(_table_rows(note))
    assert shown <= MAX_ROWS and f"_{250 - shown} more not shown: artifact `plan/plan.csv`_" in note

    statuses = ["finished"] * 200 + ["diverged"] * 30 + ["failed"] * 10
    runs = [_run(p["id"], s, metrics={"final/psnr": 33.0, "final/ssim": 0.9, "final/max_msq": 1e13,
                                      "final/deep_entropy": 2.5}) for p, s in zip(plan, statuses)]
    note = results_note("big", results_rows(plan, runs, "sweep-1"), "finished")
    assert len(note) < MLFLOW_TAG_LIMIT
    # the counts cover every cell, the table only its head
    assert "**250 cells** · 200 finished · 30 diverged · 10 failed · 10 not run · sweep finished" in note
    rows = _table_rows(note)
    assert rows[0][:6] == ["`c0000`", "`token_ln`", "`swinir-tiny`", "`sr-x2`", "0", "finished"]
    assert rows[0][6:] == ["33.00", "0.9000", "1e+13", "2.500"]
    assert re.search(rf"_{250 - len(rows)} more not shown: `ablate report big` lists every cell_", note)


def test_results_rows_follow_the_plan_and_mark_cells_that_never_ran() -> None:
    plan = _plan(4)
    runs = [_run("c0002", "diverged", norm="batch_norm", metrics={"final/max_msq": math.inf}),
            _run("c0000", "finished", parent="older-sweep", metrics={"final/psnr": 33.2})]
    rows = results_rows(plan, runs, "sweep-1")
    assert [r["cell"] for r in rows] == ["c0000", "c0001", "c0002", "c0003"]
    assert [r["status"] for r in rows] == ["finished", NOT_RUN, "diverged", NOT_RUN]
    assert rows[1]["variant"] == "global_ln+rescale"  # from the plan: it has no run
    assert rows[0]["metrics"] == {"final/psnr": 33.2}
    note = results_note("quick", rows, "killed")
    assert "| `c0002` | `batch_norm` | `swinir-tiny` | `sr-x2` | 0 | **diverged** | – | – | inf | – |" in note


def test_a_search_lists_its_trials_instead_of_its_base_cells() -> None:
    plan = _plan(1)  # the base cell: a template, never run itself
    runs = [_run("t1", "finished", metrics={"final/psnr": 33.0}), _run("t2", "pruned"),
            _run("other", "finished", parent="another-sweep")]
    rows = results_rows(plan, runs, "sweep-1")
    assert [(r["cell"], r["status"]) for r in rows] == [("t1", "finished"), ("t2", "pruned")]


def test_free_text_cannot_break_the_markdown() -> None:
    assert text("a|b <script> *x* `y` [z](u) snake_case") == (
        r"a&#124;b &lt;script&gt; \*x\* \`y\` \[z\](u) snake\_case")
    assert text("two\nlines") == "two lines"
    note = cell_note({"cell": "c1", "norm": "a|b"}, "failed", "ValueError: x | y\n<tb>")
    rows = _table_rows(note)
    assert all(len(r) == 2 for r in rows)  # no pipe split a row
    assert ["reason", "ValueError: x &#124; y &lt;tb&gt;"] in rows and ["status", "**failed**"] in rows


def test_cell_note_says_what_the_cell_is_and_how_it_ended() -> None:
    params = {"norm.name": "global_ln", "norm.eps": 1e-6, "rescale": True, "backbone": "swinir-tiny",
              "task": "sr-x2", "seed": 2, "data.name": "folder", "data.path": "/data/x", "train.steps": 10}
    info = cell_info("c0ffee", params, {"ablate.norm": "global_ln+rescale"})
    assert info == {"cell": "c0ffee", "variant": "global_ln+rescale", "norm": "global_ln", "rescale": True,
                    "backbone": "swinir-tiny", "task": "sr-x2", "seed": 2, "data": "folder"}
    running = _table_rows(cell_note(info, "running"))
    assert running[0] == ["status", "running"] and ["seed", "2"] in running and ["norm", "`global_ln`"] in running
    done = cell_note(info, "finished", "", {"final/psnr": 33.456, "final/ssim": None, "steps": 10.0})
    assert done.startswith("| cell | `c0ffee` |") and ["final PSNR (dB)", "33.46"] in _table_rows(done)
    assert "final SSIM" not in done
