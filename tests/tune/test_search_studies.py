"""The studies of a search without Ray: equal budgets, re-asked failures, resuming, confirm files, budgets."""

from __future__ import annotations

from pathlib import Path

import pytest

from ablate.errors import SpecError
from ablate.spec import expand, load_experiment
from ablate.status import CellStatus
from ablate.tune import read_budgets, search_preview
from ablate.tune._confirm import confirm_spec, write_confirm
from ablate.tune._studies import VariantStudies, estimated_steps, rungs

SPEC = """\
name: studies
grid:
  norm: [token_ln, group_norm]
backbone: {name: swinir-tiny, embed_dim: 16, depths: [1, 1], num_heads: 2, window_size: 4}
task: sr-x2
train: {steps: 40, batch_size: 2, patch_size: 16, val_size: 32, eval_every: 5}
search:
  num_samples: 3
  scheduler: asha
  space:
    train.optimizer.lr: {type: loguniform, low: 1.0e-4, high: 3.0e-3}
    norm.groups: {type: choice, values: [1, 2, 4], when: {norm: group_norm}}
"""


def _spec(tmp_path: Path, text: str = SPEC) -> object:
    f = tmp_path / "s.yaml"
    f.write_text(text)
    return load_experiment(f)


def _open(tmp_path: Path, spec: object) -> VariantStudies:
    return VariantStudies.open(f"sqlite:///{tmp_path / 'optuna.db'}", spec, expand(spec))  # type: ignore[arg-type]


