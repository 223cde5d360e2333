"""``train.regularizer``: a component in the train section, its weight a dotted axis; ids unchanged without it.

    pytest tests/spec/test_regularizer_axis.py
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ablate.errors import SpecError
from ablate.spec import AXES, CellSpec, Component, expand, load_experiment, parse_experiment, plan_rows

DATA = Path(__file__).parent / "data"
ROOT = Path(__file__).parents[2]

# The ids of tests/spec/data/grid.yaml computed before train.regularizer existed: an experiment that
# does not name a regularizer keeps its cell ids (its MLflow runs and checkpoints), and its spec hash.
GRID_IDS = ["d1ba8a9a5a", "12c92e1660", "b842d559af", "b5214717db", "e4d2c41144", "8569d91107", "27dc5bd25a",
            "da6d0e18e0", "486c6010ad", "26645f2c10", "598582510a", "0c85b6ecce", "784bdbe8ae", "ccc8e12427",
            "51a9133450", "3c0d91af57", "f29918b3a1", "1f6df77471"]
GRID_HASH = "fc83717423"


def _spec(**extra: Any) -> Any:
    norm = {} if "norm" in extra.get("grid", {}) else {"norm": "token_ln"}
    return parse_experiment({"name": "t", **norm, "backbone": "swinir-tiny", "task": "sr-x2", **extra})


def _one(**extra: Any) -> CellSpec:
    (cell,) = expand(_spec(**extra))
    return cell


def test_an_experiment_without_a_regularizer_keeps_its_cell_ids_and_spec_hash() -> None:
    spec = load_experiment(DATA / "grid.yaml")
    assert [c.id for c in expand(spec)] == GRID_IDS
    assert spec.hash == GRID_HASH
    cell = expand(spec)[0]
    assert cell.train.regularizer == Component("none")
    assert "regularizer" not in cell.to_config()["train"]
    assert not any(k.startswith("train.regularizer") for k in cell.flat_params())


def test_naming_none_is_the_same_cell_as_leaving_it_out() -> None:
    assert _one(train={"regularizer": "none"}).id == _one(train={"regularizer": {"name": "none"}}).id == _one().id


def test_a_regularizer_is_part_of_the_cell_and_round_trips() -> None:
    cell = _one(train={"regularizer": {"name": "feature_kl", "weight": 1e-3}})
    assert cell.id != _one().id
    assert cell.to_config()["train"]["regularizer"] == {"name": "feature_kl", "weight": 1e-3}
    assert cell.flat_params()["train.regularizer.weight"] == 1e-3
    assert CellSpec.from_config(cell.to_config()) == cell
    bare = _one(train={"regularizer": "feature_kl"})
    assert bare.to_config()["train"]["regularizer"] == {"name": "feature_kl"}  # always a mapping: settable
    assert bare.id == _one(train={"regularizer": {"name": "feature_kl"}}).id


def test_equal_values_spelled_differently_are_one_cell() -> None:
    ids = {_one(train={"regularizer": {"name": "feature_kl", "weight": w}}).id for w in (0, 0.0, "0.0")}
    assert len(ids) == 1


def test_the_weight_is_a_grid_axis() -> None:
    assert "train.regularizer" in AXES and "train.regularizer.weight" in AXES
    cells = expand(_spec(train={"regularizer": {"name": "feature_kl", "stat": "token"}},
                         grid={"train.regularizer.weight": [0, 1e-4, "1e-3"]}))
    assert [c.train.regularizer.kwargs for c in cells] == [
        {"stat": "token", "weight": 0.0}, {"stat": "token", "weight": 1e-4}, {"stat": "token", "weight": 1e-3}]
    assert [r["train.regularizer.weight"] for r in plan_rows(cells)] == [0.0, 1e-4, 1e-3]


def test_a_regularizer_value_replaces_the_base_and_a_dotted_weight_composes_with_it() -> None:
    base = {"regularizer": {"name": "feature_kl", "stat": "token", "weight": 1e-4}}
    (cell,) = expand(_spec(train=base, grid={"train.regularizer": [{"name": "feature_kl", "weight": 1e-3}]}))
    assert cell.train.regularizer.kwargs == {"weight": 1e-3}  # replaced whole: stat is not carried over
    cells = expand(_spec(train=base, grid={"train.regularizer": [{"name": "feature_kl", "stat": "sample"}],
                                           "train.regularizer.weight": [1e-2, 1e-3]}))
    assert [c.train.regularizer.kwargs for c in cells] == [{"stat": "sample", "weight": 1e-2},
                                                           {"stat": "sample", "weight": 1e-3}]


def test_regularizer_grids_mix_none_and_named_ones_in_the_plan() -> None:
    cells = expand(_spec(grid={"train.regularizer": ["none", {"name": "feature_kl", "weight": 1e-4}]}))
    assert [c.train.regularizer.name for c in cells] == ["none", "feature_kl"]
    rows = plan_rows(cells)
    assert [r["train.regularizer.name"] for r in rows] == ["none", "feature_kl"]
    assert [r["train.regularizer.weight"] for r in rows] == [None, 1e-4]


def test_exclude_matches_on_the_weight() -> None:
    cells = expand(_spec(train={"regularizer": {"name": "feature_kl"}}, grid={
        "norm": ["token_ln", "i_ln"], "train.regularizer.weight": [0.0, 1e-3]},
        exclude=[{"norm": "i_ln", "train.regularizer.weight": 0.0}]))
    assert [(c.norm.name, c.train.regularizer.kwargs["weight"]) for c in cells] == [
        ("token_ln", 0.0), ("token_ln", 1e-3), ("i_ln", 1e-3)]


def test_a_search_can_range_over_the_weight() -> None:
    spec = _spec(train={"regularizer": {"name": "feature_kl", "weight": 1e-4}},
                 search={"space": {"train.regularizer.weight": {"type": "loguniform", "low": 1e-5, "high": 1e-2}}})
    assert spec.search is not None and spec.search.space["train.regularizer.weight"].low == 1e-5
    with pytest.raises(SpecError, match=r"search.space.train.regularizer.weight.low: expected a number ≥ 0"):
        _spec(train={"regularizer": {"name": "feature_kl"}},
              search={"space": {"train.regularizer.weight": {"type": "uniform", "low": -1, "high": 1}}})


@pytest.mark.parametrize(("extra", "path", "words"), [
    ({"train": {"regularizer": "feture_kl"}}, "train.regularizer", "did you mean 'feature_kl'?"),
    ({"train": {"regularizer": {"name": "feture_kl"}}}, "train.regularizer.name", "did you mean 'feature_kl'?"),
    ({"grid": {"train.regularizer": ["none", "kl"]}}, "grid.train.regularizer[1]", "valid: feature_kl, none"),
    ({"train": {"regularizer": {"name": "feature_kl", "weight": -1}}}, "train.regularizer.weight", "≥ 0"),
    ({"train": {"regularizer": {"name": "feature_kl"}}, "grid": {"train.regularizer.weight": [1e-4, -1.0]}},
     "grid.train.regularizer.weight[1]", "≥ 0"),
    ({"grid": {"train.regularizer.weight": [1e-4]}}, "grid.train.regularizer.weight[0]",
     "name one first, e.g. train: {regularizer: {name: feature_kl}}"),
    ({"grid": {"train.regularizer.wieght": [1e-4]}}, "grid.train.regularizer.wieght",
     "did you mean 'train.regularizer.weight'?"),
])
def test_errors_name_the_key_path_and_the_fix(extra: dict[str, Any], path: str, words: str) -> None:
    with pytest.raises(SpecError) as info:
        _spec(**extra)
    assert info.value.path == path, str(info.value)
    assert words in str(info.value)


def test_the_paper_kl_file_plans_six_paired_cells() -> None:
    cells = expand(load_experiment(ROOT / "experiments" / "paper" / "kl-reg.yaml"))
    assert [(c.norm.name, c.train.regularizer.to_config()) for c in cells] == [
        (norm, {"name": "feature_kl", "weight": w}) for norm in ("token_ln", "i_ln") for w in (0.0, 1e-4, 1e-3)]
    assert len({c.pairing_key for c in cells}) == 3  # each weight pairs token_ln with i_ln
