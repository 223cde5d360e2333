"""``ablate ui``: the MLflow UI on this machine for the sweep results.

    ablate ui --state-dir .ablate --port 5000
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import click

from ablate.errors import AblateError

from ._options import state_dir_option, tracking_option


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:  # noqa: S310 - local URL
            return bool(resp.status == 200)
    except OSError:
        return False


def _stop(proc: subprocess.Popen[Any]) -> None:
    """Stop the server and its workers: they share the process group we gave it."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


@click.command("ui")
@state_dir_option
@tracking_option
@click.option("--port", type=click.IntRange(1, 65535), default=5000, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Interface to listen on; 0.0.0.0 exposes the UI to the network.")
@click.option("--timeout", "ready_timeout", type=float, default=120.0, show_default=True,
              help="Seconds to wait for the server to answer before giving up.")
def command(state_dir: Path, tracking_uri: str | None, port: int, host: str, ready_timeout: float) -> None:
    """Serve the MLflow UI for the results in the state folder (or --tracking-uri), until Ctrl-C.

    \b
        ablate ui                                  # .ablate/mlflow.db on http://127.0.0.1:5000
        ablate ui --state-dir runs/ --port 5001
        ablate ui --tracking-uri sqlite:////data/ablate/mlflow.db

    Runs `mlflow server --workers 1` on 127.0.0.1 and prints its URL.
    """
    from ablate.track import resolve_tracking_uri, sqlite_path

    uri = resolve_tracking_uri(tracking_uri, None, state_dir)
    if uri.startswith(("http://", "https://")):
        click.echo(f"{uri} is already a tracking server: open it in a browser")
        return
    db = sqlite_path(uri)
    if db is not None and not db.exists():
        raise AblateError(f"no MLflow store at {db}: run `ablate run EXPERIMENT.yaml` first, or pass "
                          "--state-dir / --tracking-uri")
    if not _port_free(host, port):
        raise AblateError(f"port {port} on {host} is in use: pass --port with a free one")
    artifacts = Path(state_dir).expanduser().resolve() / "mlartifacts"
    env = dict(os.environ, MLFLOW_DISABLE_TELEMETRY="true")
    if uri.startswith("file:"):
        env["MLFLOW_ALLOW_FILE_STORE"] = "true"
    env.pop("MLFLOW_TRACKING_URI", None)
    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri, "--host", host,
           "--port", str(port), "--workers", "1", "--artifacts-destination", str(artifacts)]
    url = f"http://{host}:{port}"
    click.echo(f"MLflow UI: {url}  (store {uri}; Ctrl-C stops it)")
    # its own process group, so stopping it also stops the server's workers
    proc = subprocess.Popen(cmd, env=env, start_new_session=True)
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the cleanup below on SIGTERM
    try:
        deadline = time.monotonic() + ready_timeout
        while not _healthy(url):
            if proc.poll() is not None:
                raise AblateError(f"mlflow server exited with status {proc.returncode} before it was ready "
                                  f"(its messages are above)")
            if time.monotonic() > deadline:
                raise AblateError(f"mlflow server did not answer on {url} within {ready_timeout:.0f} s")
            time.sleep(0.5)
        click.echo(f"ready: {url}", err=True)
        proc.wait()
    finally:
        _stop(proc)
        signal.signal(signal.SIGTERM, previous)
