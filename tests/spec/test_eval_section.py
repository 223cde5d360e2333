"""The ``eval:`` section: test sets, precisions, inference options; one-line errors; hashes unchanged."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ablate.errors import AblateError, SpecError
from ablate.spec import Component, EvalSpec, expand, load_experiment, parse_experiment

ROOT = Path(__file__).resolve().parents[2]


def _base(**extra: object) -> dict[str, object]:
    return {"name": "t", "norm": "token_ln", "backbone": "swinir-tiny", "task": "sr-x2", **extra}


def _folder(path: Path) -> Path:
    path.mkdir(parents=True)
    Image.fromarray(np.zeros((16, 16, 3), dtype=np.uint8)).save(path / "a.png")
    return path


def test_a_full_section_is_parsed_with_folders_relative_to_the_file(tmp_path: Path) -> None:
    _folder(tmp_path / "Set5" / "HR")
    (tmp_path / "exp.yaml").write_text("""\
name: t
norm: token_ln
backbone: swinir-tiny
task: sr-x2
eval:
  sets:
    Set5: {name: folder, path: Set5/HR}
    skimage: skimage
  precisions: [fp32, fp16, bf16]
  self_ensemble: true
  tile: 256
  tile_overlap: 16
""")
    spec = load_experiment(tmp_path / "exp.yaml")
    assert spec.eval == EvalSpec(
        sets=(("Set5", Component("folder", (("path", str(tmp_path / "Set5" / "HR")),))),
              ("skimage", Component("skimage"))),
        precisions=("fp32", "fp16", "bf16"), self_ensemble=True, tile=256, tile_overlap=16)


def test_defaults_and_the_list_shorthand() -> None:
    assert parse_experiment(_base()).eval is None  # no section: ablate eval falls back to EvalSpec()
    assert EvalSpec().sets == (("skimage", Component("skimage")),) and EvalSpec().precisions == ("fp32", "fp16")
    spec = parse_experiment(_base(eval={"sets": ["skimage"]}))
    assert spec.eval == EvalSpec()
    assert parse_experiment(_base(eval={})).eval == EvalSpec()


def test_the_section_changes_no_cell_and_no_existing_hash() -> None:
    plain = parse_experiment(_base())
    with_eval = parse_experiment(_base(eval={"precisions": ["fp32"]}))
    assert [c.id for c in expand(plain)] == [c.id for c in expand(with_eval)]
    assert "eval" not in plain.to_config() and plain.hash != with_eval.hash
    # the quickstart names its set explicitly
    quick = load_experiment(ROOT / "experiments" / "quickstart.yaml")
    assert quick.eval is not None and [name for name, _ in quick.eval.sets] == ["skimage"]


@pytest.mark.parametrize(("section", "path", "message"), [
    ({"sets": {"a b": "skimage"}}, "eval.sets.a b", "a set name of letters"),
    ({"sets": {"x/y": "skimage"}}, "eval.sets.x/y", "a set name of letters"),
    ({"sets": {}}, "eval.sets", "a non-empty mapping"),
    ({"sets": {"S": "skimag"}}, "eval.sets.S", "did you mean 'skimage'"),
    ({"sets": {"S": {"name": "skimage", "val": ["cofee"]}}}, "eval.sets.S.val[0]", "scikit-image RGB image"),
    ({"precisions": ["fp8"]}, "eval.precisions[0]", "one of fp32, fp16, bf16"),
    ({"precisions": []}, "eval.precisions", "a non-empty list"),
    ({"self_ensemble": "yes"}, "eval.self_ensemble", "true or false"),
    ({"tile": 16}, "eval.tile", "an integer > tile_overlap (32)"),
    ({"tile": 0, "tile_overlap": 0}, "eval.tile", "null (whole images)"),
    ({"tile_overlap": -1}, "eval.tile_overlap", "an integer ≥ 0"),
    ({"tiles": 256}, "eval.tiles", "did you mean 'tile'"),
    ("skimage", "eval", "a mapping"),
])
def test_errors_name_the_key(section: object, path: str, message: str) -> None:
    with pytest.raises(SpecError) as err:
        parse_experiment(_base(eval=section))
    assert err.value.path == path and message in str(err.value), str(err.value)


def test_a_missing_folder_is_an_error_unless_data_checks_are_off(tmp_path: Path) -> None:
    section = {"sets": {"Set5": {"name": "folder", "path": str(tmp_path / "nope")}}}
    with pytest.raises(AblateError, match=r"eval.sets.Set5.path: folder .*nope does not exist"):
        parse_experiment(_base(eval=section))
    assert parse_experiment(_base(eval=section), check_data=False).eval is not None