def test_variants_take_turns_and_each_gets_the_same_trials(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    studies = _open(tmp_path, spec)
    started = [studies.next() for _ in range(6)]
    assert all(s is not None for s in started)
    assert studies.next() is None  # every study has its 3 trials running
    variants = [s[0] for s in started if s]
    assert variants[:2] != [variants[0]] * 2 and sorted(variants).count(variants[0]) == 3
    groups = {c.id: c.norm.name for c in expand(spec)}  # type: ignore[arg-type]
    for variant, _, params in (s for s in started if s):
        assert ("norm.groups" in params) == (groups[variant] == "group_norm")  # conditional dimension
        assert 1e-4 <= params["train.optimizer.lr"] <= 3e-3
    for variant, number, _ in (s for s in started if s):
        studies.finish(variant, number, CellStatus.FINISHED, 20.0 + number, steps=40)
    assert studies.finished()


def test_a_failed_trial_is_asked_again(tmp_path: Path) -> None:
    studies = _open(tmp_path, _spec(tmp_path))
    first = studies.next()
    assert first is not None
    studies.finish(first[0], first[1], CellStatus.FAILED, None)
    done = []
    while (todo := studies.next()) is not None:
        done.append(todo)
    assert [v for v, _, _ in done].count(first[0]) == 3  # three more: the failed one does not count
    for v, n, _ in done:
        studies.finish(v, n, CellStatus.PRUNED if n % 2 else CellStatus.DIVERGED, None)
    assert studies.finished()
    budgets = read_budgets(f"sqlite:///{tmp_path / 'optuna.db'}", "studies")
    assert sorted(b.failed for b in budgets) == [0, 1]
    assert all(b.pruned + b.diverged + b.finished == 3 for b in budgets)


def test_a_killed_search_resumes_its_running_trials_with_the_same_values(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    studies = _open(tmp_path, spec)
    a, b = studies.next(), studies.next()
    assert a is not None and b is not None
    studies.finish(a[0], a[1], CellStatus.FINISHED, 21.0)
    del studies  # the driver is killed: b stays running in the storage
    again = _open(tmp_path, spec)
    resumed = again.next()
    assert resumed == b  # handed out again: same variant, trial number and values
    rest = []
    while (todo := again.next()) is not None:
        rest.append(todo)
    seen = [str(sorted(p.items())) for _, _, p in [a, b, *rest]]
    assert len(seen) == 6 and len(set(seen)) == 6  # no configuration sampled twice


def test_a_trial_killed_before_its_values_were_drawn_is_closed_not_resumed(tmp_path: Path) -> None:
    """The driver died between Optuna's ``ask`` (the trial exists, RUNNING) and drawing its values: the next
    search closes it as failed without counting it, and samples a trial in its place (before, it was handed
    out again with no values at all: the base cell's learning rate, recorded as a sampled trial)."""
    import optuna

    spec = _spec(tmp_path, SPEC.replace("num_samples: 3", "num_samples: 1"))
    studies = _open(tmp_path, spec)
    a = studies.next()
    assert a is not None
    variant = studies.variants[a[0]]
    studies.finish(a[0], a[1], CellStatus.FINISHED, 21.0)
    other = next(v for name, v in studies.variants.items() if name != a[0])
    orphan = other.study.ask()  # killed right here
    del studies
    again = _open(tmp_path, spec)
    todo = again.next()
    assert todo is not None and todo[0] != a[0] and todo[1] != orphan.number and todo[2], todo
    assert again.next() is None
    closed = again.variants[todo[0]].study.trials[orphan.number]
    assert closed.state == optuna.trial.TrialState.FAIL and closed.user_attrs["ablate.unsampled"] is True
    assert again.counts(todo[0])["failed"] == 0 and again.counts(a[0])["complete"] == 1
    assert variant.study.trials[a[1]].params  # the finished one keeps its values
    again.finish(todo[0], todo[1], CellStatus.FINISHED, 20.0)
    budgets = {b.variant: b for b in read_budgets(f"sqlite:///{tmp_path / 'optuna.db'}", "studies")}
    assert [(b.finished, b.running, b.failed) for b in budgets.values()] == [(1, 0, 0), (1, 0, 0)]


def test_a_full_study_still_resumes_its_last_running_trial(tmp_path: Path) -> None:
    spec = _spec(tmp_path, SPEC.replace("num_samples: 3", "num_samples: 1"))
    studies = _open(tmp_path, spec)
    a, b = studies.next(), studies.next()
    assert a is not None and b is not None and studies.next() is None
    again = _open(tmp_path, spec)
    got = [again.next(), again.next()]
    assert sorted(map(str, got)) == sorted(map(str, [a, b]))
    assert again.next() is None and not again.finished()


def test_rungs_and_estimate() -> None:
    from ablate.spec import SearchSpec

    srch = SearchSpec(num_samples=4, scheduler="asha", grace_period=10, reduction_factor=2)
    assert rungs(srch, 100, 5) == [10, 20, 40, 80]
    assert estimated_steps(srch, 100, 5) == round(4 * (10 + 10 / 2 + 20 / 4 + 40 / 8 + 20 / 16))
    assert estimated_steps(SearchSpec(num_samples=4), 100, 5) == 400


def test_preview_prints_each_variant(tmp_path: Path) -> None:
    text = search_preview(_spec(tmp_path))  # type: ignore[arg-type]
    assert "token_ln" in text and "group_norm" in text and "5, 10, 20" in text and "nothing was run" in text


def test_confirm_file_validates_and_plans_on_fresh_seeds(tmp_path: Path) -> None:
    spec = _spec(tmp_path)
    bases = expand(spec)  # type: ignore[arg-type]
    best = {bases[0].id: {"train.optimizer.lr": 5e-4}, bases[1].id: {"train.optimizer.lr": 1e-3, "norm.groups": 2}}
    assert "search" not in confirm_spec(spec, bases, best)  # type: ignore[arg-type]
    path = write_confirm(spec, bases, best, tmp_path / "studies-confirm.yaml")  # type: ignore[arg-type]
    confirm = load_experiment(path)
    cells = expand(confirm)
    assert confirm.name == "studies-confirm" and confirm.search is None
    assert len(cells) == 6 and sorted({c.seed for c in cells}) == [1, 2, 3]
    assert {c.train.optimizer.lr for c in cells} == {5e-4, 1e-3}
    assert {c.norm.kwargs.get("groups") for c in cells if c.norm.name == "group_norm"} == {2}


@pytest.mark.parametrize(("line", "message"), [
    ("  reduction_factor: 1", "search.reduction_factor: expected an integer ≥ 2, got 1"),
    ("  grace_period: 0", "search.grace_period: expected a positive integer"),
    ("  confirm_seeds: [0, 4]", "search.confirm_seeds: expected seeds other than the search's own ([0])"),
    ("  scheduler: hyperband\n  reduction_factor: 3", None),
])
def test_search_settings_errors_are_one_line(tmp_path: Path, line: str, message: str | None) -> None:
    text = SPEC.replace("  scheduler: asha\n", "" if "scheduler" in line else "  scheduler: asha\n") \
        .replace("  space:\n", line + "\n  space:\n")
    if message is None:
        assert _spec(tmp_path, text).search.reduction_factor == 3  # type: ignore[attr-defined]
        return
    with pytest.raises(SpecError) as err:
        _spec(tmp_path, text)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_a_conditional_parameter_is_checked_by_its_component(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="search.space.norm.groups"):
        _spec(tmp_path, SPEC.replace("when: {norm: group_norm}", "when: {norm: batch_norm}"))
    with pytest.raises(SpecError, match="search.space.norm.groups.when"):
        _spec(tmp_path, SPEC.replace(", when: {norm: group_norm}", ""))


def test_old_search_specs_keep_their_hash(tmp_path: Path) -> None:
    """New keys left at their defaults are not in the hash."""
    spec = _spec(tmp_path, SPEC.replace("    norm.groups: {type: choice, values: [1, 2, 4], when: {norm: group_norm}}\n",
                                        ""))
    cfg = spec.to_config()["search"]  # type: ignore[attr-defined]
    assert "grace_period" not in cfg and "confirm_seeds" not in cfg
    assert "when" not in cfg["space"]["train.optimizer.lr"]


def test_the_budget_table_flags_a_variant_with_fewer_results() -> None:
    from ablate.report import budget_text
    from ablate.tune import VariantBudget

    text = budget_text([VariantBudget("token_ln", "a", finished=3), VariantBudget("rms_norm", "b", finished=1, failed=2)])
    assert "| rms_norm | 1 | 0 | 0 | 2 |" in text and "imbalance: rms_norm (1)" in text
    assert "same budget" in budget_text([VariantBudget("a", "a", finished=2), VariantBudget("b", "b", pruned=2)])
