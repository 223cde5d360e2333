"""The driver's pieces that need no running Ray: the summary's verdict, the names of its folders and a
search space in Ray Tune's terms."""

from __future__ import annotations

from pathlib import Path

from ablate.spec import load_experiment
from ablate.status import CellStatus
from ablate.tune import SweepSummary
from ablate.tune._base import ray_run_name
from ablate.tune._storage import CheckpointStore


def test_a_sweep_is_ok_when_every_cell_finished_or_diverged() -> None:
    summary = SweepSummary("x", "", "sqlite:///m.db", {"a": CellStatus.FINISHED, "b": CellStatus.DIVERGED})
    assert summary.ok
    for bad in (CellStatus.FAILED, CellStatus.PRUNED, CellStatus.KILLED, CellStatus.RUNNING):
        assert not SweepSummary("x", "", "u", {"a": CellStatus.FINISHED, "b": bad}).ok
    assert SweepSummary("x", "", "u", {"a": "finished"}).ok  # plain strings are statuses too


def test_folder_and_run_names_keep_plain_names_and_stay_inside_the_state_folder(tmp_path: Path) -> None:
    store = CheckpointStore.open(None, tmp_path, "quickstart")
    assert Path(store.cell_path("c0ffee")) == tmp_path.resolve() / "checkpoints" / "quickstart" / "c0ffee"
    assert Path(store.ray_storage()[0]) == tmp_path.resolve() / "ray" and store.ray_storage()[1] is None
    outside = CheckpointStore.open(None, tmp_path, "../../x").cell_path("c")
    assert Path(outside).parent.parent == tmp_path.resolve() / "checkpoints"
    assert ray_run_name("norm ablation/v2", "search", "3fa2c1d0e9").startswith("norm-ablation-v2-search-3fa2c1d0e9-")


def test_search_space_in_ray_tune_terms(tmp_path: Path) -> None:
    from ray.tune.search.sample import Categorical, Float, Integer

    from ablate.tune._search import _space

    f = tmp_path / "s.yaml"
    f.write_text("name: s\nnorm: token_ln\nbackbone: swinir-tiny\ntask: sr-x2\nsearch:\n  space:\n"
                 "    train.optimizer.lr: {type: loguniform, low: 1.0e-4, high: 1.0e-2}\n"
                 "    train.ema: {type: uniform, low: 0.0, high: 0.5}\n"
                 "    train.batch_size: {type: int, low: 2, high: 4}\n"
                 "    train.loss: {type: choice, values: [l1, mse]}\n")
    spec = load_experiment(f)
    assert spec.search is not None
    space = _space(spec.search)
    lr, ema, batch, loss = (space[k] for k in ("train.optimizer.lr", "train.ema", "train.batch_size", "train.loss"))
    assert isinstance(lr, Float) and (lr.lower, lr.upper) == (1e-4, 1e-2) and "LogUniform" in repr(lr.sampler)
    assert isinstance(ema, Float) and (ema.lower, ema.upper) == (0.0, 0.5) and "LogUniform" not in repr(ema.sampler)
    assert isinstance(batch, Integer) and (batch.lower, batch.upper) == (2, 5)  # Ray's upper bound is exclusive
    assert isinstance(loss, Categorical) and loss.categories == ["l1", "mse"]
