"""Faults end to end: a killed driver, killed workers, a crashing and an out-of-memory cell.

    .venv/bin/python -m pytest tests/tune/test_faults.py

Real Ray (the session's local cluster), real SQLite MLflow stores. Two tiny cells (token_ln and
global_ln, 40 steps, a checkpoint every 10, probes every 5, validation every 20) run once untouched:
the reference. Every faulted sweep of the same cells must end with the same MLflow history per cell:
the same (key, step) points with the same values, none missing, none twice (read from MLflow's
``metrics`` table itself, so a duplicate row cannot hide behind a reader that keeps one per step).
``time/*`` summary values are wall-clock seconds: their points are compared, their values are not.

The drivers (``ablate run`` and ``ablate resume`` subprocesses) run one cell at a time, and their
callback waits 0.3 s before it takes each result (``pace_s``): a trial waits for the driver between two
results, so a tiny cell's 40 steps take a few seconds of wall time and no more CPU, and each kill below
lands where it is meant to on a fast machine as on a slow one.

- The driver (an ``ablate run`` subprocess) is SIGKILLed three times, each time continued by
  ``ablate resume``: before the first checkpoint (its sweep and cell then read as stale, in ``ablate
  status`` too; the next driver ends each dead sweep as killed); mid-run, flushing every 0.2 s, when MLflow holds
  points past a checkpoint (which the resumed trial reports again); late, flushing every 5 s, when a
  checkpoint is past MLflow's points (those in between die with the driver's buffer). Between the
  second kill and the next ``ablate resume``, the checkpoint of the cell it cut short is cut in half:
  that cell starts over from step 0 on its run, the driver that meets it prints one warning line and
  tags the run. Each cell's history ends whole, once.
- A worker is SIGKILLed and another SIGTERMed (preemption) mid-cell, after a checkpoint: both cells
  are retried on their runs (``ablate.attempt`` 2) and finish.
- A test-only norm plugin (an entry point in the driver's working folder, which Ray puts on its
  workers' path) raises in one cell and runs out of memory in the other: both fail, classed ``crash``
  and ``oom``, are not retried, and the command prints one summary line and no traceback.
"""

from __future__ import annotations

import io
import math
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from paced import paced

from ablate.cli import main
from ablate.spec import expand, load_experiment
from ablate.tune import SweepOptions, run_sweep

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("ray_session", "no_tracking_env")]

STEPS = 40
CELLS = f"""\
grid: {{norm: [token_ln, global_ln]}}
backbone: {{name: swinir-tiny, embed_dim: 16, depths: [1, 1], num_heads: 2, window_size: 4}}
task: sr-x2
train: {{steps: {STEPS}, batch_size: 2, patch_size: 16, val_size: 16, eval_every: 20, checkpoint_every: 10,
         lowprec_eval: false}}
probes: {{every: 5, patch_size: 16}}
"""
# the driver as `ablate` runs it, writing buffered metrics to MLflow every `flush_s` (default 5 s);
# `paced` makes it wait `pace_s` before it takes each trial result
DRIVER = """\
import ablate.track._tracker as t
t.FLUSH_SECONDS = {flush_s}
from ablate.cli import main
main()
"""

Point = tuple[str, int]
History = dict[Point, list[Any]]  # (key, step) -> the values logged there (one, unless duplicated)


def _write_spec(folder: Path, name: str, body: str = CELLS) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(f"name: {name}\n{body}")
    return path


