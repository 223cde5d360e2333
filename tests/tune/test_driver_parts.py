"""The driver's pieces that need no running Ray: the summary's verdict, the names of its folders and a
search space in Ray Tune's terms."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ablate.spec import load_experiment
from ablate.status import CellStatus
from ablate.tune import SweepSummary
from ablate.tune._setup import ray_run_name
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


def test_search_space_in_optuna_terms(tmp_path: Path) -> None:
    """Each dimension becomes the Optuna distribution of its type (the studies sample through Optuna)."""
    import optuna
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    from ablate.tune._studies import _suggest

    f = tmp_path / "s.yaml"
    f.write_text("name: s\nnorm: token_ln\nbackbone: swinir-tiny\ntask: sr-x2\nsearch:\n  space:\n"
                 "    train.optimizer.lr: {type: loguniform, low: 1.0e-4, high: 1.0e-2}\n"
                 "    train.ema: {type: uniform, low: 0.0, high: 0.5}\n"
                 "    train.batch_size: {type: int, low: 2, high: 4}\n"
                 "    train.loss: {type: choice, values: [l1, mse]}\n")
    spec = load_experiment(f)
    assert spec.search is not None
    trial = optuna.create_study().ask()
    _suggest(trial, spec.search.space, {})
    dist = trial.distributions
    lr, ema, batch, loss = (dist[k] for k in ("train.optimizer.lr", "train.ema", "train.batch_size", "train.loss"))
    assert isinstance(lr, FloatDistribution) and (lr.low, lr.high, lr.log) == (1e-4, 1e-2, True)
    assert isinstance(ema, FloatDistribution) and (ema.low, ema.high, ema.log) == (0.0, 0.5, False)
    assert isinstance(batch, IntDistribution) and (batch.low, batch.high) == (2, 4)  # Optuna's high is inclusive
    assert isinstance(loss, CategoricalDistribution) and loss.choices == ("l1", "mse")


# failures and exactly-once logging, without Ray running ----------------------------------------------
TINY_CELL = {"norm": "token_ln", "backbone": {"name": "swinir-tiny", "embed_dim": 16, "depths": [1, 1],
                                              "num_heads": 2, "window_size": 4},
             "task": "sr-x2", "train": {"steps": 40, "batch_size": 2, "patch_size": 16}}


def test_failures_are_classed_by_what_raised_them() -> None:
    from ray.exceptions import ActorDiedError, OutOfMemoryError, RayTaskError

    from ablate.errors import DataError
    from ablate.spec import CellSpec
    from ablate.tune._failure import Failure, in_trial, of_ray_error

    cell = CellSpec.from_config(TINY_CELL)
    failure, reason = in_trial(MemoryError("cannot allocate"), cell)
    assert failure is Failure.OOM
    assert reason.startswith("oom: out of memory with train.batch_size 2, train.patch_size 16, model swinir-tiny")
    assert "MemoryError: cannot allocate" in reason
    assert in_trial(RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"), cell)[0] is Failure.OOM
    assert in_trial(RuntimeError("DefaultCPUAllocator: not enough memory"), cell)[0] is Failure.OOM
    try:
        raise ValueError("a bug")
    except ValueError as err:
        failure, reason = in_trial(err, cell)
    assert failure is Failure.CRASH and reason.startswith("crash: ValueError: a bug (test_driver_parts.py:")
    assert in_trial(DataError("img.png is truncated"), cell) == (Failure.CRASH, "crash: img.png is truncated")

    assert of_ray_error(None) is Failure.PREEMPTED
    assert of_ray_error(ActorDiedError()) is Failure.PREEMPTED  # SIGKILL, SIGTERM, a lost node
    assert of_ray_error(OutOfMemoryError("Task was killed due to the node running low on memory.")) is Failure.OOM
    try:
        raise KeyError("k")
    except KeyError as err:
        assert of_ray_error(RayTaskError("cell_trial", "tb", err)) is Failure.CRASH


class _Trial:
    """What the callback reads of a Ray Tune trial."""

    def __init__(self, trial_id: str, cell_id: str, error: BaseException | None = None) -> None:
        self.trial_id, self.config, self.error = trial_id, {"cell_id": cell_id}, error
        self.pickled_error_file, self.num_failures = None, 4

    def get_pickled_error(self) -> BaseException | None:
        return self.error


def test_each_point_reaches_mlflow_once_across_a_killed_driver_and_a_retry(
        fresh_state: Any, tmp_path: Path) -> None:
    """A driver dies with points in its buffer; the next one reuses the run, gets the trial's replay and
    re-reports of steps MLflow already has; then a worker dies and the retry replays again."""
    import io

    from ray.exceptions import ActorDiedError

    from ablate.spec import CellSpec
    from ablate.track import RunStore, Tracker
    from ablate.tune._callback import SweepCallback
    from ablate.tune._trial import CELL, FINAL, REPLAY, STATUS, STEP

    state = fresh_state("exactly-once")
    cell = CellSpec.from_config(TINY_CELL)
    points = {s: {"train/loss": 1.0 / (s + 1), "feat/final/msq": float(s)} for s in range(5, 45, 5)}
    points[0] = {"ref/psnr_input": 20.0, "feat/final/msq": 1.0}

    def callback(tracker: Tracker) -> SweepCallback:
        parent = tracker.start_sweep("exactly-once", "h", "", [])
        return SweepCallback(tracker, parent, {cell.id: cell.to_config()},
                             CheckpointStore.open(None, tmp_path, "exactly-once"), stream=io.StringIO(), max_retries=3)

    def report(cb: SweepCallback, trial: _Trial, step: int) -> None:
        cb.on_trial_result(0, [], trial, {STEP: step, CELL: cell.id, **points[step]})

    def replay(cb: SweepCallback, trial: _Trial, upto: int) -> None:
        history = [{"step": s, **points[s]} for s in sorted(points) if s <= upto]
        cb.on_trial_result(0, [], trial, {CELL: cell.id, REPLAY: history})

    first = callback(Tracker(None, state))
    trial = _Trial("t1", cell.id)
    first.on_trial_start(0, [], trial)
    for step in (0, 5, 10, 15):
        report(first, trial, step)
    first.tracker.flush()
    report(first, trial, 20)  # buffered when the driver dies (the trial checkpointed at 20: a gap)
    run_id = first.runs[cell.id]

    second = callback(Tracker(None, state))
    trial = _Trial("t2", cell.id)
    second.on_trial_start(0, [], trial)
    assert second.runs[cell.id] == run_id  # the same run, continued
    replay(second, trial, 20)
    report(second, trial, 25)
    second.tracker.flush()
    report(second, trial, 30)
    # the worker dies after the checkpoint at 20: Ray retries the trial, which replays and re-reports 25, 30
    trial.error, trial.num_failures = ActorDiedError(), 1
    second.on_trial_recover(0, [], trial)
    replay(second, trial, 20)
    for step in (25, 30, 35, 40):
        report(second, trial, step)
    second.on_trial_result(0, [], trial, {STEP: 40, CELL: cell.id, FINAL: 1, STATUS: "finished",
                                          "ref/psnr_input": 20.0, "final/psnr": 25.0, "steps": 40})
    second.close()

    store = RunStore(second.tracker.tracking_uri)
    logged = store.points(run_id)
    assert logged == {"train/loss": set(range(5, 45, 5)), "feat/final/msq": set(range(0, 45, 5)),
                      "ref/psnr_input": {0, 40}, "final/psnr": {40}, "steps": {40}}
    from mlflow import MlflowClient

    client = MlflowClient(second.tracker.tracking_uri)
    for key, steps in logged.items():
        history = client.get_metric_history(run_id, key)
        assert sorted(m.step for m in history) == sorted(steps), key  # no step twice
    tags = client.get_run(run_id).data.tags
    assert tags["ablate.attempt"] == "3" and tags["ablate.status"] == "finished"  # resumed once, retried once
    assert tags["ablate.failure"] == "" and tags["ablate.reason"] == ""
    assert "retry 1 of 3" in second.stream.getvalue()  # type: ignore[attr-defined]


def test_a_worker_lost_more_often_than_allowed_fails_as_preempted(fresh_state: Any, tmp_path: Path) -> None:
    import io

    from ray.exceptions import ActorDiedError

    from ablate.spec import CellSpec
    from ablate.track import Tracker
    from ablate.tune._callback import SweepCallback

    tracker = Tracker(None, fresh_state("lost"))
    cell = CellSpec.from_config(TINY_CELL)
    cb = SweepCallback(tracker, tracker.start_sweep("lost", "h", "", []), {cell.id: cell.to_config()},
                       CheckpointStore.open(None, tmp_path, "lost"), stream=io.StringIO(), max_retries=3)
    cb.on_trial_error(0, [], _Trial("t1", cell.id, ActorDiedError()))
    run = tracker.client.get_run(cb.runs[cell.id])
    assert run.data.tags["ablate.failure"] == "preempted" and run.info.status == "FAILED"
    assert run.data.tags["ablate.reason"].startswith("preempted: its Ray worker died; lost 4 times, more than "
                                                     "resources.max_retries (3) allows")
    assert cb.failures == {cell.id: "preempted"}
