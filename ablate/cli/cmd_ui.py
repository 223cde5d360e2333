"""``ablate ui``: the MLflow UI on this machine for the sweep results.

    ablate ui --state-dir .ablate --port 5000
"""

from __future__ import annotations

import ipaddress
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

# Ctrl-C, `kill` and a closed terminal: each must take the server down with this command. The
# server runs in its own session (so a Ctrl-C reaches it only through us), which also means a
# closed terminal's SIGHUP never reaches it on its own.
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_LISTED = 20  # experiments whose links `ablate ui` prints


class _Stop(BaseException):
    """A stop signal arrived (a BaseException, like KeyboardInterrupt, so no `except Exception` eats it)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _raise_stop(signum: int, _frame: object) -> None:
    raise _Stop(signum)


def _port_free(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


def _browse_url(host: str, port: int) -> str:
    """The URL to open on this machine: a wildcard address is reached on loopback."""
    local = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(host, host)
    return f"http://[{local}]:{port}" if ":" in local else f"http://{local}:{port}"


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as resp:  # noqa: S310 - local URL
            return bool(resp.status == 200)
    except OSError:
        return False


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # a member we may not signal still exists
        return True
    return True


def _stop(proc: subprocess.Popen[Any], timeout: float = 10.0) -> None:
    """Stop the server and everything it started: they share the process group we gave it.

    The group leader exiting is not enough: uvicorn and MLflow's job runner are its children, so
    this waits until no process of the group is left, and kills what is still there at ``timeout``.
    """
    pgid = proc.pid  # start_new_session: the server leads its own group
    if proc.poll() is None or _group_alive(pgid):
        try:
            os.killpg(pgid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + timeout
        # poll() reaps the leader: a zombie would keep the group "alive"
        while (proc.poll() is None or _group_alive(pgid)) and time.monotonic() < deadline:
            time.sleep(0.1)
        if proc.poll() is None or _group_alive(pgid):
            try:
                os.killpg(pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    proc.wait()


def _experiment_links(uri: str, url: str) -> list[str]:
    """One ``name  link`` line per experiment with runs (the first ``_LISTED`` by name)."""
    from ablate.track import RunStore, experiment_page

    try:
        experiments = RunStore(uri).experiments_with_runs()
    except Exception as err:  # the list is a convenience: the UI itself must still start
        return [f"(could not list the experiments: {err})"]
    if not experiments:
        return []
    width = max(len(e["name"]) for e in experiments[:_LISTED])
    lines = [f"  {e['name']:<{width}}  {experiment_page(url, e['id'])}" for e in experiments[:_LISTED]]
    if len(experiments) > _LISTED:
        lines.append(f"  … {len(experiments) - _LISTED} more: {url}/#/experiments")
    return ["experiments (model-training view, runs by final PSNR):", *lines]


def _server_command(uri: str, host: str, port: int, state_dir: Path) -> tuple[list[str], dict[str, str]]:
    """The `mlflow server` command line and its environment."""
    artifacts = Path(state_dir).expanduser().resolve() / "mlartifacts"
    env = dict(os.environ, MLFLOW_DISABLE_TELEMETRY="true")
    # MLflow's job runner serves GenAI features (judges, issue detection) ablate does not use: eight
    # processes fewer, a faster start, and no huey folder left in /dev/shm per start.
    env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    if uri.startswith("file:"):
        env["MLFLOW_ALLOW_FILE_STORE"] = "true"
    env.pop("MLFLOW_TRACKING_URI", None)
    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", uri, "--host", host,
           "--port", str(port), "--workers", "1", "--artifacts-destination", str(artifacts)]
    return cmd, env


def _serve(cmd: list[str], env: dict[str, str], url: str, uri: str, ready_timeout: float) -> int:
    """Run the server until it exits or a stop signal comes; then stop it and everything it started.

    Returns the stop signal's number (0 when the server exited on its own).
    """
    proc: subprocess.Popen[Any] | None = None
    previous: dict[int, Any] = {}
    try:
        previous = {sig: signal.signal(sig, _raise_stop) for sig in _STOP_SIGNALS}
        # its own process group, so stopping it also stops the server's workers
        proc = subprocess.Popen(cmd, env=env, start_new_session=True)
        deadline = time.monotonic() + ready_timeout
        while not _healthy(url):
            if proc.poll() is not None:
                raise AblateError(f"mlflow server exited with status {proc.returncode} before it was ready "
                                  f"(its messages are above)")
            if time.monotonic() > deadline:
                raise AblateError(f"mlflow server did not answer on {url} within {ready_timeout:.0f} s")
            time.sleep(0.5)
        click.echo(f"ready: {url}", err=True)
        for line in _experiment_links(uri, url):
            click.echo(line)
        proc.wait()
    except _Stop as stop:
        return stop.signum
    finally:
        for sig in previous:  # a second Ctrl-C must not cut the cleanup short
            signal.signal(sig, signal.SIG_IGN)
        if proc is not None:
            _stop(proc)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


@click.command("ui")
@state_dir_option
@tracking_option
@click.option("--port", type=click.IntRange(1, 65535), default=5000, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Interface to listen on; 0.0.0.0 exposes the UI, which has no login, to the network.")
@click.option("--timeout", "ready_timeout", type=float, default=120.0, show_default=True,
              help="Seconds to wait for the server to answer before giving up.")
def command(state_dir: Path, tracking_uri: str | None, port: int, host: str, ready_timeout: float) -> None:
    """Serve the MLflow UI for the results in the state folder (or --tracking-uri), until Ctrl-C.

    \b
        ablate ui                                  # .ablate/mlflow.db on http://127.0.0.1:5000
        ablate ui --state-dir runs/ --port 5001
        ablate ui --tracking-uri sqlite:////data/ablate/mlflow.db

    Runs `mlflow server --workers 1` on 127.0.0.1, prints its URL and a link per experiment that
    opens MLflow's model-training view with every cell listed. Ctrl-C, SIGTERM and SIGHUP stop the
    server with every process it started.
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
    if not _is_loopback(host):
        click.echo(f"warning: --host {host} serves the MLflow UI without authentication: anyone who can reach "
                   f"port {port} can read, edit and delete these runs", err=True)
    cmd, env = _server_command(uri, host, port, state_dir)
    url = _browse_url(host, port)
    click.echo(f"MLflow UI: {url}  (store {uri}; Ctrl-C stops it)")
    stopped_by = _serve(cmd, env, url, uri, ready_timeout)
    if stopped_by:
        click.echo(f"stopped the MLflow server ({signal.Signals(stopped_by).name})", err=True)
        sys.exit(128 + stopped_by)