def histories(state: Path, experiment: str) -> dict[str, History]:
    """Every metric row of every cell run of ``experiment``, straight from MLflow's tables."""
    out: dict[str, History] = {}
    uri = f"{(state / 'mlflow.db').resolve().as_uri()}?mode=ro"
    with sqlite3.connect(uri, uri=True, timeout=30) as con:
        rows = con.execute(
            "SELECT t.value, m.key, m.step, m.value, m.is_nan FROM metrics m "
            "JOIN tags t ON t.run_uuid = m.run_uuid AND t.key = 'ablate.cell' "
            "JOIN runs r ON r.run_uuid = m.run_uuid JOIN experiments e ON e.experiment_id = r.experiment_id "
            "WHERE e.name = ?", (experiment,)).fetchall()
    for cell, key, step, value, is_nan in rows:
        out.setdefault(cell, {}).setdefault((key, int(step)), []).append("nan" if is_nan else value)
    return out


def assert_same_history(got: History, ref: History, cell: str) -> int:
    """``got`` has every point of ``ref`` once, with its value (``time/*``: any value); the count."""
    twice = sorted(p for p, values in got.items() if len(values) > 1)
    assert not twice, f"{cell}: points logged more than once: {twice[:10]}"
    missing, extra = sorted(set(ref) - set(got)), sorted(set(got) - set(ref))
    assert not missing and not extra, f"{cell}: missing {missing[:10]}, unexpected {extra[:10]}"
    differ = [p for p in ref if not p[0].startswith("time/") and got[p] != ref[p]]
    assert not differ, f"{cell}: values differ at {[(p, got[p], ref[p]) for p in differ[:5]]}"
    return len(got)


def _descendants_titled(title: str) -> list[int]:
    """Pids of this process's descendants (Ray's workers of the session cluster) whose command line
    starts with ``title``: never a process of anyone else's Ray on this machine."""
    me, found = os.getpid(), []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if cmd.startswith(title) and _descends_from(int(entry), me):
            found.append(int(entry))
    return found


def _descends_from(pid: int, ancestor: int) -> bool:
    while pid > 1:
        if pid == ancestor:
            return True
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            return False
    return False


def _trial_pid(cell_id: str, experiment: str) -> int | None:
    """The pid of the Ray worker running ``cell_id``'s trial in a sweep of ``experiment``: Tune runs a
    trial in its own folder, which ablate names after the cell, under a folder named after the sweep. (An
    idle worker of an earlier sweep of the same cells can still sit in its old folder: not that one.)"""
    for pid in _descendants_titled("ray::ImplicitFunc"):
        try:
            cwd = os.readlink(f"/proc/{pid}/cwd")
            if cwd.endswith(cell_id) and experiment in cwd:
                return pid
        except OSError:
            continue
    return None


