"""The real servers of tests/servers.py do what the resilience tests rely on.

    PYTHONPATH=$PWD python -m pytest tests/test_servers.py -q
"""

from __future__ import annotations

import secrets
import subprocess
import sys
import time
from pathlib import Path

import pytest
import servers
from servers import MlflowServer, RayCluster, S3Server, postgres_server

pytestmark = pytest.mark.slow


def test_s3_objects_round_trip_between_boto3_and_pyarrow(s3_service: S3Server) -> None:
    client, fs, bucket = s3_service.client(), s3_service.filesystem(), s3_service.bucket
    client.put_object(Bucket=bucket, Key="roundtrip/boto3.txt", Body=b"from boto3")
    with fs.open_input_stream(f"{bucket}/roundtrip/boto3.txt") as stream:
        assert stream.read() == b"from boto3"
    with fs.open_output_stream(f"{bucket}/roundtrip/pyarrow.txt") as stream:
        stream.write(b"from pyarrow")
    assert client.get_object(Bucket=bucket, Key="roundtrip/pyarrow.txt")["Body"].read() == b"from pyarrow"
    assert s3_service.keys("roundtrip/") == ["roundtrip/boto3.txt", "roundtrip/pyarrow.txt"]


def test_missing_postgres_skips_but_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(servers, "postgres_bindir", lambda: None)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="needs PostgreSQL 15: apt-get install postgresql"):
        postgres_server().__enter__()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI is set"):
        postgres_server().__enter__()


def test_mlflow_keeps_runs_in_postgres_and_artifacts_in_s3_across_a_restart(
        mlflow_service: MlflowServer, s3_service: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient(mlflow_service.uri)
    experiment = client.create_experiment("servers")
    run = client.create_run(experiment).info.run_id
    client.log_metric(run, "loss", 0.5, step=3)
    (tmp_path / "note.txt").write_text("kept")
    client.log_artifact(run, str(tmp_path / "note.txt"))
    prefix = mlflow_service.artifacts_destination.removeprefix(s3_service.url())
    assert s3_service.keys(f"{prefix}/") == [f"{prefix}/{experiment}/{run}/artifacts/note.txt"]

    mlflow_service.stop()
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # fail now, not after minutes of backoff
    with pytest.raises(MlflowException):
        client.get_run(run)
    mlflow_service.start()

    assert client.get_run(run).data.metrics == {"loss": 0.5}
    assert [m.step for m in client.get_metric_history(run, "loss")] == [3]
    downloaded = client.download_artifacts(run, "note.txt", str(tmp_path / "back"))
    assert Path(downloaded).read_text() == "kept"


# Two 1-CPU tasks, spread over the two 1-CPU nodes, each noting "NODE_ID PID" in argv[2], then holding its
# node; the driver prints how the first task to end ended. argv = address, marks file.
_HOLD_BOTH_NODES = """
import os, sys, time, ray
ray.init(address=sys.argv[1], log_to_driver=False, logging_level="ERROR")

@ray.remote(num_cpus=1, max_retries=0, scheduling_strategy="SPREAD")
def hold(marks):
    with open(marks, "a") as out:
        out.write(f"{ray.get_runtime_context().get_node_id()} {os.getpid()}\\n")
    time.sleep(300)

done, _ = ray.wait([hold.remote(sys.argv[2]) for _ in range(2)], num_returns=1)
try:
    ray.get(done[0])
except Exception as error:
    print("ended by", type(error).__name__)
"""


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_the_cluster_refuses_drivers_without_its_token_and_removing_a_worker_kills_its_tasks(
        ray_multinode: RayCluster, tmp_path: Path) -> None:
    # a driver without the token, then one with a wrong token, is refused (the cluster started: one with
    # the token joined it)
    no_token = {k: v for k, v in ray_multinode.driver_env().items() if not k.startswith("RAY_AUTH_")}
    # HOME elsewhere: no ~/.ray/auth_token to fall back on; and one GCS attempt instead of twenty 1 s retries
    no_token |= {"HOME": str(tmp_path), "RAY_gcs_server_port_wait_time_s": "1"}
    wrong_token = {**no_token, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    for env in (no_token, wrong_token):
        result = ray_multinode.run_driver("import ray, sys; ray.init(address=sys.argv[1])", ray_multinode.address,
                                          env=env)
        assert result.returncode != 0
        assert "InvalidAuthToken" in result.stderr, result.stderr[-3000:]

    # two tasks hold the two nodes; the worker node is removed
    marks, log = tmp_path / "marks", tmp_path / "driver.log"
    with open(log, "w") as out:
        driver = subprocess.Popen([sys.executable, "-c", _HOLD_BOTH_NODES, ray_multinode.address, str(marks)],
                                  env=ray_multinode.driver_env(), stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while len(lines := marks.read_text().splitlines() if marks.exists() else []) < 2:
            if driver.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the two tasks did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        assert len({line.split()[0] for line in lines}) == 2  # the two tasks run on two nodes

        worker = ray_multinode.nodes[-1]
        worker_pids = set(worker.pids())
        assert {int(line.split()[1]) for line in lines} & worker_pids  # one task runs in the worker's session
        assert ray_multinode.remove_worker() is worker
        assert not worker.alive and not [pid for pid in worker_pids if _alive(pid)]
        assert ray_multinode.nodes[0].alive

        driver.wait(60)  # the task on the removed node failed rather than being left running
        ended = [line for line in log.read_text().splitlines() if line.startswith("ended by")]
        assert ended == ["ended by NodeDiedError"], log.read_text()[-3000:]
    finally:
        driver.kill()
        driver.wait()
    ray_multinode.wait_for_nodes(1, timeout=30)  # raises unless the GCS counts exactly one alive node
