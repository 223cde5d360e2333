"""Checkpoints in object storage: a sweep with ``--storage s3://…`` on the moto S3 server of tests/servers.py.

    .venv/bin/python -m pytest tests/tune/test_storage.py

The store itself first (S3 and a folder: latest-only or the latest N, atomic writes, a fresh node resumes
from what another one stored), then ``ablate run`` as a user runs it, in a subprocess attached to the
session's Ray: its trial workers get the S3 credentials from the driver's environment (Ray Tune passes
``AWS_ACCESS_KEY_ID`` and ``AWS_SECRET_ACCESS_KEY`` on to its trials), the endpoint inside the pickled
store. One cell of the sweep was "killed" at step 10 beforehand (trained in this process, its checkpoint stored, then
stopped): the sweep resumes it from S3 (replaying the stored history, marked so that the test can tell) and
it ends exactly where an undisturbed run ends.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from servers import S3Server

from ablate.spec import CellSpec, expand, load_experiment
from ablate.train import CHECKPOINT_FILE, Trainer, load_checkpoint, run_cell, save_checkpoint
from ablate.tune._storage import CheckpointStore

pytestmark = pytest.mark.slow

NAME = "s3-grid"
GRID = f"""\
name: {NAME}
grid: {{norm: [token_ln, global_ln]}}
backbone: {{name: swinir-tiny, embed_dim: 16, depths: [1, 1], num_heads: 2, window_size: 4}}
task: sr-x2
train: {{steps: 20, batch_size: 2, patch_size: 16, val_size: 32, eval_every: 10, checkpoint_every: 10,
         lowprec_eval: false}}