def _wait(what: str, cond: Callable[[], Any], timeout: float = 180.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _checkpoint_step(ckpt: Path) -> int | None:
    import torch

    try:
        return int(torch.load(ckpt / "state.pt", map_location="cpu", weights_only=True)["step"])
    except Exception:  # not written yet (or being replaced)
        return None


def _flushed_steps(state: Path) -> dict[str, int]:
    """Cell id -> the highest step of its points in MLflow so far."""
    try:
        with sqlite3.connect(f"{(state / 'mlflow.db').resolve().as_uri()}?mode=ro", uri=True, timeout=1) as con:
            rows = con.execute("SELECT t.value, MAX(m.step) FROM metrics m JOIN tags t ON t.run_uuid = m.run_uuid "
                               "AND t.key = 'ablate.cell' GROUP BY t.value").fetchall()
    except sqlite3.OperationalError:  # the driver is writing
        return {}
    return {cell: int(step) for cell, step in rows}


# --------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def reference(fresh_state: Callable[[str], Path]) -> dict[str, History]:
    """The uninterrupted sweep's histories, by cell id."""
    state = fresh_state("reference")
    spec = load_experiment(_write_spec(state.parent, "faults-ref"))
    summary = run_sweep(spec, SweepOptions(state_dir=state, stream=io.StringIO(), dashboard=False, max_concurrent=1))
    assert summary.ok, summary.statuses
    ref = histories(state, "faults-ref")
    assert sorted(ref) == sorted(c.id for c in expand(spec))
    return ref


class Driver:
    """``ablate <command> FILE --state-dir STATE`` in a subprocess attached to the session's Ray."""

    def __init__(self, ray_address: str, state: Path, spec: Path, command: str, cwd: Path | None = None,
                 flush_s: float = 5.0, pace_s: float = 0.3) -> None:
        env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "ABLATE_STATE_DIR")}
        env["RAY_ADDRESS"] = ray_address
        env["PYTHONUNBUFFERED"] = "1"  # a killed driver's printed lines are in its file
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(__file__).parents[2]), env.get("PYTHONPATH")]))
        self.out = state.parent / f"{command}-{time.monotonic_ns()}.out"
        self.err = self.out.with_suffix(".err")
        # one cell at a time: one trial worker per driver (a worker's start costs more CPU than its cell)
        args = [command, str(spec), "--state-dir", str(state),
                *(["--no-dashboard", "--max-concurrent", "1"] if command in ("run", "resume") else [])]
        with open(self.out, "w") as out, open(self.err, "w") as err:
            code = paced(DRIVER.format(flush_s=flush_s), pace_s)
            self.proc = subprocess.Popen([sys.executable, "-c", code, *args], env=env, cwd=cwd, stdout=out, stderr=err)

    def wait(self, what: str, cond: Callable[[], Any]) -> Any:
        """``cond()``'s first true value, or ``"ended"`` when the driver finished cleanly first (a fast
        machine can finish a resumed segment before the point is seen; the histories are checked
        either way); fails at once when the driver exits with an error."""
        def check() -> Any:
            value = cond()
            if value or self.proc.poll() is None:
                return value
            return "ended" if self.proc.returncode == 0 else self._died(what)

        return _wait(what, check)

    def _died(self, what: str) -> None:
        raise AssertionError(f"the driver exited before {what}: {self.out.read_text()}{self.err.read_text()}")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)
        # Ray kills a dead driver's trials; wait for that, or a resumed cell would have two writers
        _wait("the killed driver's trials to end", lambda: not _descendants_titled("ray::ImplicitFunc"), 60)

    def finish(self, timeout: float = 300) -> tuple[int, str, str]:
        self.proc.wait(timeout)
        return self.proc.returncode, self.out.read_text(), self.err.read_text()


