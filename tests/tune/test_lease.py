"""Drivers of one experiment on one store: real `ablate run` processes, one of them SIGKILLed.

    .venv/bin/python -m pytest tests/tune/test_lease.py

The drivers are the ``ablate`` command in subprocesses attached to the session's Ray (``RAY_ADDRESS``),
against a SQLite store, with a 1 s heartbeat (``ABLATE_HEARTBEAT_S``). A second driver is refused while
the first is alive. A reader holding the database open in another process costs a sweep nothing. (A
killed driver's sweep and cells reading as stale, in ``ablate status`` too, and the next driver ending
them as killed: tests/tune/test_faults.py, the killed-driver test.)
"""

from __future__ import annotations

import io
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ablate.spec import load_experiment
from ablate.track import RunStore, default_tracking_uri

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("no_tracking_env")]

CELLS = """\
backbone: {name: swinir-tiny, embed_dim: 16, depths: [1, 1], num_heads: 2, window_size: 4}
task: sr-x2
train: {steps: 40, batch_size: 2, patch_size: 16, val_size: 32, eval_every: 20, checkpoint_every: 5,
        lowprec_eval: false}
probes: {every: 20, patch_size: 16}
"""


def _experiment(state: Path, name: str) -> Path:
    path = state.parent / f"{name}.yaml"
    path.write_text(f"name: {name}\ngrid:\n  norm: [token_ln, global_ln]\n{CELLS}")
    return path


def _env(ray_address: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "ABLATE_STATE_DIR")}
    env.update(RAY_ADDRESS=ray_address, ABLATE_HEARTBEAT_S="1")
    return env


def _ablate_cmd(*args: str) -> list[str]:
    return [sys.executable, "-c", "from ablate.cli import main; main()", *args]


def _wait(what: str, check: Callable[[], Any], proc: subprocess.Popen[str], timeout: float = 240) -> Any:
    """Poll ``check()`` until it returns something truthy; fail if ``proc`` exits first."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the driver exited (rc {proc.returncode}) before {what}:\n{out}\n{err}")
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def _runs(state: Path, name: str, kind: str = "all") -> list[dict[str, Any]]:
    return RunStore(default_tracking_uri(state)).runs(name, kind=kind)


def _leased_sweep(state: Path, name: str) -> dict[str, Any] | None:
    return next((r for r in _runs(state, name, "sweeps")
                 if r["status"] == "running" and "ablate.driver.heartbeat" in r["tags"]), None)


def _kill(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.communicate()


def test_a_second_driver_is_refused_while_the_first_is_alive(ray_session: str, fresh_state: Any) -> None:
    state = fresh_state("busy")
    yaml_path = _experiment(state, "lease-busy")
    # 3 CPUs per trial on the session's 2-CPU Ray: the first driver holds its lease and waits for ever
    first = subprocess.Popen(_ablate_cmd("run", str(yaml_path), "--state-dir", str(state), "--cpus-per-trial", "3",
                                         "--no-dashboard"), env=_env(ray_session), text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        sweep = _wait("its lease", lambda: _leased_sweep(state, "lease-busy"), first)
        assert sweep["tags"]["ablate.driver.pid"] == str(first.pid)
        before = _runs(state, "lease-busy")
        second = subprocess.run(_ablate_cmd("run", str(yaml_path), "--state-dir", str(state)), env=_env(ray_session),
                                capture_output=True, text=True, timeout=300)
        assert first.poll() is None, "the first driver ended before the second one was refused"
    finally:
        _kill(first)
    assert second.returncode != 0 and second.stdout == ""
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1, second.stderr
    assert lines[0].startswith("error: experiment 'lease-busy' is being run by another driver (host ")
    assert f", pid {first.pid}, since " in lines[0]
    after = _runs(state, "lease-busy")  # nothing logged: the same runs, their tags as they were but the beat
    assert [(r["run_id"], r["status"]) for r in after] == [(r["run_id"], r["status"]) for r in before]


def test_a_reader_holding_the_database_costs_a_sweep_nothing(ray_session: str, fresh_state: Any) -> None:
    """Another process keeps a read transaction open on mlflow.db for 10 s while the sweep writes: the
    writes wait for it (MLflow's 20 s SQLite busy timeout; the Tracker retries a locked database beyond
    that) and nothing is lost."""
    from ablate.tune import SweepOptions, run_sweep

    state = fresh_state("reader")
    yaml_path = _experiment(state, "lease-reader")
    reader = subprocess.Popen([sys.executable, "-c", _READER, str(state / "mlflow.db"), "10"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # one cell at a time (one trial worker): the sweep writes for longer than the 10 s either way
    summary = run_sweep(load_experiment(yaml_path), SweepOptions(state_dir=state, stream=io.StringIO(),
                                                                 dashboard=False, max_concurrent=1))
    ended = time.time()
    out, err = reader.communicate(timeout=120)
    assert reader.returncode == 0, err
    held, released = (float(t) for t in out.split())
    assert released - held >= 10 and ended > released  # the sweep was still writing while it was held
    assert set(summary.statuses.values()) == {"finished"}
    with sqlite3.connect(state / "mlflow.db") as con:
        for run in _runs(state, "lease-reader", "cells"):
            steps = [s for (s,) in con.execute("SELECT step FROM metrics WHERE run_uuid = ? AND key = 'val/psnr' "
                                               "ORDER BY step", (run["run_id"],))]
            assert steps == [20, 40], (run["cell"], steps)


# waits until a cell run is running (short reads), then holds one read transaction for argv[2] seconds
_READER = """\
import sqlite3, sys, time
con = sqlite3.connect(sys.argv[1], timeout=60, isolation_level=None)
deadline = time.time() + 300
while not con.execute("SELECT 1 FROM tags WHERE key = 'ablate.cell'").fetchone():
    assert time.time() < deadline, "no cell run appeared"
    time.sleep(0.1)
con.execute("BEGIN")
con.execute("SELECT count(*) FROM metrics").fetchone()
held = time.time()
time.sleep(float(sys.argv[2]))
con.execute("COMMIT")
print(held, time.time())
"""
