"""``run_sweep`` end to end: a real local Ray runs a 2×2 grid, a real SQLite MLflow store records it.

    .venv/bin/python -m pytest tests/tune/test_sweep_e2e.py

Cells are tiny (a 16-channel, 2-block SwinIR, 20 steps on 16-pixel patches) so the grid runs in
seconds; what is checked is the layout the rest of ablate reads back (architecture.md, Tracking):
one parent run per sweep, one child per cell with its tags, params, metric histories, summary
metrics and artifacts, and the skip-finished-cells rule on a rerun and on an extended grid.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image

from ablate.spec import expand, load_experiment
from ablate.tune import SweepOptions, SweepSummary, run_sweep

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("ray_session", "no_tracking_env")]

NAME = "e2e-grid"
CELLS = """\
backbone: {name: swinir-tiny, embed_dim: 16, depths: [1, 1], num_heads: 2, window_size: 4}
task: sr-x2
train: {steps: 20, batch_size: 2, patch_size: 16, val_size: 32, eval_every: 10, lowprec_eval: false}
probes: {every: 5, patch_size: 16}
resources: {max_concurrent: 1}  # one trial worker process: these tests check no concurrency
"""
GRID = f"""\
name: {NAME}
grid:
  norm: [token_ln, global_ln]
  rescale: [false, true]
{CELLS}"""
# the same grid plus a seed axis; seed 0 is the default, so the first four cells keep their ids and
# only the two new token_ln cells of seed 1 should run (the exclude keeps the test to one Ray round)
EXTENDED = f"""\
name: {NAME}
grid:
  norm: [token_ln, global_ln]
  rescale: [false, true]
  seed: [0, 1]
