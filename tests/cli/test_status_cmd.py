"""`ablate status`: every cell of a file with its status and headline metrics, read from MLflow.

    .venv/bin/python -m pytest tests/cli/test_status_cmd.py

The sweep behind it is real (``run_sweep`` on a local Ray into a SQLite MLflow store, two tiny
cells); the status command runs through click's CliRunner.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from ablate.cli import main
from ablate.spec import expand, load_experiment

NAME = "status-demo"
CELLS = """\
backbone: {name: swinir-tiny, embed_dim: 16, depths: [1, 1], num_heads: 2, window_size: 4}
task: sr-x2
train: {steps: 10, batch_size: 2, patch_size: 16, val_size: 32, eval_every: 10, lowprec_eval: false}
probes: {every: 5, patch_size: 16}
resources: {max_concurrent: 1}  # one trial worker process: these tests check no concurrency
"""
GRID = f"name: {NAME}\ngrid:\n  norm: [token_ln, global_ln]\n{CELLS}"
EXTENDED = f"name: {NAME}\ngrid:\n  norm: [token_ln, global_ln]\n  seed: [0, 1]\n{CELLS}"


@pytest.fixture(scope="module")
def folder(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A folder with grid.yaml, extended.yaml and state/ holding an empty MLflow SQLite store."""
    from ablate.testing.synthetic import prepared_store

    base = tmp_path_factory.mktemp("status")
    (base / "grid.yaml").write_text(GRID)
    (base / "extended.yaml").write_text(EXTENDED)
    cache = getattr(request.config, "cache", None)
    prepared_store(base / "state", cache.mkdir("ablate-mlflow") if cache is not None else base / "template")
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)  # would outrank --state-dir's store
        mp.delenv("RAY_ADDRESS", raising=False)
        yield base


def _status(folder: Path, file: str) -> tuple[list[dict[str, str]], str]:
    result = CliRunner().invoke(main, ["status", str(folder / file), "--state-dir", str(folder / "state")])
    assert result.exit_code == 0, result.output
    return _parse_table(result.output), result.output


def _parse_table(output: str) -> list[dict[str, str]]:
    """Rows of the fixed-width table: the dashes line under the header gives each column's span."""
    lines = output.splitlines()
    i = next(n for n, line in enumerate(lines) if line.startswith("---"))
    spans, start = [], 0
    for dashes in lines[i].split("  "):
        spans.append((start, start + len(dashes)))
        start += len(dashes) + 2
    spans[-1] = (spans[-1][0], None)  # the last column may run past its dashes
    names = [lines[i - 1][a:b].strip() for a, b in spans]
    rows = []
    for line in lines[i + 1:]:
        if not line.strip() or line.startswith(f"{NAME}:"):
            break
        rows.append({n: line[a:b].strip() for n, (a, b) in zip(names, spans)})
    return rows


def test_status_before_any_run_is_pending(folder: Path) -> None:
    rows, output = _status(folder, "grid.yaml")
    cells = expand(load_experiment(folder / "grid.yaml"))
    assert [r["cell"] for r in rows] == [c.id for c in cells]
    assert [r["norm"] for r in rows] == ["token_ln", "global_ln"]
    assert all(r["status"] == "pending" and r["psnr"] == "" and r["reason"] == "" for r in rows)
    assert f"{NAME}: 2 pending  (sqlite:///{(folder / 'state' / 'mlflow.db').resolve()})" in output


@pytest.mark.slow
def test_status_after_a_sweep_lists_status_and_psnr(folder: Path, ray_session: None) -> None:
    from mlflow import MlflowClient

    from ablate.tune import SweepOptions, run_sweep

    summary = run_sweep(load_experiment(folder / "grid.yaml"),
                        SweepOptions(state_dir=folder / "state", stream=io.StringIO(), dashboard=False))
    assert set(summary.statuses.values()) == {"finished"}
    client = MlflowClient(tracking_uri=summary.tracking_uri)
    exp = client.get_experiment_by_name(NAME)
    assert exp is not None
    logged = {r.data.tags["ablate.cell"]: r.data.metrics
              for r in client.search_runs([exp.experiment_id]) if "ablate.cell" in r.data.tags}

    rows, output = _status(folder, "grid.yaml")
    assert [r["cell"] for r in rows] == [c.id for c in expand(load_experiment(folder / "grid.yaml"))]
    assert set(logged) == set(summary.statuses)
    for row in rows:
        m = logged[row["cell"]]
        assert row["status"] == "finished"
        assert row["psnr"] == f"{m['final/psnr']:.2f}" and row["ssim"] == f"{m['final/ssim']:.4f}"
        assert row["max msq"] == f"{m['final/max_msq']:.3g}"
        assert row["psnr fp16"] == ""  # lowprec_eval: false
        assert row["seed"] == "0" and row["task"] == "sr-x2"
    assert f"{NAME}: 2 finished  (" in output

    # a grid extended with a seed: the finished cells keep their rows, the new ones are pending
    rows, output = _status(folder, "extended.yaml")
    by_cell = {r["cell"]: r for r in rows}
    assert len(rows) == 4
    assert all(by_cell[cid]["status"] == "finished" for cid in summary.statuses)
    assert sorted(r["seed"] for r in rows if r["status"] == "pending") == ["1", "1"]
    assert f"{NAME}: 2 finished, 2 pending  (" in output
