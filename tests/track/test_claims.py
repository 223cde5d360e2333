"""A driver's claim on an experiment, alone: ``Claims`` on a real SQLite store, without a Tracker.

    .venv/bin/python -m pytest tests/track/test_claims.py

The sweep runs are made with ``MlflowClient`` directly, with the lease tags a driver writes;
tests/track/test_driver_lease.py checks the same rules through the Tracker, tests/tune/test_lease.py and
tests/cli/test_train_cmd.py with real drivers in other processes.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from ablate.errors import AblateError
from ablate.track import RunStore, State, Tag, lease_tags
from ablate.track._claims import Claims
from ablate.track._retry import Retry


@pytest.fixture
def uri(state_dir: Path) -> str:
    return f"sqlite:///{state_dir / 'mlflow.db'}"


@pytest.fixture
def claims(uri: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Claims]:
    from mlflow import MlflowClient

    monkeypatch.setenv("ABLATE_HEARTBEAT_S", "0.2")
    client = MlflowClient(uri)

    def set_tags(run_id: str, tags: Mapping[str, Any]) -> None:
        for key, value in tags.items():
            client.set_tag(run_id, key, value)

    out = Claims(uri, client, Retry(uri, remote=False),
                 lambda name, kind: RunStore(uri).runs(name, kind=kind), set_tags)
    yield out
    out.release()


def _sweep(claims: Claims, experiment: str, tags: Mapping[str, str]) -> str:
    client = claims.client
    exp = client.get_experiment_by_name(experiment)
    exp_id = exp.experiment_id if exp is not None else client.create_experiment(experiment)
    run_id: str = client.create_run(exp_id, tags={Tag.SWEEP: "1", Tag.STATUS: "running", **tags}).info.run_id
    return run_id


def test_a_held_claim_refuses_the_next_in_one_line_until_released(claims: Claims) -> None:
    assert claims.claim("exp") == []
    run_id = _sweep(claims, "exp", lease_tags())
    claims.hold("exp", run_id)
    assert claims.heartbeat is not None and claims.heartbeat.run_id == run_id
    with pytest.raises(AblateError) as info:
        claims.claim("exp", then="then run `ablate train` again")
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith("experiment 'exp' is being run by another driver (host ")
    assert f"pid {os.getpid()}" in msg and msg.endswith("then run `ablate train` again")
    thread = claims.heartbeat._thread
    claims.release(run_id)
    assert claims.heartbeat is None and not thread.is_alive()
    # released while its run still says running: this process no longer holds it, so it counts as gone
    notes = claims.claim("exp")
    assert len(notes) == 1 and "0 running cell run(s)" in notes[0]
    run = claims.client.get_run(run_id)
    assert run.info.status == State.KILLED and run.data.tags[Tag.STATUS] == "killed"


def test_hold_backs_off_when_a_live_driver_slipped_in(claims: Claims) -> None:
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        other = {**lease_tags(), Tag.DRIVER_PID: str(sleeper.pid)}  # another process of this host, alive
        first = _sweep(claims, "race", other)
        mine = _sweep(claims, "race", lease_tags(now=time.time() + 1))
        with pytest.raises(AblateError, match=f"pid {sleeper.pid}"):
            claims.hold("race", mine)
        assert claims.heartbeat is None
        assert claims.client.get_run(mine).info.lifecycle_stage == "deleted"
        assert claims.client.get_run(first).info.status == State.RUNNING  # a refused claim ends nothing
    finally:
        sleeper.kill()
        sleeper.wait()