def test_a_killed_driver_resumed_three_times_logs_every_point_once(
        reference: dict[str, History], fresh_state: Callable[[str], Path], ray_session: str) -> None:
    state = fresh_state("driver-kills")
    spec = _write_spec(state.parent, "faults-driver")
    ckpts = state / "checkpoints" / "faults-driver"
    cells = sorted(reference)

    def ckpt_steps() -> dict[str, int]:
        return {c: s for c in cells if (s := _checkpoint_step(ckpts / c)) is not None}

    def progress(when: Callable[[dict[str, int], dict[str, int]], bool]) -> Callable[[], Any]:
        """A condition on (steps in MLflow, checkpoint steps) per cell; true: that snapshot."""
        def check() -> Any:
            flushed, saved = _flushed_steps(state), ckpt_steps()
            return (flushed, saved) if when(flushed, saved) else None
        return check

    kills = {}
    # 1. before the first checkpoint: MLflow holds step 0 (and 5); the cells start again from scratch
    driver = Driver(ray_session, state, spec, "run", flush_s=0.2)
    kills["first"] = driver.wait("points in MLflow", progress(lambda flushed, saved: bool(flushed)))
    driver.kill()
    # the dead driver's sweep and its running cell read as stale, in `ablate status` too
    (sweep,) = _runs(state, "faults-driver", "sweeps")
    assert sweep["status"] == "running" and sweep["stale"].startswith("driver gone since "), sweep
    status = CliRunner().invoke(main, ["status", str(spec), "--state-dir", str(state)])
    assert status.exit_code == 0, status.output
    stale = [line for line in status.output.splitlines() if f"stale ({sweep['stale']})" in line]
    assert stale and " running " not in status.output, status.output
    assert f"{len(stale)} stale" in status.output.splitlines()[-1], status.output
    # 2. mid-run, after flushes: MLflow holds points past a checkpoint, which the resumed trial reports
    # again (the duplicates a resumed sweep used to log)
    driver = Driver(ray_session, state, spec, "resume", flush_s=0.2)
    kills["mid"] = driver.wait("points past a checkpoint", progress(lambda flushed, saved: any(
        saved.get(c, STEPS) < f < STEPS for c, f in flushed.items())))
    driver.kill()
    # that cell's checkpoint is then cut in half, as a node that died while copying it (or a full disk)
    # leaves it: the next driver warns in one line and starts the cell over from step 0 on its run, and
    # the points MLflow holds past the checkpoint are not logged twice
    flushed, saved = kills["mid"]
    victim = next(c for c, f in sorted(flushed.items()) if saved.get(c, STEPS) < f < STEPS)
    ckpt = ckpts / victim / "state.pt"
    ckpt.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    # 3. late, flushing every 5 s: a checkpoint (at 20 or later) past the points in MLflow, the rest
    # lost with the driver's buffer (the gaps a resumed sweep used to leave)
    before = ckpt_steps()
    assert victim not in before  # unreadable
    driver = Driver(ray_session, state, spec, "resume")
    kills["late"] = driver.wait("a new checkpoint past MLflow's points", progress(lambda flushed, saved: any(
        s >= 20 and s > before.get(c, -1) and s > flushed.get(c, -1) for c, s in saved.items())))
    driver.kill()
    late_out = driver.out.read_text()

    killed = {r["run_id"] for r in _runs(state, "faults-driver", "sweeps")}
    code, out, err = Driver(ray_session, state, spec, "run").finish()
    assert code == 0, out + err
    assert "Traceback" not in out + err
    # the cut checkpoint: one warning line, from the driver that met it, and a tag on the cell's run
    warnings = [line for line in (late_out + out).splitlines() if line.startswith("cell ") and ": warning: " in line]
    assert len(warnings) == 1 and warnings[0].startswith(f"cell {victim}: warning: "), late_out + out
    assert "is unreadable" in warnings[0] and "starts over from step 0" in warnings[0], warnings
    got = histories(state, "faults-driver")
    counts = {c: assert_same_history(got[c], reference[c], c) for c in cells}
    print(f"\nkilled at (steps in MLflow, checkpoint steps) per cell: {kills}; points per cell: {counts}")
    assert all(n > 100 for n in counts.values()), counts
    # where each kill landed depends on the machine's speed (printed above); the guarantee checked is
    # the history, whatever the point
    runs = _cell_runs(state, "faults-driver")
    assert sorted(runs) == cells  # one run per cell across four drivers
    assert {r["tags"]["ablate.status"] for r in runs.values()} == {"finished"}
    assert "is unreadable" in runs[victim]["tags"]["ablate.warning"]
    assert not [c for c in cells if c != victim and "ablate.warning" in runs[c]["tags"]], runs
    assert any(int(r["tags"].get("ablate.attempt", "1")) > 1 for r in runs.values())  # a killed cell kept its run
    # each killed driver's sweep was ended as killed by the next driver, which said so
    sweeps = {r["run_id"]: r for r in _runs(state, "faults-driver", "sweeps")}
    assert len(killed) == 3 and len(sweeps) == 4, sweeps
    for run_id in killed:
        assert sweeps[run_id]["mlflow_status"] == "KILLED" and sweeps[run_id]["status"] == "killed"
        assert sweeps[run_id]["reason"].startswith("driver gone since "), sweeps[run_id]
    assert sum(f"the driver of sweep run {run_id} (host " in out for run_id in killed) == 1, out


def _runs(state: Path, experiment: str, kind: str = "cells") -> list[dict[str, Any]]:
    from ablate.track import RunStore

    return RunStore("sqlite:///" + (state / "mlflow.db").resolve().as_posix()).runs(experiment, kind=kind)


