"""benchmarks/bench_gpu.py runs: its smoke mode (what a machine without CUDA runs) prints one table."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]


@pytest.mark.slow
def test_the_gpu_benchmark_smoke_mode_prints_one_full_table():
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_gpu.py"), "--smoke"], env=env,
                          capture_output=True, text=True, timeout=500, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout.splitlines()
    assert out[0].startswith("smoke mode"), out[0]
    tables = [i for i, line in enumerate(out) if line.startswith("| model |")]
    assert len(tables) == 1, proc.stdout
    rows = [line.split("|")[1:-1] for line in out[tables[0] + 2:] if line.startswith("|")]
    runs = [(model.strip(), norm.strip(), run.strip()) for model, norm, run, *_ in rows]
    for model in ("hat-mini", "swinir-light"):
        for norm in ("token_ln", "i_ln"):
            assert [r for m, n, r in runs if (m, n) == (model, norm) and "GPU" not in r and "compile" not in r] == [
                "bare loop", "Trainer, fixed batch", "Trainer", "Trainer, bf16", "Trainer, fp16"]
    assert ("swinir-light", "token_ln", "Trainer, 2 cells/GPU") in runs
    assert ("hat-mini", "token_ln", "Trainer, compile") in runs
    for cells in rows:
        ms, steps_s, note = cells[3].strip(), cells[4].strip(), cells[9].strip()
        assert float(ms) > 0 and float(steps_s) > 0, cells  # every row measured
        assert "fell back" not in note and "failed" not in note and "not run" not in note, cells
