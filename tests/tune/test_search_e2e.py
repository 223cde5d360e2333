"""``run_search`` end to end: Optuna through real local Ray, trials logged as child runs in SQLite."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import pytest
from paced import paced

from ablate.spec import load_experiment
from ablate.tune import SweepOptions, run_search

SPEC = """\
name: search-e2e
norm: token_ln
backbone: {name: swinir-tiny, embed_dim: 16, depths: [1, 1], num_heads: 2, window_size: 4}
task: sr-x2
train: {steps: 10, batch_size: 2, patch_size: 16, val_size: 32, eval_every: 5, lowprec_eval: false}
probes: {every: 5, patch_size: 16}
search:
  metric: val/psnr
  mode: max
  num_samples: 2
  scheduler: none
  space:
    train.optimizer.lr: {type: loguniform, low: 1.0e-4, high: 1.0e-2}
"""


@pytest.mark.slow
@pytest.mark.usefixtures("ray_session", "no_tracking_env")
def test_each_trial_is_a_cell_with_its_sampled_lr(fresh_state: Callable[[str], Path]) -> None:
    from mlflow.tracking import MlflowClient

    state = fresh_state("search")
    f = state.parent / "search.yaml"
    f.write_text(SPEC)
    summary = run_search(load_experiment(f), SweepOptions(state_dir=state, stream=io.StringIO()))
    assert sorted(summary.statuses.values()) == ["finished", "finished"]

    client = MlflowClient(summary.tracking_uri)
    exp = client.get_experiment_by_name("search-e2e")
    runs = client.search_runs([exp.experiment_id])
    parent = [r for r in runs if r.info.run_id == summary.parent_run_id][0]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == summary.parent_run_id]
    assert len(children) == 2
    lrs = {float(r.data.params["train.optimizer.lr"]) for r in children}
    assert len(lrs) == 2 and all(1e-4 <= lr <= 1e-2 for lr in lrs)
    assert {r.data.tags["ablate.cell"] for r in children} == set(summary.statuses)
    assert all(r.data.tags["ablate.search"] == "optuna" for r in children)
    assert all("final/psnr" in r.data.metrics for r in children)
    assert any(k.startswith("ablate.best.") for k in parent.data.tags)


def test_search_needs_a_search_section(tmp_path: Path) -> None:
    """Checked before anything starts: no Ray, no MLflow store."""
    from ablate.errors import AblateError

    f = tmp_path / "plain.yaml"
    f.write_text(SPEC.split("search:")[0].replace("search-e2e", "plain"))
    with pytest.raises(AblateError, match="expected a 'search' section"):
        run_search(load_experiment(f), SweepOptions(state_dir=tmp_path / "state", stream=io.StringIO()))
    assert not (tmp_path / "state").exists()


KILL_SPEC = SPEC.replace("name: search-e2e", "name: search-kill").replace("steps: 10,", "steps: 30,") \
    .replace("num_samples: 2", "num_samples: 2\n  scheduler: asha\n  grace_period: 10").replace("  scheduler: none\n", "") \
    .replace("norm: token_ln\n", "grid: {norm: [token_ln, rms_norm]}\n")
# one trial at a time (one trial worker per study), the driver waiting 0.3 s before it takes each result:
# a trial runs a few seconds of wall time whatever the machine's speed, so the kill finds one running
_DRIVER = paced("""
import sys
from pathlib import Path
from ablate.spec import load_experiment
from ablate.tune import SweepOptions, run_search
run_search(load_experiment(sys.argv[1]), SweepOptions(state_dir=Path(sys.argv[2]), max_concurrent=1))
""")


def _trial_states(state: Path) -> list[str]:
    """The state of every trial of every study so far, ``RUNNING`` only for a trial that reported a step (a
    cell under way, not one just asked for); read-only: the driver writes."""
    import sqlite3

    db = state / "mlflow.optuna.db"
    if not db.exists():
        return []
    try:
        with sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True, timeout=1) as con:
            rows = con.execute("SELECT t.state, COUNT(v.trial_id) FROM trials t LEFT JOIN trial_intermediate_values v "
                               "ON v.trial_id = t.trial_id GROUP BY t.trial_id").fetchall()
    except sqlite3.OperationalError:  # not created yet, or being written
        return []
    return [st for st, reported in rows if st != "RUNNING" or reported]


@pytest.mark.slow
@pytest.mark.usefixtures("no_tracking_env")
def test_a_search_killed_mid_way_continues_without_duplicates(fresh_state: Callable[[str], Path],
                                                               ray_session: str) -> None:
    """SIGKILL the driver once a trial has ended and the next one runs, run the search again: every study
    ends with its trials, each cell one MLflow run, no configuration sampled twice, and a confirm file. Both
    drivers join the session's Ray (Ray ends a dead driver's trials)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    import optuna
    from mlflow.tracking import MlflowClient

    from ablate.tune import storage_url

    state = fresh_state("search-kill")
    f = state.parent / "kill.yaml"
    f.write_text(KILL_SPEC)
    script = state.parent / "driver.py"
    script.write_text(_DRIVER)
    env = {**os.environ, "PYTHONPATH": os.getcwd(), "RAY_ADDRESS": ray_session}
    cmd = [sys.executable, str(script), str(f), str(state)]
    log = state.parent / "first-driver.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.time() + 400
    seen: list[str] = []
    while time.time() < deadline and proc.poll() is None:
        seen = _trial_states(state)
        if "RUNNING" in seen and {"COMPLETE", "PRUNED"} & set(seen):
            break
        time.sleep(0.05)
    assert proc.poll() is None, f"the search ended before the kill ({seen}):\n{log.read_text()[-3000:]}"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert (state / "search-kill-confirm.yaml").exists()

    uri = f"sqlite:///{state / 'mlflow.db'}"
    url = storage_url(uri, state)
    for s in optuna.get_all_study_summaries(url):
        every = optuna.load_study(study_name=s.study_name, storage=url).trials
        # a trial the kill caught before its values were drawn is closed as failed; it never ran a cell
        assert all(t.state.name == "FAIL" and not t.params for t in every if t.user_attrs.get("ablate.unsampled"))
        trials = [t for t in every if not t.user_attrs.get("ablate.duplicate") and not t.user_attrs.get("ablate.unsampled")]
        ended = [t for t in trials if t.state.name in ("COMPLETE", "PRUNED")]
        assert len(ended) == 2 and not [t for t in trials if t.state.name == "RUNNING"]
        lrs = [t.params["train.optimizer.lr"] for t in trials]
        assert len(lrs) == len(set(lrs))
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("search-kill")
    cells = [r.data.tags["ablate.cell"] for r in client.search_runs([exp.experiment_id])
             if "ablate.cell" in r.data.tags]
    assert len(cells) == len(set(cells)) == 4
