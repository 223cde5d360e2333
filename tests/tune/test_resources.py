from __future__ import annotations

from pathlib import Path

from ablate.spec import load_experiment
from ablate.tune import SweepOptions
from ablate.tune._base import trial_resources


def test_command_line_wins_over_the_spec_and_zero_gpus_is_a_choice(tmp_path: Path):
    f = tmp_path / "r.yaml"
    f.write_text("name: r\nnorm: token_ln\nbackbone: swinir-tiny\ntask: sr-x2\n"
                 "resources: {cpus_per_trial: 2, gpus_per_trial: 1, max_concurrent: 3}\n")
    spec = load_experiment(f)
    assert trial_resources(spec, SweepOptions()) == (2, 1, 3)
    assert trial_resources(spec, SweepOptions(cpus_per_trial=1, gpus_per_trial=0, max_concurrent=1)) == (1, 0, 1)
    f.write_text("name: r\nnorm: token_ln\nbackbone: swinir-tiny\ntask: sr-x2\n")
    cpus, gpus, conc = trial_resources(load_experiment(f), SweepOptions())
    assert (cpus, gpus) == (1, 0) and conc is None
