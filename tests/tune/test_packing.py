"""Packing small cells on one GPU: ``resources.gpus_per_trial: 0.25`` puts four trials on a GPU.

    .venv/bin/python -m pytest tests/tune/test_packing.py

There is no GPU here, so the placement is checked against a fake one: Ray is told it has one
(``ray.init(num_gpus=1)``) and hands out quarters of it, setting ``CUDA_VISIBLE_DEVICES`` in each
trial as it would on a GPU node. That Ray runs in a subprocess of its own: the suite shares one
CPU-only Ray (``ray_session`` in tests/conftest.py), and a process can hold only one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from ablate.spec import load_experiment
from ablate.tune import SweepOptions
from ablate.tune._setup import trial_resources

EXPERIMENT = """\
name: packed
norm: token_ln
backbone: {name: swinir-tiny, embed_dim: 16, depths: [1, 1], num_heads: 2, window_size: 4}
task: dn-s25
train: {steps: 4, batch_size: 2, patch_size: 16, val_size: 32, eval_every: 4, lowprec_eval: false}
probes: {every: 0}
resources: {cpus_per_trial: 1, gpus_per_trial: 0.25}
"""

# Runs in a fresh interpreter: a Ray with 4 CPUs and one (fake) GPU; (1) four trivial trials asking
# for the resources ablate asks for, each waiting until all four have started (so they can only
# finish if they ran at once); (2) the experiment above through run_sweep, as `ablate run` runs it
# (one cell: a trial's worker imports torch, the slow part of this test on a busy machine).
SCRIPT = r"""
import json, logging, os, sys, time
from pathlib import Path

import ray
from ray import tune

from ablate.spec import load_experiment
from ablate.tune import SweepOptions, run_sweep
from ablate.tune._setup import trial_resources
from ablate.tune._trial import trainable

yaml_path, state, barrier = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
ray.init(num_cpus=4, num_gpus=1, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
spec = load_experiment(yaml_path)
cpus, gpus, _ = trial_resources(spec, SweepOptions())
resources = trainable({}, state / "unused", cpus, gpus)._resources  # what a cell's trial asks Ray for


def wait_for_all(config):
    (barrier / str(config["i"])).touch()
    deadline = time.time() + 120
    while len(list(barrier.iterdir())) < 4 and time.time() < deadline:
        time.sleep(0.1)
    tune.report({"together": len(list(barrier.iterdir())) == 4, "gpu_ids": [str(g) for g in ray.get_gpu_ids()],
                 "cuda_visible": os.environ.get("CUDA_VISIBLE_DEVICES")})


results = tune.Tuner(tune.with_resources(wait_for_all, resources),
                     param_space={"i": tune.grid_search([0, 1, 2, 3])},
                     run_config=tune.RunConfig(storage_path=str(state / "ray-probe"), verbose=0)).fit()
probe = [{k: r.metrics[k] for k in ("together", "gpu_ids", "cuda_visible")} for r in results]
summary = run_sweep(spec, SweepOptions(state_dir=state, dashboard=False, stream=sys.stderr))
print(json.dumps({"bundles": resources.bundles, "probe": probe,
                  "statuses": {k: str(v.value) for k, v in summary.statuses.items()}}))
"""


def test_a_fractional_gpu_reaches_the_trial_resources(tmp_path: Path):
    f = tmp_path / "packed.yaml"
    f.write_text(EXPERIMENT)
    spec = load_experiment(f)
    assert spec.resources.gpus_per_trial == 0.25
    assert trial_resources(spec, SweepOptions())[:2] == (1, 0.25)
    assert trial_resources(spec, SweepOptions(gpus_per_trial=0.5))[:2] == (1, 0.5)  # the command line wins


@pytest.mark.slow
@pytest.mark.usefixtures("no_tracking_env")
def test_four_quarter_gpu_trials_run_at_once_on_one_gpu_and_cells_train_without_cuda(
        tmp_path: Path, fresh_state: Callable[[str], Path]):
    yaml_path = tmp_path / "packed.yaml"
    yaml_path.write_text(EXPERIMENT)
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "MLFLOW_TRACKING_URI")}
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(yaml_path), str(fresh_state("packed")), str(barrier)],
                          env=env, capture_output=True, text=True, timeout=540)
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["bundles"] == [{"CPU": 1.0, "GPU": 0.25}]
    assert len(out["probe"]) == 4
    for trial in out["probe"]:
        assert trial["together"], out["probe"]  # all four ran at once on the one GPU
        assert trial["gpu_ids"] == ["0"] and trial["cuda_visible"] == "0"  # Ray gave each a share of GPU 0
    # CUDA_VISIBLE_DEVICES is set but there is no CUDA: train.device auto picks the CPU, the cells finish
    assert list(out["statuses"].values()) == ["finished"], proc.stderr[-4000:]
    assert "(1 CPU, 0.25 GPU per cell)" in proc.stderr
