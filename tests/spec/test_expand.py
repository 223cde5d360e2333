"""expand(): grid order, include/exclude, dedupe, canonical rescale, stable ids; plan_rows()."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ablate.errors import SpecError
from ablate.spec import (
    PLAN_COLUMNS,
    CellSpec,
    Component,
    expand,
    load_experiment,
    parse_experiment,
    plan_rows,
)

DATA = Path(__file__).parent / "data"
ROOT = Path(__file__).parents[2]


def _spec(**extra: object):
    raw = {"name": "t", "backbone": "swinir-tiny", "task": "sr-x2", **extra}
    return parse_experiment(raw)


def _keys(cells: list[CellSpec]) -> list[tuple[str, bool | None, int]]:
    return [(c.norm.name, c.rescale, c.seed) for c in cells]


def test_grid_product_in_file_order_first_axis_slowest() -> None:
    cells = expand(_spec(grid={"norm": ["global_ln", "token_ln"], "seed": [2, 0, 1]}))
    assert _keys(cells) == [("global_ln", False, 2), ("global_ln", False, 0), ("global_ln", False, 1),
                            ("token_ln", False, 2), ("token_ln", False, 0), ("token_ln", False, 1)]
    assert all(c.backbone == Component("swinir-tiny") and c.task == Component("sr-x2") for c in cells)


def test_fixture_grid_with_exclude_and_include() -> None:
    cells = expand(load_experiment(DATA / "grid.yaml"))
    # 2 norms x 2 rescale x 2 seeds x 2 lr = 16; exclude drops token_ln+rescale on seed 1 (2 cells);
    # include adds i_ln on every seed x lr (4 cells)
    assert len(cells) == 16 - 2 + 4
    combos = [(c.norm.name, c.rescale, c.seed, c.train.optimizer.lr) for c in cells]
    assert ("token_ln", True, 1, 2e-4) not in combos and ("token_ln", True, 0, 2e-4) in combos
    assert combos[-4:] == [("i_ln", True, 0, 2e-4), ("i_ln", True, 0, 1e-3),
                           ("i_ln", True, 1, 2e-4), ("i_ln", True, 1, 1e-3)]
    # dotted axes override the base train spec and nothing else in it
    assert {c.train.optimizer.lr for c in cells} == {2e-4, 1e-3}
    assert all(c.train.steps == 20 and c.train.optimizer.name == "adam" and c.probes.every == 5 for c in cells)
    assert len({c.id for c in cells}) == len(cells)


def test_exclude_matches_all_given_keys_and_bare_names_match_any_params() -> None:
    spec = _spec(grid={"norm": ["token_ln", {"name": "group_norm", "groups": 2}, {"name": "group_norm", "groups": 4}],
                       "rescale": [False, True]},
                 exclude=[{"norm": "group_norm", "rescale": True}, {"norm": "token_ln", "rescale": False}])
    got = [(c.norm.label(), c.rescale) for c in expand(spec)]
    assert got == [("token_ln", True), ("group_norm(groups=2)", False), ("group_norm(groups=4)", False)]
    exact = _spec(grid={"norm": [{"name": "group_norm", "groups": 2}, {"name": "group_norm", "groups": 4}]},
                  exclude=[{"norm": {"name": "group_norm", "groups": 4}}])
    assert [c.norm.label() for c in expand(exact)] == ["group_norm(groups=2)"]


def test_exclude_can_match_a_fixed_or_dotted_value() -> None:
    spec = _spec(grid={"norm": ["token_ln", "rms_norm"], "train.steps": [10, 20]},
                 exclude=[{"norm": "rms_norm", "train.steps": 20}, {"task": "sr-x2", "norm": "token_ln",
                                                                   "train.steps": 10}])
    assert [(c.norm.name, c.train.steps) for c in expand(spec)] == [("token_ln", 20), ("rms_norm", 10)]


def test_include_ranges_over_grid_axes_it_does_not_name() -> None:
    spec = _spec(grid={"norm": ["token_ln"], "seed": [0, 1]},
                 include=[{"norm": "i_ln"}, {"norm": "rms_norm", "seed": 7, "train.steps": 5}])
    cells = expand(spec)
    assert _keys(cells) == [("token_ln", False, 0), ("token_ln", False, 1), ("i_ln", True, 0), ("i_ln", True, 1),
                            ("rms_norm", False, 7)]
    assert [c.train.steps for c in cells] == [300, 300, 300, 300, 5]


def test_include_is_not_filtered_by_exclude() -> None:
    spec = _spec(grid={"norm": ["token_ln", "dyt"], "rescale": [False, True]},
                 exclude=[{"norm": "dyt"}], include=[{"norm": "dyt", "rescale": False}])
    assert [(c.norm.name, c.rescale) for c in expand(spec)] == [("token_ln", False), ("token_ln", True),
                                                                ("dyt", False)]


def test_include_without_grid_is_exactly_the_included_cells() -> None:
    spec = _spec(include=[{"norm": "token_ln"}, {"norm": "global_ln", "rescale": True, "seed": 4}])
    assert _keys(expand(spec)) == [("token_ln", False, 0), ("global_ln", True, 4)]


def test_single_cell_file() -> None:
    (cell,) = expand(load_experiment(DATA / "single.yaml"))
    assert cell.norm == Component("group_norm", (("groups", 4),))
    assert cell.rescale is True and cell.seed == 3 and cell.task == Component("dn-s25")
    assert cell.train.steps == 10 and cell.train.optimizer.lr == 1e-3
    assert cell.data == Component("skimage")


def test_equal_cells_are_kept_once_at_their_first_position() -> None:
    # rescale null on token_ln resolves to false: the include repeats grid cells
    spec = _spec(grid={"norm": ["token_ln", "global_ln"], "rescale": [False, True]},
                 include=[{"norm": "token_ln", "rescale": None}, {"norm": {"name": "global_ln", "rescale": True}}])
    cells = expand(spec)
    assert [(c.norm.name, c.rescale) for c in cells] == [("token_ln", False), ("token_ln", True),
                                                         ("global_ln", False), ("global_ln", True)]


def test_rescale_is_canonical_so_equivalent_spellings_share_an_id() -> None:
    a = expand(_spec(norm="token_ln"))[0]
    b = expand(_spec(norm="token_ln", rescale=False))[0]
    c = expand(_spec(norm={"name": "token_ln", "rescale": False}))[0]
    assert a.id == b.id == c.id and a.rescale is False
    ilns = [expand(_spec(norm="i_ln"))[0], expand(_spec(norm="i_ln", rescale=True))[0]]
    assert ilns[0].id == ilns[1].id and ilns[0].rescale is True
    assert expand(_spec(norm="token_ln", rescale=True))[0].id != a.id


def test_ids_insensitive_to_key_order_and_formatting() -> None:
    a = expand(load_experiment(DATA / "grid.yaml"))
    b = expand(load_experiment(DATA / "grid_reordered.yaml"))
    assert [c.id for c in a] == [c.id for c in b]


@pytest.mark.parametrize("change", [
    {"seed": 1}, {"task": "sr-x4"}, {"norm": "global_ln"}, {"rescale": True},
    {"train": {"optimizer": {"lr": 1e-3}}}, {"train": {"steps": 301}}, {"probes": {"every": 10}},
    {"norm": {"name": "group_norm", "groups": 4}},
])
def test_ids_change_with_result_affecting_values(change: dict[str, object]) -> None:
    base = {"norm": "token_ln", "seed": 0}
    assert expand(_spec(**{**base, **change}))[0].id != expand(_spec(**base))[0].id


def test_ids_ignore_what_does_not_affect_results() -> None:
    base = expand(_spec(norm="token_ln"))[0].id
    assert expand(_spec(norm="token_ln", resources={"cpus_per_trial": 2, "max_concurrent": 1},
                        description="other words", tracking={"uri": "sqlite:////tmp/x.db"}))[0].id == base
    assert expand(parse_experiment({"name": "renamed", "norm": "token_ln", "backbone": "swinir-tiny",
                                    "task": "sr-x2"}))[0].id == base


def test_ids_are_stable_across_processes() -> None:
    """A fresh interpreter with another hash seed computes the same ids (no id() or hash() in them)."""
    here = [c.id for c in expand(load_experiment(DATA / "grid.yaml"))]
    code = ("import json; from ablate.spec import expand, load_experiment; "
            f"print(json.dumps([c.id for c in expand(load_experiment({str(DATA / 'grid.yaml')!r}))]))")
    env = {**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT,
                         check=True, timeout=120)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == here


def test_dotted_sub_spec_axis_merges_onto_the_base() -> None:
    spec = _spec(norm="token_ln", train={"optimizer": {"lr": 5e-4}},
                 grid={"train.optimizer": [{"name": "adam"}, {"name": "adamw", "weight_decay": 0.05}]})
    cells = expand(spec)
    assert [(c.train.optimizer.name, c.train.optimizer.lr, c.train.optimizer.weight_decay) for c in cells] == [
        ("adam", 5e-4, 0.0), ("adamw", 5e-4, 0.05)]


def test_expand_is_pure_and_repeatable() -> None:
    spec = load_experiment(DATA / "grid.yaml")
    assert expand(spec) == expand(spec)
    assert spec == load_experiment(DATA / "grid.yaml")  # expansion did not touch the spec


def test_combination_error_from_an_include_names_the_entry() -> None:
    with pytest.raises(SpecError) as info:
        _spec(grid={"norm": ["token_ln"]}, include=[{"norm": "dyt", "rescale": True}])
    assert info.value.path == "include[0].rescale" and "norm dyt with rescale true" in str(info.value)
    # an entry that leaves rescale free crosses grid.rescale: the hint says how to pin it
    with pytest.raises(SpecError) as info:
        _spec(grid={"norm": ["token_ln"], "rescale": [False, True]}, include=[{"norm": "i_ln"}])
    assert info.value.path == "include[0]" and "norm i_ln with rescale false" in str(info.value)
    assert "add `rescale: null`" in str(info.value)


def test_plan_rows_show_core_columns_and_the_axes_that_vary() -> None:
    cells = expand(load_experiment(DATA / "grid.yaml"))
    rows = plan_rows(cells)
    assert len(rows) == len(cells)
    assert list(rows[0]) == [*PLAN_COLUMNS, "train.optimizer.lr"]
    assert rows[0] == {"id": cells[0].id, "norm": "token_ln", "rescale": False, "backbone": "swinir-tiny",
                       "task": "sr-x2", "seed": 0, "train.optimizer.lr": 2e-4}
    json.dumps(rows)  # JSON-able for `ablate plan --format json`
    one = plan_rows(expand(load_experiment(DATA / "single.yaml")))
    assert list(one[0]) == list(PLAN_COLUMNS) and one[0]["norm"] == "group_norm(groups=4)"
    picked = plan_rows(cells[:1], extra=["train.steps", "data", "train.optimizer"])
    assert picked[0]["train.steps"] == 20 and picked[0]["data"] == "skimage"
    assert picked[0]["train.optimizer"]["name"] == "adam"