def _cell_runs(state: Path, experiment: str) -> dict[str, dict[str, Any]]:
    return {r["cell"]: r for r in _runs(state, experiment)}


# --------------------------------------------------------------------------------------------------
def test_killed_and_preempted_workers_are_retried_from_their_checkpoints(
        reference: dict[str, History], fresh_state: Callable[[str], Path], capfd: pytest.CaptureFixture[str]) -> None:
    from mlflow import MlflowClient

    state = fresh_state("worker-kills")
    spec = load_experiment(_write_spec(state.parent, "faults-worker"))
    ckpts = state / "checkpoints" / "faults-worker"
    kill9, term = sorted(reference)
    killed: dict[str, tuple[int, int | None]] = {}

    def killer(cell_id: str, sig: int) -> None:
        """The cell's worker dies right after the cell wrote its first checkpoint, well before it finishes:
        its pid is found first, then only the checkpoint is polled (one thread per cell, so that a fast
        machine's cells cannot finish while the other one is being killed)."""
        pid = _wait(f"the worker of {cell_id}", lambda: _trial_pid(cell_id, "faults-worker"), 120)
        # the file's first appearance is the step-10 checkpoint (a cheap poll: no load while waiting)
        _wait(f"a checkpoint of {cell_id}", lambda: (ckpts / cell_id / "state.pt").exists())
        try:
            os.kill(pid, sig)
        except ProcessLookupError:  # its worker ended already: `killed` misses it, the assertion says so
            return
        killed[cell_id] = (sig, _checkpoint_step(ckpts / cell_id))

    threads = [threading.Thread(target=killer, args=(c, sig), daemon=True)
               for c, sig in ((kill9, signal.SIGKILL), (term, signal.SIGTERM))]
    for thread in threads:
        thread.start()
    stream = io.StringIO()
    summary = run_sweep(spec, SweepOptions(state_dir=state, stream=stream, dashboard=False))
    for thread in threads:
        thread.join(5)
    output = stream.getvalue()
    assert set(killed) == {kill9, term}, output
    assert summary.ok and summary.statuses == {kill9: "finished", term: "finished"}, output
    for cell_id in (kill9, term):
        assert f"cell {cell_id}: its Ray worker died" in output and "retry 1 of 3" in output, output
    printed = capfd.readouterr()  # this process's stdout and stderr: Ray's notices went to its log
    for text in (output, printed.out, printed.err):
        assert "Traceback" not in text and "(raylet)" not in text, text
    assert summary.log_file is not None and "ActorDiedError" in summary.log_file.read_text()  # Ray's, kept

    got = histories(state, "faults-worker")
    counts = {c: assert_same_history(got[c], reference[c], c) for c in (kill9, term)}
    print(f"\nkilled (signal, checkpoint step): {killed}; points per cell: {counts}")
    client = MlflowClient("sqlite:///" + (state / "mlflow.db").resolve().as_posix())
    for run in _cell_runs(state, "faults-worker").values():
        tags = run["tags"]
        assert tags["ablate.attempt"] == "2" and tags["ablate.status"] == "finished", tags
        assert tags["ablate.failure"] == "" and tags["ablate.reason"] == ""  # the retry's note is cleared
        assert client.get_run(run["run_id"]).info.status == "FINISHED"


# --------------------------------------------------------------------------------------------------
PLUGIN = '''\
"""A test-only norm: per-token LayerNorm that fails at the first training step."""
import torch

from ablate.norms import Normalizer
from ablate.params import Param


class FaultyLN(Normalizer):
    PARAMS = {"fail": Param("crash", str, "how the first training step fails", choices=("crash", "oom"))}

    def __init__(self, dim, *, rescale=False, fail="crash"):
        super().__init__(dim, rescale=rescale)
        self.fail = fail

    def normalize(self, x):
        if torch.is_grad_enabled():  # probes and validation run without gradients: training only
            if self.fail == "oom":
                raise MemoryError("could not allocate the activations")
            raise RuntimeError("a bug in the norm")
        return torch.nn.functional.layer_norm(x, x.shape[-1:]), None
'''


