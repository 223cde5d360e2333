"""``train.amp`` (none | bf16 | fp16), ``train.tf32`` and ``train.compile``: parsing, and what they do to a
cell's id."""

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


def test_tf32_is_in_the_id_when_on_and_absent_when_off():
    plain = _cell()
    assert _cell(tf32=False).id == plain.id  # off is the default: every existing id stays
    assert "tf32" not in plain.to_config()["train"] and "train.tf32" not in plain.flat_params()
    on = _cell(tf32=True)
    assert on.id != plain.id and on.flat_params()["train.tf32"] is True
    assert CellSpec.from_config(on.to_config()) == on and CellSpec.from_config(plain.to_config()) == plain
    assert _cell(amp="fp16").id != _cell(amp="bf16").id != plain.id
    assert _cell(tf32=True, amp="bf16").id not in (on.id, _cell(amp="bf16").id)


def test_existing_cell_ids_are_unchanged():
    """experiments/README.md cites this id: grad-clip.yaml's no-clip cell, also in hat-mini-sr.yaml."""
    cells = expand(load_experiment(ROOT / "experiments" / "paper" / "grad-clip.yaml"))
    assert cells[0].id == "5b4c4297d4"


def test_tf32_is_a_boolean_refused_in_one_line():
    assert _cell(tf32=True).train.tf32 is True and _cell().train.tf32 is False
    for bad in ("yes", 1, "high"):
        with pytest.raises(SpecError) as err:
            _cell(tf32=bad)
        assert str(err.value) == f"train.tf32: expected true or false, got {bad!r}"
        assert "\n" not in str(err.value)


def test_tf32_in_a_yaml_file_is_read_and_a_wrong_value_is_one_line(tmp_path: Path):
    path = tmp_path / "x.yaml"
    path.write_text("name: t\nnorm: token_ln\nbackbone: swinir-tiny\ntask: sr-x2\ntrain: {tf32: true}\n")
    assert expand(load_experiment(path))[0].train.tf32 is True
    path.write_text("name: t\nnorm: token_ln\nbackbone: swinir-tiny\ntask: sr-x2\ntrain: {tf32: maybe}\n")
    with pytest.raises(SpecError) as err:
        load_experiment(path)
    assert "train.tf32: expected true or false, got 'maybe'" in str(err.value) and "\n" not in str(err.value)
