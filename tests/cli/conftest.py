"""Fixtures for `ablate ui`: a small MLflow store written through the real Tracker, and a way to run
`ablate ui` on it as a subprocess (stopped, with its server, whatever the test does)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
UI_EXPERIMENT = "ui-review"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _children(pid: int) -> list[tuple[int, int]]:
    """``(pid, process group)`` of the live children of ``pid``, from /proc."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # it ended while we looked
            continue
        state, ppid, pgrp = fields[0], int(fields[1]), int(fields[2])
        if ppid == pid and state != "Z":
            out.append((int(stat.parent.name), pgrp))
    return out


def _group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of process group ``pgid``."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            out.append(int(stat.parent.name))
    return out


@dataclass
class UI:
    """A running `ablate ui`: its process, base URL, and every line it (and its server) printed so far.

    A thread drains the pipe: the server logs a line per request, and a full pipe would block it.
    """

    proc: subprocess.Popen[str]
    url: str
    lines: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)

    def read_until(self, predicate: Callable[[str], bool], timeout: float = 180) -> str:
        """The first line printed that satisfies ``predicate``, waiting for it up to ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if predicate(line):
                    return line
            if self.proc.poll() is not None and not self._reader.is_alive():
                break
            time.sleep(0.2)
        raise AssertionError(f"no such line from ablate ui (status {self.proc.poll()}):\n" + "".join(self.lines[-30:]))

    def wait_healthy(self, timeout: float = 180) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                pass
            assert self.proc.poll() is None, "ablate ui exited:\n" + "".join(self.lines[-30:])
            assert time.monotonic() < deadline, "the MLflow server did not start"
            time.sleep(0.5)

    def server_group(self) -> int:
        """The process group of the `mlflow server` that `ablate ui` started."""
        kids = _children(self.proc.pid)
        assert len(kids) == 1, kids
        return kids[0][1]

    @staticmethod
    def group_members(pgid: int, wait: float = 0.0) -> list[int]:
        """Live processes of group ``pgid``, after waiting up to ``wait`` s for there to be none."""
        deadline = time.monotonic() + wait
        while _group_members(pgid) and time.monotonic() < deadline:
            time.sleep(0.1)
        return _group_members(pgid)


def _template_dir(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    cache = getattr(request.config, "cache", None)
    return cache.mkdir("ablate-mlflow") if cache is not None else tmp_path_factory.getbasetemp() / "ablate-mlflow"


@pytest.fixture(scope="session")
def ui_store(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Experiment ``ui-review``: token_ln, i_ln, global_ln+rescale × seeds 0, 1, plus a diverged and a
    failed cell, logged as one sweep through the real Tracker."""
    from ablate.testing.synthetic import log_synthetic, prepared_store, run_name, synthetic_cells
    from ablate.track import Tracker

    state = tmp_path_factory.mktemp("ui-store")
    uri = prepared_store(state, _template_dir(request, tmp_path_factory))
    tracker = Tracker(uri, state)
    cells = synthetic_cells(("token_ln", "i_ln", "global_ln+rescale"), (0, 1), steps=6,
                            extra=[("token_ln", 2, "diverged"), ("i_ln", 2, "failed")])
    runs = log_synthetic(tracker, UI_EXPERIMENT, cells)
    sweep = tracker.store().runs(UI_EXPERIMENT, kind="sweeps")[0]["run_id"]
    return {"uri": uri, "state": state, "runs": runs, "sweep": sweep,
            "names": {c.id: run_name(c) for c in cells}, "cells": cells}


@pytest.fixture
def free_port() -> int:
    return _free_port()


@pytest.fixture
def start_ui(tmp_path: Path) -> Iterator[Callable[..., UI]]:
    """``start_ui("--tracking-uri", uri)``: `ablate ui` on a free port; killed with its server afterwards."""
    started: list[UI] = []

    def start(*args: str) -> UI:
        port = _free_port()
        env = dict(os.environ, PYTHONPATH=str(ROOT), MLFLOW_TRACKING_URI="", PYTHONUNBUFFERED="1")
        proc = subprocess.Popen([sys.executable, "-c", "from ablate.cli import main; main()", "ui", *args,
                                 "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, env=env, cwd=tmp_path)
        ui = UI(proc, f"http://127.0.0.1:{port}")
        started.append(ui)
        return ui

    yield start
    for ui in started:  # a failed test must not leave servers behind
        groups = {g for _, g in _children(ui.proc.pid)} if ui.proc.poll() is None else set()
        if ui.proc.poll() is None:
            ui.proc.send_signal(signal.SIGTERM)
            try:
                ui.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                ui.proc.kill()
                ui.proc.wait()
        for group in groups:
            if _group_members(group):
                os.killpg(group, signal.SIGKILL)
