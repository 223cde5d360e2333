"""The team setup end to end: ``ablate run``, ``status``, ``report`` and ``dashboard`` against ``mlflow server``
on PostgreSQL with its artifacts on S3, all through ``--tracking-uri http://…``, checkpoints on S3 too.

    .venv/bin/python -m pytest tests/tune/test_team_server.py

The sweep runs in a subprocess attached to the session's Ray: its trial workers get the S3 credentials from
the driver's environment (Ray Tune passes ``AWS_ACCESS_KEY_ID`` and ``AWS_SECRET_ACCESS_KEY`` on to its
trials); the S3 server is named with ``--storage-endpoint`` alone, no ``AWS_ENDPOINT_URL``. The readers
run in this process. The MLflow client never touches S3: the server proxies the artifacts. Mid-sweep, once the
first points are in, the tracking server is killed and comes back 30 s later on the same port: the sweep goes
on (the driver buffers and retries) and every cell's history holds each of its steps once.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from servers import MlflowServer, S3Server

from ablate.cli import main
from ablate.spec import expand, load_experiment
from ablate.train import CHECKPOINT_FILE

pytestmark = pytest.mark.slow

NAME = "team-grid"
SPEC = f"""\
name: {NAME}
grid: {{norm: [token_ln, global_ln]}}
backbone: {{name: swinir-tiny, embed_dim: 16, depths: [1, 1], num_heads: 2, window_size: 4}}
task: sr-x2
train: {{steps: 40, batch_size: 2, patch_size: 16, val_size: 32, eval_every: 10, lowprec_eval: false}}
probes: {{every: 5, patch_size: 16}}
resources: {{max_concurrent: 1}}  # one trial worker process: this test checks no concurrency
"""
# the points each cell reports: train/loss every 5 steps (ablate's smallest logging interval), validation
# every 10 (eval_every)
EXPECTED_STEPS = {"train/loss": [5, 10, 15, 20, 25, 30, 35, 40], "val/psnr": [10, 20, 30, 40]}
OUTAGE_S = 30.0
_ENDPOINT_VARS = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "MLFLOW_S3_ENDPOINT_URL")


def _client(uri: str) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=uri)


def _outage_after_first_points(server: MlflowServer, sweep: subprocess.Popen[bytes], seconds: float
                               ) -> float | None:
    """Once a cell run holds a point (and the sweep still runs), kill the server, keep it down for ``seconds``,
    start it again on the same port; the seconds it was down (None: the sweep ended first)."""
    client = _client(server.uri)
    deadline = time.monotonic() + 300
    while sweep.poll() is None and time.monotonic() < deadline:
        exp = client.get_experiment_by_name(NAME)
        runs = [] if exp is None else client.search_runs([exp.experiment_id], filter_string="tags.`ablate.cell` != ''")
        if any(r.data.metrics for r in runs):
            break
        time.sleep(0.2)
    if sweep.poll() is not None:
        return None
    server.stop()
    t0 = time.monotonic()
    time.sleep(seconds)
    server.start()
    return time.monotonic() - t0


def test_sweep_status_report_and_dashboard_through_the_tracking_server(
        mlflow_service: MlflowServer, s3_service: S3Server, tmp_path: Path, ray_session: str) -> None:
    uri = mlflow_service.uri
    spec_file = tmp_path / "team.yaml"
    spec_file.write_text(SPEC)
    cells = expand(load_experiment(spec_file))
    prefix = f"team-{uuid.uuid4().hex[:6]}"
    state = tmp_path / "state"
    env = {k: v for k, v in os.environ.items()
           if k not in ("MLFLOW_TRACKING_URI", "RAY_ADDRESS", "ABLATE_STORAGE", *_ENDPOINT_VARS)}
    env.update({k: v for k, v in s3_service.env.items() if k not in _ENDPOINT_VARS})
    env["RAY_ADDRESS"] = ray_session
    out, err = tmp_path / "run.out", tmp_path / "run.err"
    with open(out, "w") as stdout, open(err, "w") as stderr:
        sweep = subprocess.Popen([sys.executable, "-c", "from ablate.cli import main; main()", "run", str(spec_file),
                                  "--tracking-uri", uri, "--state-dir", str(state), "--storage", s3_service.url(prefix),
                                  "--storage-endpoint", s3_service.endpoint], env=env, stdin=subprocess.DEVNULL,
                                 stdout=stdout, stderr=stderr)
    # the tracking server dies (SIGKILL) once the first points are in, and is back 30 s later
    down = _outage_after_first_points(mlflow_service, sweep, seconds=OUTAGE_S)
    sweep.wait(600)
    printed = out.read_text() + err.read_text()
    assert sweep.returncode == 0, printed[-6000:]
    assert down is not None and down >= OUTAGE_S, (down, printed[-3000:])
    assert "Traceback" not in printed
    assert f"{NAME}: 2 finished" in printed and f"results: MLflow {uri} " in printed
    assert "dashboard: " in printed and "dashboard not built" not in printed
    for cell in cells:
        assert s3_service.keys(f"{prefix}/checkpoints/{NAME}/{cell.id}/{CHECKPOINT_FILE}")

    readers = CliRunner()
    status = readers.invoke(main, ["status", str(spec_file), "--tracking-uri", uri, "--state-dir", str(state)])
    assert status.exit_code == 0, status.output
    rows = {line.split()[0]: line for line in status.output.splitlines() if line.strip()}
    assert all(" finished " in rows[cell.id] for cell in cells), status.output
    assert f"{NAME}: 2 finished  ({uri})" in status.output

    report = readers.invoke(main, ["report", NAME, "--tracking-uri", uri, "--state-dir", str(state)])
    assert report.exit_code == 0, report.output
    assert "token_ln" in report.output and "global_ln" in report.output

    page = tmp_path / "team.html"
    dashboard = readers.invoke(main, ["dashboard", "-e", NAME, "-o", str(page), "--tracking-uri", uri,
                                      "--state-dir", str(state)])
    assert dashboard.exit_code == 0, dashboard.output
    assert ", 2 cells, " in dashboard.output and page.stat().st_size > 0

    # nothing lost to the outage, nothing doubled: every reported step once, in every cell
    client = _client(uri)
    for r in client.search_runs([client.get_experiment_by_name(NAME).experiment_id],
                                filter_string="tags.`ablate.cell` != ''"):
        for key in ("train/loss", "val/psnr"):
            steps = [m.step for m in client.get_metric_history(r.info.run_id, key)]
            assert sorted(steps) == EXPECTED_STEPS[key], (r.data.tags["ablate.cell"], key, sorted(steps))
        assert "final/psnr" in r.data.metrics

    # the runs are in PostgreSQL, their artifacts (the final checkpoints among them) on S3 behind the server
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(NAME)
    assert exp is not None
    runs = client.search_runs([exp.experiment_id], filter_string="tags.`ablate.cell` != ''")
    assert sorted(r.data.tags["ablate.cell"] for r in runs) == sorted(c.id for c in cells)
    artifacts = mlflow_service.artifacts_destination.removeprefix(f"s3://{s3_service.bucket}/")
    stored = s3_service.keys(artifacts)
    for r in runs:
        assert [a.path for a in client.list_artifacts(r.info.run_id, "checkpoint")] == [f"checkpoint/{CHECKPOINT_FILE}"]
        assert any(k.endswith(f"{r.info.run_id}/artifacts/checkpoint/{CHECKPOINT_FILE}") for k in stored), stored
