"""`ablate ui`: stops its MLflow server on SIGTERM, links to each experiment, warns off loopback.

    .venv/bin/python -m pytest tests/cli/test_ui.py
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest
from click.testing import CliRunner

from ablate.cli import cmd_ui, main

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads process groups from /proc")
UI_EXPERIMENT = "ui-review"  # the experiment of the ui_store fixture


def test_sigterm_stops_the_server_and_every_process_it_started(ui_store: dict[str, Any],
                                                               start_ui: Callable[..., Any]) -> None:
    ui = start_ui("--tracking-uri", ui_store["uri"])
    ui.wait_healthy()
    group = ui.server_group()
    assert group != ui.proc.pid and ui.group_members(group)  # the server leads its own group…
    link = ui.read_until(lambda line: "/#/experiments/" in line)
    assert link.split()[0] == UI_EXPERIMENT and "workflowType=machine_learning" in link
    ui.proc.send_signal(signal.SIGTERM)
    assert ui.proc.wait(timeout=60) == 128 + signal.SIGTERM
    assert ui.group_members(group, wait=10) == []  # …and none of it outlives `ablate ui`
    ui.read_until(lambda line: "stopped the MLflow server (SIGTERM)" in line, timeout=5)
    with socket.socket() as s:  # the port is free again
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", int(ui.url.rsplit(":", 1)[1])))


class _ExitsAtOnce:
    """Stands in for the `mlflow server` process: it has already exited."""

    pid = 2 ** 22 + 1  # no such process group
    returncode = 3

    def __init__(self, cmd: list[str], **kwargs: Any) -> None:
        self.cmd, self.env = cmd, kwargs.get("env", {})

    def poll(self) -> int:
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        return self.returncode


def test_binding_beyond_loopback_warns_in_one_line(ui_store: dict[str, Any], free_port: int,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[_ExitsAtOnce] = []

    def fake(cmd: list[str], **kwargs: Any) -> _ExitsAtOnce:
        seen.append(_ExitsAtOnce(cmd, **kwargs))
        return seen[-1]

    monkeypatch.setattr(cmd_ui.subprocess, "Popen", fake)
    port = free_port
    res = CliRunner().invoke(main, ["ui", "--tracking-uri", ui_store["uri"], "--host", "0.0.0.0", "--port", str(port)])
    assert res.exit_code == 2 and "mlflow server exited with status 3" in res.output
    warnings = [line for line in res.output.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "without authentication" in warnings[0] and "0.0.0.0" in warnings[0]
    assert f"MLflow UI: http://127.0.0.1:{port}" in res.output  # what to open on this machine
    (server,) = seen
    assert server.cmd[server.cmd.index("--host") + 1] == "0.0.0.0"
    assert server.env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"  # no GenAI job runner to leave behind

    res = CliRunner().invoke(main, ["ui", "--tracking-uri", ui_store["uri"], "--port", str(port)])
    assert res.exit_code == 2 and "warning" not in res.output  # loopback: the default, no warning


def test_the_stop_signal_handlers_are_restored(ui_store: dict[str, Any], free_port: int,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    monkeypatch.setattr(cmd_ui.subprocess, "Popen", _ExitsAtOnce)
    CliRunner().invoke(main, ["ui", "--tracking-uri", ui_store["uri"], "--port", str(free_port)])
    assert {sig: signal.getsignal(sig) for sig in before} == before


def test_experiment_links_list_experiments_with_runs(ui_store: dict[str, Any]) -> None:
    lines = cmd_ui._experiment_links(ui_store["uri"], "http://127.0.0.1:5000")
    assert lines[0].startswith("experiments (model-training view")
    (link,) = lines[1:]  # the Default experiment has no runs
    assert link.split()[0] == UI_EXPERIMENT and link.split()[1].startswith("http://127.0.0.1:5000/#/experiments/")
    assert cmd_ui._experiment_links("sqlite:////nonexistent/mlflow.db", "http://x") == []


@pytest.mark.parametrize(("host", "expected"), [("127.0.0.1", "http://127.0.0.1:5"), ("0.0.0.0", "http://127.0.0.1:5"),
                                                ("::", "http://[::1]:5"), ("::1", "http://[::1]:5"),
                                                ("localhost", "http://localhost:5")])
def test_browse_url(host: str, expected: str) -> None:
    assert cmd_ui._browse_url(host, 5) == expected
    assert cmd_ui._is_loopback(host) == (host not in ("0.0.0.0", "::"))


def test_stop_kills_a_group_that_ignores_sigterm() -> None:
    # a leader and its child, both deaf to SIGTERM, as a wedged server and worker would be
    code = ("import signal, subprocess, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "subprocess.Popen([sys.executable, '-c', 'import signal, time; "
            "signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)']); time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", code], start_new_session=True)
    time.sleep(1.0)
    t0 = time.monotonic()
    cmd_ui._stop(proc, timeout=1.0)
    assert time.monotonic() - t0 < 10 and proc.returncode == -signal.SIGKILL
    deadline = time.monotonic() + 5  # the orphaned child is reaped by init
    while cmd_ui._group_alive(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not cmd_ui._group_alive(proc.pid)