probes: {{every: 5, patch_size: 16}}
resources: {{max_concurrent: 1}}  # one trial worker process: these tests check no concurrency
"""
SECRET = "not-in-any-object-" + uuid.uuid4().hex  # moto takes any key: one that is easy to look for


@pytest.fixture
def s3_env(s3_service: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Server:
    for key, value in {**s3_service.env, "AWS_SECRET_ACCESS_KEY": SECRET}.items():
        monkeypatch.setenv(key, value)
    return s3_service


def _objects(s3: S3Server, prefix: str) -> list[str]:
    """The objects under ``prefix``, without the empty ``…/`` markers pyarrow keeps for folders."""
    return sorted(key for key in s3.keys(prefix) if not key.endswith("/"))


def _state(step: int) -> dict[str, Any]:
    return {"step": step, "weights": torch.full((4,), float(step))}


def _commit(store: CheckpointStore, cell: str, folder: Path, step: int) -> None:
    save_checkpoint(folder, _state(step))
    store.commit(cell, folder, step)


def test_s3_store_keeps_the_latest_n_and_a_fresh_node_resumes_from_it(s3_env: S3Server, tmp_path: Path) -> None:
    prefix = f"unit-{uuid.uuid4().hex[:6]}"
    store = CheckpointStore.open(s3_env.url(prefix), tmp_path, "exp", keep=2)
    trainer_dir = tmp_path / "node-a"
    for step in (10, 20, 30):
        _commit(store, "c1", trainer_dir, step)
    (trainer_dir / "samples.png").write_bytes(b"png")
    store.commit("c1", trainer_dir, 40, final=True)
    assert not trainer_dir.exists()  # the trial's local copy goes once the cell is done
    cell = f"{prefix}/checkpoints/exp/c1"
    assert _objects(s3_env, cell) == [f"{cell}/{n}" for n in ("history/000000030.pt", "history/000000040.pt",
                                                                 "samples.png", CHECKPOINT_FILE)]

    # another process (pickled like a trial's copy), with no local checkpoint: it gets the stored one
    fresh = pickle.loads(pickle.dumps(store))
    assert SECRET.encode() not in pickle.dumps(store)  # keys stay in each node's environment
    work, state = fresh.checkout("c1")
    assert state is not None and state["step"] == 30 and not work.is_relative_to(tmp_path)
    assert sorted(p.name for p in work.iterdir()) == [CHECKPOINT_FILE]
    with store.local_copy("c1") as folder:  # the driver's view: checkpoint and samples
        assert sorted(p.name for p in folder.iterdir()) == ["samples.png", CHECKPOINT_FILE]
    assert not folder.exists()

    # the cell done on that node: its local folder goes, and with it the process's (nothing left in /tmp)
    save_checkpoint(work, _state(40))
    fresh.commit("c1", work, 40, final=True)
    assert not work.exists() and not work.parent.exists(), work

    # an unreadable checkpoint: the cell starts over, its folder gone (as --force deletes it)
    s3_env.client().put_object(Bucket=s3_env.bucket, Key=f"{cell}/{CHECKPOINT_FILE}", Body=b"cut sh")
    assert fresh.checkout("c1")[1] is None and _objects(s3_env, cell) == []


def test_a_dead_workers_folder_goes_when_the_next_cell_starts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                              ) -> None:
    """A worker killed mid-cell leaves its ``ablate-ckpt-<pid>`` folder; the next trial to start a cell on
    the machine removes it, and leaves the folders of live processes alone."""
    import tempfile

    from ablate.tune._storage import _work_folder

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead, alive = tmp_path / f"ablate-ckpt-{int(gone.stdout)}", tmp_path / f"ablate-ckpt-{os.getppid()}"
    for folder in (dead, alive, tmp_path / "ablate-ckpt-x"):
        (folder / "cell").mkdir(parents=True)
        (folder / "cell" / CHECKPOINT_FILE).write_bytes(b"x")
    work = _work_folder("c2")
    assert work == tmp_path / f"ablate-ckpt-{os.getpid()}" / "c2" and work.is_dir()
    assert not dead.exists() and alive.exists() and (tmp_path / "ablate-ckpt-x").exists()


def test_folder_store_is_written_in_place_atomically(tmp_path: Path) -> None:
    store = CheckpointStore.open(tmp_path / "nfs", tmp_path / "state", "exp", keep=2)
    work, state = store.checkout("c1")
    assert work == tmp_path / "nfs" / "checkpoints" / "exp" / "c1" and state is None
    for step in (10, 20, 30):
        _commit(store, "c1", work, step)
    work_again, state = store.checkout("c1")
    assert work_again == work and state is not None and state["step"] == 30
    assert sorted(p.name for p in (work / "history").iterdir()) == ["000000020.pt", "000000030.pt"]
    assert not [p for p in work.rglob("*") if ".tmp" in p.name]
    # another folder (a node's local disk) is published into the store by rename, never half-written
    _commit(store, "c1", tmp_path / "elsewhere", 40)
    assert load_checkpoint(work)["step"] == 40 and not [p for p in work.rglob("*") if ".tmp" in p.name]
    with store.local_copy("c1") as folder:
        assert folder == work
    store.delete("c1")
    assert not work.exists()


def test_unreachable_storage_or_a_missing_bucket_is_one_line(s3_env: S3Server, tmp_path: Path) -> None:
    from ablate.errors import AblateError

    store = CheckpointStore.open("s3://nobucket/x", tmp_path, "exp", endpoint="http://127.0.0.1:9")
    with pytest.raises(AblateError, match=r"^checkpoint storage s3://nobucket/x: .*\(check --storage"):
        store.check()
    store = CheckpointStore.open("s3://nobucket/x", tmp_path, "exp")  # the server of AWS_ENDPOINT_URL
    with pytest.raises(AblateError, match=r"^checkpoint storage s3://nobucket/x: there is no bucket 'nobucket' "):
        store.check()
    CheckpointStore.open(s3_env.url("x"), tmp_path, "exp").check()


# --------------------------------------------------------------------------------------------- a sweep


class _Killed(Exception):
    pass


MARK = "train/read_from_s3"  # written into the stored checkpoint's history: seen in MLflow only if it was read


class _KillAfterCheckpoint:
    """A reporter that stores the first checkpoint as a trial would, then stops the cell (a killed node).
    The history in the checkpoint gets a mark, which a trial that resumes from it replays to MLflow."""

    def __init__(self, store: CheckpointStore, cell_id: str) -> None:
        self.store, self.cell_id = store, cell_id

    def report(self, step: int, metrics: dict[str, float], traces: Any = None, checkpoint: Path | None = None
               ) -> None:
        if checkpoint is not None:
            state = load_checkpoint(checkpoint)
            state["history"][-1][MARK] = 1.0
            save_checkpoint(checkpoint, state)
            self.store.commit(self.cell_id, checkpoint, step)
            raise _Killed(step)


class Sweep:
    def __init__(self, s3: S3Server, prefix: str, state: Path, cells: list[CellSpec], killed: CellSpec,
                 reference: dict[str, float], result: subprocess.CompletedProcess[str]) -> None:
        from mlflow import MlflowClient

        self.s3, self.prefix, self.state, self.cells, self.killed = s3, prefix, state, cells, killed
        self.reference, self.result = reference, result
        self.client = MlflowClient(tracking_uri="sqlite:///" + (state / "mlflow.db").as_posix())

    def run(self, cell_id: str) -> Any:
        exp = self.client.get_experiment_by_name(NAME)
        assert exp is not None, self.result.stdout + self.result.stderr
        runs = self.client.search_runs([exp.experiment_id], filter_string=f"tags.`ablate.cell` = '{cell_id}'")
        assert len(runs) == 1, (cell_id, len(runs))
        return runs[0]


def ablate_cli(*args: str, env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", "from ablate.cli import main; main()", *args], env=env,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def sweep(s3_service: S3Server, fresh_state: Callable[[str], Path], ray_session: str) -> Iterator[Sweep]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("MLFLOW_TRACKING_URI", "RAY_ADDRESS", "ABLATE_STATE_DIR", "ABLATE_STORAGE")}
    env.update({**s3_service.env, "AWS_SECRET_ACCESS_KEY": SECRET})
    with pytest.MonkeyPatch.context() as mp:
        for key, value in env.items():
            mp.setenv(key, value)
        env["RAY_ADDRESS"] = ray_session  # the subprocess's only: this process's Ray is already up
        state = fresh_state("s3sweep")
        spec_file = state.parent / "grid.yaml"
        spec_file.write_text(GRID)
        cells = expand(load_experiment(spec_file))
        killed = cells[1]
        prefix = f"sweep-{uuid.uuid4().hex[:6]}"
        store = CheckpointStore.open(s3_service.url(prefix), state, NAME)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # as in the trial (1 CPU): thread counts change float reductions
        try:
            with pytest.raises(_Killed):
                Trainer(killed, _KillAfterCheckpoint(store, killed.id), checkpoint_dir=state.parent / "node-a").run()
            reference = run_cell(killed).summary  # the same cell, undisturbed
        finally:
            torch.set_num_threads(threads)
        result = ablate_cli("run", str(spec_file), "--state-dir", str(state), "--storage", s3_service.url(prefix),
                            "--no-dashboard", "--max-concurrent", "1", env=env)
        yield Sweep(s3_service, prefix, state, cells, killed, reference, result)


def test_the_sweep_stores_checkpoints_and_ray_state_on_s3_only(sweep: Sweep) -> None:
    assert sweep.result.returncode == 0, sweep.result.stdout[-3000:] + sweep.result.stderr[-3000:]
    assert f"{NAME}: 2 finished" in sweep.result.stdout
    keys = sweep.s3.keys(sweep.prefix)
    for cell in sweep.cells:
        folder = f"{sweep.prefix}/checkpoints/{NAME}/{cell.id}"
        assert {f"{folder}/{CHECKPOINT_FILE}", f"{folder}/samples.png"} <= set(keys), keys
    assert any(k.startswith(f"{sweep.prefix}/ray/") and k.endswith("tuner.pkl") for k in keys), keys
    assert not [k for k in keys if ".tmp" in k]
    assert not (sweep.state / "checkpoints").exists()  # nothing written where the driver runs
    body = b"".join(sweep.s3.client().get_object(Bucket=sweep.s3.bucket, Key=k)["Body"].read() for k in keys)
    assert SECRET.encode() not in body  # Ray Tune pickles its storage filesystem into its state: no keys in it


def test_the_killed_cell_resumes_from_s3_and_ends_as_if_undisturbed(sweep: Sweep) -> None:
    run = sweep.run(sweep.killed.id)
    assert run.data.tags["ablate.status"] == "finished"
    assert [(m.step, m.value) for m in sweep.client.get_metric_history(run.info.run_id, MARK)] == [(10, 1.0)]
    loss_steps = [m.step for m in sweep.client.get_metric_history(run.info.run_id, "train/loss")]
    assert sorted(loss_steps) == [5, 10, 15, 20], loss_steps  # the replayed history and the rest, once each
    for key in ("final/psnr", "final/ssim", "best/psnr", "final/max_msq"):
        assert run.data.metrics[key] == sweep.reference[key], key


def test_the_final_checkpoint_reaches_mlflow(sweep: Sweep, tmp_path: Path) -> None:
    for cell in sweep.cells:
        run = sweep.run(cell.id)
        local = Path(sweep.client.download_artifacts(run.info.run_id, f"checkpoint/{CHECKPOINT_FILE}", str(tmp_path)))
        key = f"{sweep.prefix}/checkpoints/{NAME}/{cell.id}/{CHECKPOINT_FILE}"
        stored = sweep.s3.client().get_object(Bucket=sweep.s3.bucket, Key=key)["Body"].read()
        assert local.read_bytes() == stored
        assert load_checkpoint(local)["step"] == cell.train.steps
        assert {a.path for a in sweep.client.list_artifacts(run.info.run_id)} >= {"samples", "checkpoint", "plots"}