exclude:
  - {{seed: 1, norm: global_ln}}
{CELLS}"""
STATS = ("msq", "maxabs", "entropy", "top1")


class Sweep:
    """The first sweep of the module: its files, summary, output and an MLflow client on its store."""

    def __init__(self, yaml_path: Path, state: Path, summary: SweepSummary, output: str) -> None:
        from mlflow import MlflowClient

        self.yaml_path, self.state, self.summary, self.output = yaml_path, state, summary, output
        self.client = MlflowClient(tracking_uri=summary.tracking_uri)
        self.cells = {c.id: c for c in expand(load_experiment(yaml_path))}

    def runs(self) -> list[Any]:
        exp = self.client.get_experiment_by_name(NAME)
        assert exp is not None, f"no MLflow experiment {NAME!r}"
        return self.client.search_runs([exp.experiment_id], max_results=1000)

    def children(self, parent: str | None = None) -> list[Any]:
        return [r for r in self.runs() if "ablate.cell" in r.data.tags
                and (parent is None or r.data.tags.get("mlflow.parentRunId") == parent)]

    def history(self, run_id: str, key: str) -> list[tuple[int, float]]:
        return sorted((m.step, m.value) for m in self.client.get_metric_history(run_id, key))

    def artifacts(self, run_id: str, folder: str) -> list[str]:
        return sorted(a.path for a in self.client.list_artifacts(run_id, folder))

    def download(self, run_id: str, path: str, dst: Path) -> Path:
        dst.mkdir(parents=True, exist_ok=True)
        return Path(self.client.download_artifacts(run_id, path, str(dst)))


@pytest.fixture(scope="module")
def sweep(fresh_state: Any, tmp_path_factory: pytest.TempPathFactory) -> Sweep:
    state = fresh_state("sweep")
    yaml_path = state.parent / "grid.yaml"
    yaml_path.write_text(GRID)
    stream = io.StringIO()
    summary = run_sweep(load_experiment(yaml_path), SweepOptions(state_dir=state, stream=stream))
    return Sweep(yaml_path, state, summary, stream.getvalue())


def _probe_sites(cell: Any) -> list[str]:
    from ablate.backbones import build_backbone
    from ablate.tasks import resolve_task

    model = build_backbone(cell.backbone, cell.norm_variant(),
                           resolve_task(cell.task).scale)
    return list(model.probe_sites())


def test_summary_reports_every_cell_finished(sweep: Sweep) -> None:
    s = sweep.summary
    assert len(sweep.cells) == 4
    assert s.statuses == {cid: "finished" for cid in sweep.cells}, sweep.output
    assert s.ok and s.skipped == [] and set(s.cell_s) == set(sweep.cells)
    assert s.experiment == NAME
    assert s.tracking_uri == "sqlite:///" + (sweep.state / "mlflow.db").resolve().as_posix()
    assert s.dashboard is not None and s.dashboard.is_file()
    assert "running 4 cells" in sweep.output and "4/4 cells done" in sweep.output


def test_one_parent_with_four_children(sweep: Sweep) -> None:
    parents = [r for r in sweep.runs() if r.data.tags.get("ablate.sweep") == "1"]
    assert [p.info.run_id for p in parents] == [sweep.summary.parent_run_id]
    parent = parents[0]
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["ablate.status"] == "finished" and parent.data.tags["ablate.cells"] == "4"
    children = sweep.children()
    assert len(children) == 4
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parent.info.run_id}
    assert sorted(r.data.tags["ablate.cell"] for r in children) == sorted(sweep.cells)


def test_children_tags_params_and_summary_metrics(sweep: Sweep) -> None:

    labels = set()
    for run in sweep.children():
        tags, params, metrics = run.data.tags, run.data.params, run.data.metrics
        cell = sweep.cells[tags["ablate.cell"]]
        assert run.info.status == "FINISHED"
        assert tags["ablate.status"] == "finished" and tags["ablate.reason"] == ""
        assert tags["ablate.norm"] == cell.norm_label()
        assert tags["ablate.pairing"] == cell.pairing_key
        labels.add(tags["ablate.norm"])
        # params are the flattened cell config, stringified
        flat = cell.flat_params()
        assert set(params) == set(flat)
        assert params["norm"] == cell.norm.name and params["rescale"] == str(cell.rescale)
        assert params["train.steps"] == "20" and params["backbone.embed_dim"] == "16"
        for key in ("final/psnr", "final/ssim", "best/psnr", "final/max_msq", "ref/psnr_input"):
            assert key in metrics and math.isfinite(metrics[key]), (key, metrics)
        assert 5 < metrics["final/psnr"] < 60 and 0 < metrics["final/ssim"] <= 1
        assert "final/psnr_fp16" not in metrics  # lowprec_eval: false
    # the four variants are distinct cells, not one cell logged four times
    assert labels == {"token_ln", "token_ln+rescale", "global_ln", "global_ln+rescale"}


def test_children_metric_histories(sweep: Sweep) -> None:
    for run in sweep.children():
        rid = run.info.run_id
        cell = sweep.cells[run.data.tags["ablate.cell"]]
        loss = sweep.history(rid, "train/loss")
        assert len(loss) >= 2 and loss[-1][0] == 20, loss
        assert all(v > 0 and math.isfinite(v) for _, v in loss)
        psnr = sweep.history(rid, "val/psnr")
        assert [s for s, _ in psnr] == [10, 20]  # eval_every 10 and the last step
        # the final evaluation and the step-20 one evaluate the same (non-EMA) model
        assert psnr[-1][1] == pytest.approx(run.data.metrics["final/psnr"], abs=1e-9)
        sites = _probe_sites(cell)
        assert sites[-1] == "final" and len(sites) >= 3
        for site in sites:
            msq = sweep.history(rid, f"feat/{site}/msq")
            assert [s for s, _ in msq] == [0, 5, 10, 15, 20], (site, msq)  # step 0: the untrained model
            assert all(v > 0 and math.isfinite(v) for _, v in msq)
            for stat in STATS[1:]:
                assert sweep.history(rid, f"feat/{site}/{stat}"), (site, stat)


def test_children_artifacts(sweep: Sweep, tmp_path: Path) -> None:
    for run in sweep.children():
        rid, cid = run.info.run_id, run.data.tags["ablate.cell"]
        assert sweep.artifacts(rid, "samples") == ["samples/samples.png"]
        assert sweep.artifacts(rid, "checkpoint") == ["checkpoint/state.pt"]
        assert sweep.artifacts(rid, "plots") == ["plots/divergence.png"]
        with Image.open(sweep.download(rid, "samples/samples.png", tmp_path / cid)) as img:
            img.load()
            assert img.mode == "RGB" and img.width > img.height  # input | restoration | truth per row
        with Image.open(sweep.download(rid, "plots/divergence.png", tmp_path / cid)) as img:
            img.load()
        state = torch.load(sweep.download(rid, "checkpoint/state.pt", tmp_path / cid), map_location="cpu",
                           weights_only=False)
        assert state["step"] == 20 and state["cell"] == sweep.cells[cid].to_config()


def test_parent_artifacts(sweep: Sweep, tmp_path: Path) -> None:
    parent = sweep.summary.parent_run_id
    assert sweep.artifacts(parent, "spec") == ["spec/experiment.yaml"]
    assert sweep.download(parent, "spec/experiment.yaml", tmp_path).read_text() == GRID
    assert sweep.artifacts(parent, "plan") == ["plan/plan.csv", "plan/plan.json"]
    plan = json.loads(sweep.download(parent, "plan/plan.json", tmp_path).read_text())
    assert [row["id"] for row in plan] == list(sweep.cells)  # the cells in plan order
    dashboards = sweep.artifacts(parent, "dashboard")
    assert len(dashboards) == 1 and dashboards[0].endswith(".html")
    html = sweep.download(parent, dashboards[0], tmp_path).read_text()
    assert html.lstrip().lower().startswith("<!doctype html") and NAME in html


def test_rerun_skips_finished_cells_and_extension_runs_only_new_ones(sweep: Sweep) -> None:
    # runs last in this module: it adds runs (the tests above select the first sweep's by parent)
    first_ids = list(sweep.cells)
    stream = io.StringIO()
    again = run_sweep(load_experiment(sweep.yaml_path), SweepOptions(state_dir=sweep.state, stream=stream))
    assert again.skipped == first_ids
    assert again.statuses == {cid: "finished" for cid in first_ids}
    assert again.cell_s == {} and again.dashboard is None
    assert "4 of 4 cells already finished" in stream.getvalue()
    assert len(sweep.children()) == 4 and sweep.children(again.parent_run_id) == []

    extended = sweep.yaml_path.with_name("extended.yaml")
    extended.write_text(EXTENDED)
    ext_ids = [c.id for c in expand(load_experiment(extended))]
    new_ids = [cid for cid in ext_ids if cid not in sweep.cells]
    assert set(first_ids) < set(ext_ids) and len(new_ids) == 2  # the premise: old cells keep their ids
    more = run_sweep(load_experiment(extended), SweepOptions(state_dir=sweep.state, stream=io.StringIO(),
                                                             dashboard=False))
    assert sorted(more.skipped) == sorted(first_ids)
    assert set(more.cell_s) == set(new_ids)  # only the new cells ran
    assert more.statuses == {cid: "finished" for cid in ext_ids}
    children = sweep.children()
    assert len(children) == 6
    assert sorted(r.data.tags["ablate.cell"] for r in children) == sorted(ext_ids)  # one run per cell
    new_runs = sweep.children(more.parent_run_id)
    assert sorted(r.data.tags["ablate.cell"] for r in new_runs) == sorted(new_ids)
    assert all(r.data.params["seed"] == "1" and r.data.tags["ablate.status"] == "finished" for r in new_runs)
