"""The team setup end to end: ``ablate run``, ``status``, ``report`` and ``dashboard`` against ``mlflow server``
on PostgreSQL with its artifacts on S3, all through ``--tracking-uri http://…``, checkpoints on S3 too.

    .venv/bin/python -m pytest tests/tune/test_team_server.py

The sweep runs in a subprocess that starts its own Ray (its workers need the S3 credentials in their
environment); the S3 server is named with ``--storage-endpoint`` alone, no ``AWS_ENDPOINT_URL``. The readers
run in this process. The MLflow client never touches S3: the server proxies the artifacts.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

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
train: {{steps: 20, batch_size: 2, patch_size: 16, val_size: 32, eval_every: 10, lowprec_eval: false}}
probes: {{every: 5, patch_size: 16}}
"""
_ENDPOINT_VARS = ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "MLFLOW_S3_ENDPOINT_URL")


def test_sweep_status_report_and_dashboard_through_the_tracking_server(
        mlflow_service: MlflowServer, s3_service: S3Server, tmp_path: Path) -> None:
    uri = mlflow_service.uri
    spec_file = tmp_path / "team.yaml"
    spec_file.write_text(SPEC)
    cells = expand(load_experiment(spec_file))
    prefix = f"team-{uuid.uuid4().hex[:6]}"
    state = tmp_path / "state"
    env = {k: v for k, v in os.environ.items()
           if k not in ("MLFLOW_TRACKING_URI", "RAY_ADDRESS", "ABLATE_STORAGE", *_ENDPOINT_VARS)}
    env.update({k: v for k, v in s3_service.env.items() if k not in _ENDPOINT_VARS})
    run = subprocess.run([sys.executable, "-c", "from ablate.cli import main; main()", "run", str(spec_file),
                          "--tracking-uri", uri, "--state-dir", str(state), "--storage", s3_service.url(prefix),
                          "--storage-endpoint", s3_service.endpoint], env=env, stdin=subprocess.DEVNULL,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert f"{NAME}: 2 finished" in run.stdout and f"results: MLflow {uri} " in run.stdout
    assert "dashboard: " in run.stdout and "dashboard not built" not in run.stdout + run.stderr
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
