"""Reading a run's artifacts back: the checkpoint ``ablate eval`` needs on another machine, the plan.

    from ablate.track import artifact_text, download_artifact
    path = download_artifact(uri, run_id, "checkpoint/state.pt", Path("/tmp/ckpt"))  # None if absent
    plan = artifact_text(uri, sweep_run_id, "plan/plan.json")

Through the MLflow client, so it works for every store: a local artifact folder, a tracking server's
proxied storage, or object storage the client can reach.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ._client import mlflow_client


def download_artifact(tracking_uri: str, run_id: str, path: str, dst_dir: Path) -> Path | None:
    """Copy the artifact ``path`` of ``run_id`` into ``dst_dir`` (created); its local path, or None
    when the run has no such artifact (or the artifact store cannot be reached)."""
    dst_dir.mkdir(parents=True, exist_ok=True)
    # MLflow draws a progress bar per download on stderr: noise in `ablate report` and in CSV pipes
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    try:
        local = mlflow_client(tracking_uri).download_artifacts(run_id, path, str(dst_dir))
    except Exception:  # MlflowException, OSError, a server's HTTP error: all mean "not available here"
        return None
    out = Path(local)
    return out if out.is_file() else None


def artifact_text(tracking_uri: str, run_id: str, path: str) -> str | None:
    """The text of the artifact ``path`` of ``run_id``, or None when it has none."""
    with tempfile.TemporaryDirectory(prefix="ablate-artifact-") as tmp:
        local = download_artifact(tracking_uri, run_id, path, Path(tmp))
        return local.read_text(encoding="utf-8") if local is not None else None
