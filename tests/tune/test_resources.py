from __future__ import annotations

from pathlib import Path

from ablate.spec import load_experiment
from ablate.tune import SweepOptions
from ablate.tune._setup import trial_resources


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


def test_max_retries_defaults_to_3_the_command_line_wins_and_a_bad_value_is_refused(tmp_path: Path) -> None:
    import pytest

    from ablate.errors import SpecError
    from ablate.tune._setup import max_retries

    f = tmp_path / "r.yaml"
    f.write_text("name: r\nnorm: token_ln\nbackbone: swinir-tiny\ntask: sr-x2\n")
    assert load_experiment(f).resources.max_retries == 3
    assert max_retries(load_experiment(f), SweepOptions()) == 3
    f.write_text("name: r\nnorm: token_ln\nbackbone: swinir-tiny\ntask: sr-x2\nresources: {max_retries: 0}\n")
    assert max_retries(load_experiment(f), SweepOptions()) == 0
    assert max_retries(load_experiment(f), SweepOptions(max_retries=5)) == 5
    for bad in ("-1", "1.5", "true", "lots"):
        f.write_text(f"name: r\nnorm: token_ln\nbackbone: swinir-tiny\ntask: sr-x2\nresources: {{max_retries: {bad}}}\n")
        with pytest.raises(SpecError, match=r"resources\.max_retries: expected an integer ≥ 0"):
            load_experiment(f)
