"""Exactly once, alone: the ledger of (run, key, step) points, and the reader it asks about a run.

    .venv/bin/python -m pytest tests/track/test_ledger.py

The first tests give the ledger a reader over a dict (counting its reads); the last ones read a real
MLflow store written with ``MlflowClient`` directly, through both of RunStore's readers.
"""

from __future__ import annotations

from collections.abc import Collection
from pathlib import Path

from ablate.track import RunStore
from ablate.track._ledger import Ledger


class Store:
    """What a run holds, and every read asked of it."""

    def __init__(self, held: dict[str, dict[str, set[int]]]) -> None:
        self.held = held
        self.reads: list[tuple[str, list[str]]] = []

    def __call__(self, run_id: str, keys: Collection[str]) -> dict[str, set[int]]:
        self.reads.append((run_id, sorted(keys)))
        return {k: steps for k, steps in self.held.get(run_id, {}).items() if k in keys}


def test_a_new_run_is_never_read_and_no_point_passes_twice() -> None:
    store = Store({})
    ledger = Ledger(store)
    ledger.start("r")
    assert ledger.fresh("r", {"loss": 0.5, "psnr": 20.0}, 10) == {"loss": 0.5, "psnr": 20.0}
    assert ledger.fresh("r", {"loss": 0.4, "lr": 1e-3}, 10) == {"lr": 1e-3}  # loss at 10 is held
    assert ledger.fresh("r", {"loss": 0.4}, 20) == {"loss": 0.4}
    assert ledger.fresh("r", {"loss": 0.3}, 20, again=True) == {"loss": 0.3}  # on purpose
    assert store.reads == [] and ledger.reads == 0


def test_a_run_it_did_not_create_is_read_once_per_key() -> None:
    store = Store({"old": {"loss": {0, 5, 10}, "psnr": {10}}})
    ledger = Ledger(store)
    assert ledger.fresh("old", {"loss": 1.0}, 5) == {}
    assert ledger.fresh("old", {"loss": 1.0}, 15) == {"loss": 1.0}
    assert ledger.fresh("old", {"loss": 1.0, "psnr": 21.0, "ssim": 0.6}, 10) == {"ssim": 0.6}
    assert ledger.fresh("old", {"ssim": 0.7}, 10) == {}  # logged above: held now
    assert store.reads == [("old", ["loss"]), ("old", ["psnr", "ssim"])]  # each key read once


def test_a_reused_run_known_whole_is_not_read_and_forget_reads_again() -> None:
    store = Store({"r": {"loss": {0, 5}}})
    ledger = Ledger(store)
    ledger.start("r", {"loss": {0, 5}})
    assert ledger.fresh("r", {"loss": 1.0, "new": 2.0}, 5) == {"new": 2.0}
    assert store.reads == []
    ledger.forget("r")
    assert ledger.fresh("r", {"loss": 1.0}, 5) == {}
    assert store.reads == [("r", ["loss"])]


def test_the_store_reader_answers_for_the_keys_asked(state_dir: Path) -> None:
    """RunStore.points(run_id, keys): what the ledger reads of a run, on SQLite and through the client."""
    from mlflow import MlflowClient
    from mlflow.entities import Metric

    uri = f"sqlite:///{state_dir / 'mlflow.db'}"
    client = MlflowClient(uri)
    run_id = client.create_run(client.create_experiment("ledger")).info.run_id
    metrics = [Metric(key, float(step), 0, step) for key in ("train/loss", "val/psnr", "feat/g0.b0/msq")
               for step in range(0, 30, 10) if key != "val/psnr" or step == 20]
    client.log_batch(run_id, metrics=metrics + [Metric("train/loss", 9.0, 1, 10)])  # one step logged twice
    for store in (RunStore(uri), RunStore(uri, use_sql=False)):
        assert store.points(run_id) == {"train/loss": {0, 10, 20}, "val/psnr": {20}, "feat/g0.b0/msq": {0, 10, 20}}
        assert store.points(run_id, ["val/psnr", "missing"]) == {"val/psnr": {20}}
        assert store.points(run_id, []) == {}
        ledger = Ledger(lambda rid, keys, store=store: store.points(rid, keys))  # type: ignore[misc]
        assert ledger.fresh(run_id, {"val/psnr": 1.0, "train/loss": 1.0, "missing": 1.0}, 20) == {"missing": 1.0}
