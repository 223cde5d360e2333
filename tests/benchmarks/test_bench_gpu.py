"""benchmarks/bench_gpu.py: its smoke mode (what a machine without CUDA runs) prints the full before/after
table; --ops-only counts operators per checkout (equal for two copies of one tree); a stage or a
worker that fails is a row, not a crash; --budget skips what would not fit."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
SCRIPT = ROOT / "benchmarks" / "bench_gpu.py"


def bench(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    return subprocess.run([sys.executable, str(SCRIPT), *args], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


def copy_checkout(dest: Path) -> Path:
    """A second checkout: this tree's ablate package and paper experiments, nothing else."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(ROOT / "ablate", dest / "ablate", ignore=ignore)
    shutil.copytree(ROOT / "experiments" / "paper", dest / "experiments" / "paper", ignore=ignore)
    return dest


def table(out: str, header: str) -> list[list[str]]:
    """The rows of the markdown table whose header line starts with ``header``, as stripped cells."""
    lines = out.splitlines()
    start = [i for i, line in enumerate(lines) if line.startswith(header)]
    assert len(start) == 1, out
    rows = []
    for line in lines[start[0]:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.split("|")[1:-1]])
    return rows[:1] + rows[2:]  # the header, then the rows without the |---| line


def test_ops_only_counts_the_same_operators_in_two_copies_of_one_tree_and_a_bad_norm_is_one_row(tmp_path):
    before = copy_checkout(tmp_path / "before")
    proc = bench("--ops-only", "--smoke", "--root", str(before), "--norms", "token_ln", "i_ln", "no_such_norm",
                 "--json", str(tmp_path / "ops.json"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = table(proc.stdout, "| model | norm | ops fwd+bwd before")
    head, body = rows[0], rows[1:]
    assert [(r[0], r[1]) for r in body] == [(m, n) for m in ("swinir-light", "hat-mini") for n in ("token_ln", "i_ln")]
    col = {name: i for i, name in enumerate(head)}
    for r in body:
        fwd = int(r[col["ops fwd+bwd before"]].replace(",", ""))
        assert fwd > 100 and r[col["ops fwd+bwd after"]] == r[col["ops fwd+bwd before"]], r
        for i in (4, 7, 10):  # fwd+bwd ops, Trainer.step ops, FLOPs: after / before
            assert head[i] == "after / before" and r[i] == "1.000", (head, r)
        if r[1] == "i_ln":  # the counter sees the model: i-LN dispatches more than LN
            assert float(r[col["ops fwd+bwd i_ln / token_ln before"]]) > 1.0, r
    results = json.loads((tmp_path / "ops.json").read_text())["results"]
    sides = {(r["side"], r["model"], r["norm"]): r for r in results}
    for model in ("swinir-light", "hat-mini"):  # each side imported its own checkout
        assert Path(sides["before", model, "token_ln"]["ablate"]).parent == before
        assert Path(sides["after", model, "token_ln"]["ablate"]).parent == ROOT.resolve()
        for side in ("before", "after"):
            assert "no cell with norm 'no_such_norm'" in sides[side, model, "no_such_norm"]["error"]
            assert sides[side, model, "i_ln"]["ops"] > sides[side, model, "i_ln"]["ops_fwdbwd"]  # + Adam, EMA


def test_a_worker_that_dies_is_a_row_and_the_run_goes_on(tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(ROOT / "experiments" / "paper", broken / "experiments" / "paper")
    (broken / "ablate").mkdir()
    (broken / "ablate" / "__init__.py").write_text("import os, sys\nprint('boom: no ablate here', file=sys.stderr)\n"
                                                   "sys.stderr.flush()\nos._exit(3)\n")
    # "after" fails inside its stage (cheaply: an unknown norm), "before" kills its process
    proc = bench("--ops-only", "--smoke", "--root", str(broken), "--models", "swinir-light", "--norms", "nonorm",
                 "--json", str(tmp_path / "d.json"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "before swinir-light nonorm ops-only (CPU): worker exited 3: boom: no ablate here" in proc.stdout
    results = {r["side"]: r for r in json.loads((tmp_path / "d.json").read_text())["results"]}
    assert results["before"]["error"] == "worker exited 3: boom: no ablate here"
    assert results["after"]["error"].startswith("LookupError: ") and "no cell with norm 'nonorm'" in results["after"]["error"]


def test_a_compile_that_falls_back_to_eager_says_so(tmp_path):
    proc = bench("--smoke", "--models", "swinir-light", "--norms", "token_ln", "--runs", "compile",
                 "--compile-backend", "no_such_backend", "--json", str(tmp_path / "c.json"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    (row,) = table(proc.stdout, "| model | norm | run | ms/step |")[1:]
    assert row[2] == "Trainer, compile" and float(row[3]) > 0 and row[-1].startswith("FELL BACK to eager; compile s")
    (result,) = json.loads((tmp_path / "c.json").read_text())["results"]
    assert result["fell_back"] is True and "no_such_backend" in result["note"], result


def test_budget_skips_every_stage_that_would_not_fit(tmp_path):
    proc = bench("--smoke", "--budget", "0", "--models", "swinir-light", "--json", str(tmp_path / "b.json"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads((tmp_path / "b.json").read_text())["results"]
    assert len(results) == 2 * 5 + 3 + 2  # the eager runs of both norms, compile, packing
    assert {r["stage"] for r in results} == {"trainer", "bare", "fixed", "bf16", "tf32", "compile", "compile_bf16",
                                             "pack1", "pack2"}
    assert all(r["error"].startswith("not run: --budget") for r in results), results


@pytest.mark.slow
def test_the_smoke_mode_prints_partial_rows_the_before_after_table_and_the_ratios(tmp_path):
    before = copy_checkout(tmp_path / "before")
    proc = bench("--smoke", "--root", str(before), "--models", "swinir-light", "--json", str(tmp_path / "s.json"),
                 timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert out.splitlines()[0].startswith("smoke mode"), out
    assert "after  swinir-light token_ln Trainer: " in out  # a partial row, printed as it came
    rows = table(out, "| model | norm | run | ms before | ms after |")
    col = {name: i for i, name in enumerate(rows[0])}
    runs = {(r[1], r[2]): r for r in rows[1:]}
    eager = ["bare loop", "Trainer, fixed batch", "Trainer", "Trainer, TF32", "Trainer, bf16"]
    for norm in ("token_ln", "i_ln"):
        assert [run for n, run in runs if n == norm and run in eager] == eager
        for run in eager:  # every eager row of "after" measured, with its counts
            r = runs[norm, run]
            assert float(r[col["ms after"]]) > 0 and int(r[col["ops/step after"]].replace(",", "")) > 0, r
    lean = {("token_ln", "Trainer"), ("token_ln", "bare loop"), ("token_ln", "Trainer, bf16"),
            ("i_ln", "Trainer"), ("i_ln", "bare loop"), ("token_ln", "Trainer, compile")}
    for key, r in runs.items():
        has_before = r[col["ms before"]] != ""
        assert has_before == (key in lean), (key, r)
        if has_before:
            assert float(r[col["after / before"]]) > 0, r
    for run in ("Trainer, compile", "Trainer, compile, bf16", "Trainer, 1 cell/GPU", "Trainer, 2 cells/GPU"):
        r = runs["token_ln", run]
        assert float(r[col["ms after"]]) > 0 and "FELL BACK" not in r[col["note"]], r
    assert "compile s" in runs["token_ln", "Trainer, compile"][col["note"]]
    ratios = {(r[0], r[1]): r for r in table(out, "| ratio | model | before | after |")[1:]}
    for label in ("i_ln / token_ln, Trainer", "bf16 / fp32 (token_ln)", "compile / eager (token_ln)",
                  "Trainer fixed batch / bare loop (token_ln)", "Trainer real data / fixed batch (token_ln)"):
        assert float(ratios[label, "swinir-light"][3]) > 0, label
    counts = table(out, "| model | norm | ops fwd+bwd before")[1:]
    assert [r[4] for r in counts] == ["1.000", "1.000"], counts  # the same code: the same operators
    results = json.loads((tmp_path / "s.json").read_text())["results"]
    assert not [r for r in results if r.get("error")], [r for r in results if r.get("error")]


def _bench_module():
    """benchmarks/bench_gpu.py imported as a module (it is a script, not in a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_gpu", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["bench_gpu"] = mod  # its dataclasses look their module up
    try:
        spec.loader.exec_module(mod)
    finally:
        del sys.modules["bench_gpu"]
    return mod


def test_a_measured_run_gives_each_eager_run_its_process_and_smoke_mode_one_per_model_and_norm(tmp_path):
    import argparse

    mod = _bench_module()
    args = argparse.Namespace(models=["swinir-light"], norms=["token_ln", "i_ln"], ops_only=False, profile=False,
                              before="lean", runs=list(mod.RUN_KEYS), no_compile=False, no_packing=False)
    sides = {"before": tmp_path / "before", "after": ROOT}
    measured = mod.plan_jobs(args, mod.FULL, sides)
    smoke = mod.plan_jobs(args, mod.FULL, sides, smoke=True)
    main = [j for j in measured if j.lane == "main"]
    assert all(len(j.items) == 1 for j in measured) and len(main) == 2 * 5 + 3 + 2
    assert [j.items[0][2] for j in measured if j.lane == "compile"] == ["compile", "compile", "compile",
                                                                         "compile_bf16"]
    grouped = {(j.side, *j.items[0][:2]): [stage for _, _, stage in j.items] for j in smoke if j.lane == "main"}
    assert grouped == {
        ("after", "swinir-light", "token_ln"): ["trainer", "bare", "fixed", "bf16", "compile", "compile_bf16", "tf32"],
        ("after", "swinir-light", "i_ln"): ["trainer", "bare", "fixed", "bf16", "compile", "tf32"],
        ("before", "swinir-light", "token_ln"): ["trainer", "bare", "bf16", "compile"],
        ("before", "swinir-light", "i_ln"): ["trainer", "bare"]}
    # the same items in both; packing keeps its processes
    assert sorted(i for j in smoke for i in j.items) == sorted(i for j in measured for i in j.items)
    assert [j.items for j in smoke if j.lane != "main"] == [j.items for j in measured if j.lane == "pack"]
    # a compile run with no eager run of its model and norm keeps a process of its own in smoke mode too
    args.runs = ["compile"]
    assert [(j.lane, j.items) for j in mod.plan_jobs(args, mod.FULL, sides, smoke=True)] == [
        ("compile", [("swinir-light", "token_ln", "compile")]), ("compile", [("swinir-light", "token_ln", "compile")]),
        ("compile", [("swinir-light", "i_ln", "compile")])]


def test_a_stage_finds_its_own_stderr_lines(tmp_path):
    mod = _bench_module()
    first, eager, compiled, tf32 = (("m", "n", s) for s in ("trainer", "bf16", "compile", "tf32"))
    err = tmp_path / "w.err"
    err.write_text("\n".join(["import noise: graph break at startup", mod.stage_mark(first), "a trainer line",
                               mod.stage_mark(eager), "bf16 said: graph break in autocast", mod.stage_mark(compiled),
                               "torch._dynamo: falling back to eager", mod.stage_mark(tf32), "tf32 line"]))
    assert mod.first_match(err, mod.FALLBACK, compiled) == "torch._dynamo: falling back to eager"
    assert mod.first_match(err, mod.COMPILE_WARNING, compiled) == ""  # bf16's graph break is not compile's
    assert mod.first_match(err, mod.COMPILE_WARNING, eager) == "bf16 said: graph break in autocast"
    assert mod.first_match(err, mod.COMPILE_WARNING, first) == "import noise: graph break at startup"
    assert mod.first_match(err, mod.FALLBACK, tf32) == ""
    assert mod.first_match(err, mod.FALLBACK, ("m", "n", "compile_bf16")) == ""  # never started
    assert mod.first_match(err, mod.FALLBACK) == "torch._dynamo: falling back to eager"