@pytest.fixture(scope="module")
def plugin_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding the plugin and its entry point: the driver runs in it, Ray adds it to its
    workers' ``sys.path``, and both find ``faulty_ln`` as a plugin is found when installed."""
    folder = tmp_path_factory.mktemp("plugin")
    (folder / "faulty_norm.py").write_text(PLUGIN)
    info = folder / "faulty_norm-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: faulty-norm\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[ablate.norms]\nfaulty_ln = faulty_norm:FaultyLN\n")
    return folder


def test_a_crash_and_an_oom_fail_once_with_their_class_and_one_summary_line(
        plugin_folder: Path, fresh_state: Callable[[str], Path], ray_session: str) -> None:
    from mlflow import MlflowClient

    state = fresh_state("crash-oom")
    body = CELLS.replace("grid: {norm: [token_ln, global_ln]}",
                         "grid: {norm: [{name: faulty_ln, fail: crash}, {name: faulty_ln, fail: oom}]}")
    spec = _write_spec(state.parent, "faults-crash", body)
    code, out, err = Driver(ray_session, state, spec, "run", cwd=plugin_folder).finish()
    assert code == 1, out + err
    assert "Traceback" not in out + err and "(raylet)" not in out + err, out + err
    lines = [line for line in out.splitlines() if " cells failed " in line]
    assert len(lines) == 1, out
    assert lines[0].startswith(f"2 of 2 cells failed (1 crash, 1 oom); see `ablate status {spec} --state-dir "
                               f"{state}`; Ray's log: {state / 'logs'}"), lines[0]

    runs = _cell_runs(state, "faults-crash")
    by_failure = {r["tags"].get("ablate.failure"): r for r in runs.values()}
    assert sorted(by_failure) == ["crash", "oom"], {c: r["tags"] for c, r in runs.items()}
    client = MlflowClient("sqlite:///" + (state / "mlflow.db").resolve().as_posix())
    for failure, run in by_failure.items():
        tags = run["tags"]
        assert tags["ablate.status"] == "failed" and "ablate.attempt" not in tags, tags  # never retried
        # the reason leads with the class: `ablate status` shows it in its reason column
        assert tags["ablate.reason"].startswith(f"{failure}: "), tags["ablate.reason"]
        assert f"cell {run['cell']} failed: {failure}: " in out
        tb = Path(client.download_artifacts(run["run_id"], "errors/traceback.txt", str(state.parent / failure)))
        assert "Traceback" in tb.read_text() and "faulty_norm.py" in tb.read_text()
    crash, oom = by_failure["crash"]["tags"]["ablate.reason"], by_failure["oom"]["tags"]["ablate.reason"]
    assert "RuntimeError: a bug in the norm" in crash and "errors/traceback.txt" in crash
    for words in ("out of memory", "train.batch_size 2", "train.patch_size 16", "swinir-tiny", "MemoryError"):
        assert words in oom, oom


def test_histories_compare_points_values_and_duplicates() -> None:
    """The comparison itself: a gap, a duplicate and a changed value are each caught."""
    ref: History = {("train/loss", 5): [0.5], ("val/psnr", 20): [30.0], ("time/total_s", 60): [1.0]}
    assert assert_same_history({**ref, ("time/total_s", 60): [2.0]}, ref, "c") == 3
    for bad in ({("train/loss", 5): [0.5], ("time/total_s", 60): [1.0]},
                {**ref, ("train/loss", 5): [0.5, 0.5]},
                {**ref, ("val/psnr", 20): [math.nan]}):
        with pytest.raises(AssertionError):
            assert_same_history(bad, ref, "c")
