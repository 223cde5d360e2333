"""``train.amp`` (none | bf16 | fp16) and ``train.compile``: parsing, and what they do to a cell's id."""

from __future__ import annotations

from pathlib import Path

import pytest

from ablate.errors import SpecError
from ablate.spec import CellSpec, expand, load_experiment, parse_experiment

ROOT = Path(__file__).parents[2]


def _cell(**train: object) -> CellSpec:
    return expand(parse_experiment({"name": "t", "norm": "token_ln", "backbone": "swinir-tiny", "task": "sr-x2",
                                    "train": train}))[0]


def test_amp_takes_fp16_and_names_its_choices():
    assert _cell(amp="fp16").train.amp == "fp16"
    with pytest.raises(SpecError, match=r"train\.amp: expected one of none, bf16, fp16, got 'fp32'"):
        _cell(amp="fp32")
    with pytest.raises(SpecError, match=r"train\.compile: expected true or false, got 'yes'"):
        _cell(compile="yes")


def test_compile_is_a_param_when_on_but_never_in_the_id():
    plain = _cell()
    assert _cell(compile=False).id == plain.id  # off is the default: every existing id stays
    assert "compile" not in plain.to_config()["train"] and "train.compile" not in plain.flat_params()
    on = _cell(compile=True)
    # the id names the math, not the kernels: a compiled cell is the same cell (its run records the path)
    assert on.id == plain.id and on.pairing_key == plain.pairing_key
    assert on.flat_params()["train.compile"] is True and on.to_config()["train"]["compile"] is True
    assert CellSpec.from_config(on.to_config()) == on and CellSpec.from_config(plain.to_config()) == plain
    assert _cell(amp="fp16").id != _cell(amp="bf16").id != plain.id


def test_existing_cell_ids_are_unchanged():
    """experiments/README.md cites this id: grad-clip.yaml's no-clip cell, also in hat-mini-sr.yaml."""
    cells = expand(load_experiment(ROOT / "experiments" / "paper" / "grad-clip.yaml"))
    assert cells[0].id == "5b4c4297d4"
