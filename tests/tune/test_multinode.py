"""A sweep on a real two-node Ray cluster with token authentication, checkpoints on S3, and a node lost mid-sweep.

    .venv/bin/python -m pytest tests/tune/test_multinode.py

``ablate run --address`` runs as a user runs it, in a subprocess with the cluster's token file in
``RAY_AUTH_TOKEN_PATH`` but no ``RAY_AUTH_MODE``: ablate turns token authentication on by itself. Nothing is
shared between the nodes but S3: checkpoints go there, and each node's Ray workers find the credentials in
their own environment (set here before the nodes start). Once both cells stored a checkpoint, the worker
node is killed; its cell runs again on the head, from its checkpoint on S3.

The two cells differ only in ``train.checkpoint_every``, which changes a cell's id but not its training: the
cell that lost its node must end bit-for-bit where the undisturbed one does.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from servers import S3Server, free_port, ray_cluster

from ablate.spec import expand, load_experiment

pytestmark = pytest.mark.slow

NAME = "multinode"
SPEC = f"""\
name: {NAME}
norm: token_ln
include: [{{train.checkpoint_every: 25}}, {{train.checkpoint_every: 20}}]
backbone: {{name: swinir-tiny, embed_dim: 16, depths: [1, 1], num_heads: 2, window_size: 4}}
task: sr-x2
train: {{steps: 300, batch_size: 2, patch_size: 16, val_size: 32, eval_every: 100, lowprec_eval: false}}
probes: {{every: 50, patch_size: 16}}
"""
FINAL = ("final/psnr", "final/ssim", "best/psnr", "final/max_msq", "final/deep_entropy")


def _ablate(*args: str, env: dict[str, str], out: Path) -> subprocess.Popen[bytes]:
    with open(out, "wb") as log:
        return subprocess.Popen([sys.executable, "-c", "from ablate.cli import main; main()", *args], env=env,
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)


def _one_line(*args: str, env: dict[str, str], out: Path) -> tuple[str, float]:
    """Run ``ablate``, expect exit 2; its only output line, and the seconds it took."""
    t0 = time.monotonic()
    proc = _ablate(*args, env=env, out=out)
    assert proc.wait(120) == 2, out.read_text()
    lines = [line for line in out.read_text().splitlines() if line.strip()]
    assert len(lines) == 1, out.read_text()
    return lines[0], time.monotonic() - t0


def _wait_for_checkpoints(s3: S3Server, folders: list[str], proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 300
    while not all(s3.keys(f"{folder}/state.pt") for folder in folders):
        if proc.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"no checkpoint of every cell on S3:\n{log.read_text()[-4000:]}")
        time.sleep(0.5)


def test_losing_a_node_mid_sweep_retries_its_cell_from_s3(s3_service: S3Server, monkeypatch: pytest.MonkeyPatch,
                                                          fresh_state: Callable[[str], Path], tmp_path: Path) -> None:
    spec_file = tmp_path / "multinode.yaml"
    spec_file.write_text(SPEC)
    cells = expand(load_experiment(spec_file))
    state = fresh_state("multinode")
    prefix = f"mn-{uuid.uuid4().hex[:6]}"
    folders = [f"{prefix}/checkpoints/{NAME}/{cell.id}" for cell in cells]
    for key, value in s3_service.env.items():  # before the nodes start: their workers inherit it
        monkeypatch.setenv(key, value)
    with ray_cluster(nodes=2, cpus_per_node=1) as cluster:
        env = {k: v for k, v in cluster.driver_env().items()
               if k not in ("RAY_AUTH_MODE", "RAY_ADDRESS", "MLFLOW_TRACKING_URI", "ABLATE_STORAGE")}
        assert env["RAY_AUTH_TOKEN_PATH"] == str(cluster.token_path)
        log = tmp_path / "sweep.log"
        sweep = _ablate("run", str(spec_file), "--address", cluster.address, "--state-dir", str(state),
                        "--storage", s3_service.url(prefix), "--no-dashboard", env=env, out=log)
        try:
            _wait_for_checkpoints(s3_service, folders, sweep, log)
            # both cells are mid-way, one on each node (a node has one CPU): the worker's cell is lost
            assert not [f for f in folders if s3_service.keys(f"{f}/samples.png")], log.read_text()[-4000:]
            cluster.remove_worker()
            assert sweep.wait(600) == 0, log.read_text()[-4000:]
        finally:
            sweep.kill()
            sweep.wait()
        output = log.read_text()
        assert f"{NAME}: 2 finished" in output, output[-4000:]

        # a wrong token, then none at all: one line each that says what to check, in seconds
        wrong = {**{k: v for k, v in env.items() if k != "RAY_AUTH_TOKEN_PATH"}, "HOME": str(tmp_path),
                 "RAY_AUTH_TOKEN": uuid.uuid4().hex * 2}
        line, took = _one_line("run", str(spec_file), "--force", "--address", cluster.address, "--state-dir",
                               str(state), env=wrong, out=tmp_path / "wrong.log")
        assert line.startswith(f"error: cannot join the Ray cluster at {cluster.address}: it refused this "
                               "machine's token (check RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH"), line
        assert took < 60, took
        del wrong["RAY_AUTH_TOKEN"]
        line, _ = _one_line("run", str(spec_file), "--force", "--address", cluster.address, "--state-dir",
                            str(state), env=wrong, out=tmp_path / "none.log")
        assert "it needs a token and there is none here (set RAY_AUTH_TOKEN" in line, line

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{state / 'mlflow.db'}")
    exp = client.get_experiment_by_name(NAME)
    assert exp is not None
    runs = client.search_runs([exp.experiment_id], filter_string="tags.`ablate.cell` != ''")
    assert sorted(r.data.tags["ablate.cell"] for r in runs) == sorted(c.id for c in cells)  # once each
    assert all(r.data.tags["ablate.status"] == "finished" for r in runs)
    first, second = (r.data.metrics for r in runs)
    assert {k: first[k] for k in FINAL} == {k: second[k] for k in FINAL}
    for folder in folders:
        assert s3_service.keys(f"{folder}/samples.png"), folder
    # Ray Tune recorded the lost trial's error beside its state on S3, then ran it again
    failed = [c.id for c in cells if any(k.endswith(f"/{c.id}/error.txt") for k in s3_service.keys(f"{prefix}/ray/"))]
    assert len(failed) == 1, s3_service.keys(prefix)
    # from its stored checkpoint: the steps before it were trained (and logged) once
    retried = next(r for r in runs if r.data.tags["ablate.cell"] == failed[0])
    steps = [m.step for m in client.get_metric_history(retried.info.run_id, "train/loss")]
    assert steps.count(5) == 1 and max(steps) == 300, sorted(steps)


def test_a_wrong_address_is_one_line_in_seconds(fresh_state: Callable[[str], Path], tmp_path: Path) -> None:
    spec_file = tmp_path / "multinode.yaml"
    spec_file.write_text(SPEC)
    state = fresh_state("address")
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI")}
    address = f"127.0.0.1:{free_port()}"
    line, took = _one_line("run", str(spec_file), "--address", address, "--state-dir", str(state),
                           env=env, out=tmp_path / "out.log")
    assert line == (f"error: cannot join the Ray cluster at {address}: no answer (check --address or RAY_ADDRESS: "
                    "the head's host:port, reachable from here)")
    assert took < 60, took  # Ray's own retries take 40 s and more


def test_a_local_ray_that_cannot_start_is_one_line(fresh_state: Callable[[str], Path], tmp_path: Path) -> None:
    spec_file = tmp_path / "local.yaml"
    spec_file.write_text(SPEC)
    deep = tmp_path / ("d" * 100)  # Ray's socket paths under it exceed the 107 bytes AF_UNIX allows
    deep.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI")}
    env["RAY_TMPDIR"] = str(deep)
    line, _ = _one_line("run", str(spec_file), "--state-dir", str(fresh_state("local")), env=env,
                        out=tmp_path / "out.log")
    assert line.startswith("error: could not start a local Ray: ") and "107 bytes" in line, line
