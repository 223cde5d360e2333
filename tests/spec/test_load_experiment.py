"""load_experiment / parse_experiment: schema, normalization and one-line errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from ablate.errors import AblateError, SpecError
from ablate.spec import (
    Component,
    ExperimentSpec,
    OptimizerSpec,
    ResourceSpec,
    SearchParam,
    load_experiment,
    parse_experiment,
)

DATA = Path(__file__).parent / "data"


def _base(**extra: object) -> dict[str, object]:
    """A valid one-cell experiment mapping, plus ``extra`` top-level keys."""
    return {"name": "t", "norm": "token_ln", "backbone": "swinir-tiny", "task": "sr-x2", **extra}


def _write(tmp_path: Path, text: str, name: str = "exp.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _error(tmp_path: Path, text: str) -> SpecError:
    path = _write(tmp_path, text)
    with pytest.raises(SpecError) as info:
        load_experiment(path)
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(f"{path}: "), msg
    return info.value


# ------------------------------------------------------------------------------------------
# valid files
# ------------------------------------------------------------------------------------------
def test_grid_file_is_parsed_into_typed_normalized_values() -> None:
    spec = load_experiment(DATA / "grid.yaml")
    assert isinstance(spec, ExperimentSpec)
    assert spec.name == "norm-ablation-test"
    assert spec.file == str(DATA / "grid.yaml")
    assert spec.source_text == (DATA / "grid.yaml").read_text()
    grid = dict(spec.grid)
    assert [axis for axis, _ in spec.grid] == ["norm", "rescale", "seed", "train.optimizer.lr"]
    assert grid["norm"] == (Component("token_ln"), Component("global_ln"))
    assert grid["train.optimizer.lr"] == (2e-4, 1e-3)
    assert all(isinstance(v, float) for v in grid["train.optimizer.lr"])
    assert dict(spec.fixed) == {"backbone": Component("swinir-tiny"), "task": Component("sr-x2")}
    assert spec.include == ((("norm", Component("i_ln")), ("rescale", None)),)
    assert spec.train.steps == 20 and spec.train.optimizer == OptimizerSpec(name="adam", lr=2e-4)
    assert spec.probes.every == 5
    assert spec.data == Component("skimage")
    assert spec.resources == ResourceSpec(cpus_per_trial=1.0, gpus_per_trial=0.0, max_concurrent=2)
    assert spec.search is None
    assert spec.axes == ("norm", "rescale", "seed", "train.optimizer.lr")


def test_spec_hash_ignores_key_order_and_formatting_but_not_values(tmp_path: Path) -> None:
    a = load_experiment(DATA / "grid.yaml")
    b = load_experiment(DATA / "grid_reordered.yaml")
    assert a == b and a.hash == b.hash
    assert len(a.hash) == 10 and int(a.hash, 16) >= 0
    text = (DATA / "grid.yaml").read_text().replace("steps: 20", "steps: 21")
    assert load_experiment(_write(tmp_path, text)).hash != a.hash


def test_single_cell_file_without_grid() -> None:
    spec = load_experiment(DATA / "single.yaml")
    assert spec.grid == ()
    fixed = dict(spec.fixed)
    assert fixed["norm"] == Component("group_norm", (("groups", 4),))
    assert fixed["rescale"] is True and fixed["seed"] == 3
    assert fixed["task"] == Component("dn-s25")
    assert spec.train.optimizer.lr == 1e-3  # YAML 1.1 reads `1e-3` as a string; it is coerced


def test_parse_experiment_from_a_mapping_dumps_source_text() -> None:
    spec = parse_experiment(_base(seed=2))
    assert spec.file is None
    assert "name: t" in spec.source_text and "seed: 2" in spec.source_text


def test_defaults_for_optional_sections() -> None:
    spec = parse_experiment(_base())
    assert spec.description == ""
    assert spec.data == Component("skimage")
    assert spec.resources == ResourceSpec() and spec.tracking.uri is None
    assert spec.include == () and spec.exclude == ()


def test_search_section_is_validated_and_typed() -> None:
    spec = parse_experiment(_base(search={
        "metric": "train/loss", "num_samples": 8, "scheduler": "asha",
        "space": {"train.optimizer.lr": {"type": "loguniform", "low": "1e-5", "high": 1e-3},
                  "train.steps": {"type": "int", "low": 10, "high": 50},
                  "norm": {"type": "choice", "values": ["token_ln", {"name": "group_norm"}]},
                  "train.loss": {"type": "choice", "values": ["l1", "mse"]}}}))
    search = spec.search
    assert search is not None
    assert search.mode == "min"  # a loss is minimized unless told otherwise
    assert search.num_samples == 8 and search.scheduler == "asha"
    assert list(search.space) == ["train.optimizer.lr", "train.steps", "norm", "train.loss"]
    assert search.space["train.optimizer.lr"] == SearchParam("train.optimizer.lr", "loguniform", 1e-5, 1e-3)
    assert search.space["train.steps"] == SearchParam("train.steps", "int", 10, 50)
    # choices are plain values, as Optuna's categorical distribution requires
    assert search.space["norm"].values == ("token_ln", "group_norm")
    assert search.space["train.loss"].values == ("l1", "mse")
    assert parse_experiment(_base(search={"space": {"train.steps": {"type": "int", "low": 1, "high": 2}}})
                            ).search.mode == "max"


# ------------------------------------------------------------------------------------------
# errors: each one line, naming file, key path, expected, got and a suggestion
# ------------------------------------------------------------------------------------------
def test_unknown_norm_suggests_the_closest_name(tmp_path: Path) -> None:
    err = _error(tmp_path, "name: t\ngrid:\n  norm: [token_ln, global_ln, toekn_ln]\n"
                           "backbone: swinir-tiny\ntask: sr-x2\n")
    assert err.path == "grid.norm[2]"
    assert err.got == "toekn_ln"
    assert "a registered norm" in str(err)
    assert "did you mean 'token_ln'?" in str(err)


def test_wrong_type_names_the_train_key(tmp_path: Path) -> None:
    err = _error(tmp_path, "name: t\nnorm: token_ln\nbackbone: swinir-tiny\ntask: sr-x2\n"
                           "train: {steps: \"abc\"}\n")
    assert str(err) == f"{tmp_path / 'exp.yaml'}: train.steps: expected an integer, got 'abc'"


def test_wrong_type_in_a_dotted_grid_axis_names_the_value(tmp_path: Path) -> None:
    err = _error(tmp_path, "name: t\nnorm: token_ln\nbackbone: swinir-tiny\ntask: sr-x2\n"
                           "grid: {train.optimizer.lr: [1.0e-4, -1], train.steps: [10]}\n")
    assert err.path == "grid.train.optimizer.lr[1]" and "positive" in err.expected


def test_rescale_on_dyt_names_the_combination_and_suggests_exclude(tmp_path: Path) -> None:
    err = _error(tmp_path, "name: t\ngrid:\n  norm: [token_ln, dyt]\n  rescale: [false, true]\n"
                           "backbone: swinir-tiny\ntask: sr-x2\n")
    msg = str(err)
    assert err.path == "grid"
    assert "norm dyt with rescale true" in msg
    assert "nothing to rescale by" in msg
    assert "exclude: [{norm: dyt, rescale: true}]" in msg


def test_rescale_on_dyt_in_a_single_cell_file(tmp_path: Path) -> None:
    err = _error(tmp_path, "name: t\nnorm: dyt\nrescale: true\nbackbone: swinir-tiny\ntask: sr-x2\n")
    assert err.path == "rescale" and "norm dyt with rescale true" in str(err)


def test_rescale_inside_the_norm_mapping_is_checked_at_its_key(tmp_path: Path) -> None:
    err = _error(tmp_path, "name: t\ngrid: {norm: [{name: dyt, rescale: true}]}\n"
                           "backbone: swinir-tiny\ntask: sr-x2\n")
    assert err.path == "grid.norm[0].rescale"


def test_preset_that_fixes_rescale_crossed_with_false(tmp_path: Path) -> None:
    err = _error(tmp_path, "name: t\ngrid: {norm: [i_ln], rescale: [true, false]}\n"
                           "backbone: swinir-tiny\ntask: sr-x2\n")
    assert "norm i_ln with rescale false" in str(err)
    assert "exclude: [{norm: i_ln, rescale: false}]" in str(err)


def test_bad_norm_parameter_names_its_key(tmp_path: Path) -> None:
    err = _error(tmp_path, "name: t\ngrid: {norm: [token_ln, {name: group_norm, grops: 4}]}\n"
                           "backbone: swinir-tiny\ntask: sr-x2\n")
    assert err.path == "grid.norm[1].grops"


def test_unknown_top_level_key_suggests_the_closest(tmp_path: Path) -> None:
    err = _error(tmp_path, "name: t\nnorm: token_ln\nbackbone: swinir-tiny\ntask: sr-x2\ntrian: {steps: 3}\n")
    assert err.path == "trian"
    assert "did you mean 'train'?" in str(err)
    assert "a top-level key" in str(err)


def test_unknown_axis_suggests_the_closest_dotted_field(tmp_path: Path) -> None:
    err = _error(tmp_path, "name: t\nnorm: token_ln\nbackbone: swinir-tiny\ntask: sr-x2\n"
                           "grid: {train.optimzer.lr: [1.0e-3]}\n")
    assert err.path == "grid.train.optimzer.lr" and "did you mean 'train.optimizer.lr'?" in str(err)


def test_yaml_syntax_error_gives_line_and_column() -> None:
    with pytest.raises(SpecError) as info:
        load_experiment(DATA / "bad_syntax.yaml")
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith(f"{DATA / 'bad_syntax.yaml'}: line 4, column 11: expected valid YAML"), msg
    assert "flow sequence that starts at line 3" in msg


def test_duplicate_yaml_key_is_an_error_with_its_line(tmp_path: Path) -> None:
    err = _error(tmp_path, "name: t\nnorm: token_ln\nbackbone: swinir-tiny\ntask: sr-x2\n"
                           "train: {steps: 3}\ntrain: {steps: 4}\n")
    assert err.path == "line 6, column 1" and "duplicate key 'train'" in str(err)


def test_yaml_merge_keys_are_not_duplicates(tmp_path: Path) -> None:
    path = _write(tmp_path, "name: t\nnorm: token_ln\nbackbone: swinir-tiny\ntask: sr-x2\n"
                            "train: {<<: {steps: 3, batch_size: 2}, steps: 5}\n")
    spec = load_experiment(path)
    assert spec.train.steps == 5 and spec.train.batch_size == 2


def test_missing_file_suggests_a_nearby_yaml(tmp_path: Path) -> None:
    _write(tmp_path, "name: t\n", "quickstart.yaml")
    with pytest.raises(SpecError) as info:
        load_experiment(tmp_path / "quickstrat.yaml")
    msg = str(info.value)
    assert msg.startswith(f"{tmp_path / 'quickstrat.yaml'}: expected an existing YAML experiment file")
    assert "did you mean" in msg and "quickstart.yaml" in msg
    with pytest.raises(SpecError, match="no such file"):
        load_experiment(tmp_path / "nothing-like-it" / "x.yaml")
    with pytest.raises(SpecError, match="not a directory"):
        load_experiment(tmp_path)


@pytest.mark.parametrize(("text", "path", "fragment"), [
    ("", "", "the file is empty"),
    ("- a\n- b\n", "", "a mapping of experiment keys"),
    ("norm: token_ln\nbackbone: swinir-tiny\ntask: sr-x2\n", "name", "MLflow experiment name"),
    ("name: t\ngrid: {norm: []}\nbackbone: swinir-tiny\ntask: sr-x2\n", "grid.norm", "non-empty list"),
    ("name: t\ngrid: {norm: token_ln}\nbackbone: swinir-tiny\ntask: sr-x2\n", "grid.norm", "a list of values"),
    ("name: t\ngrid: {norm: [token_ln]}\nnorm: global_ln\nbackbone: swinir-tiny\ntask: sr-x2\n", "norm",
     "one place for 'norm'"),
    ("name: t\nnorm: [token_ln, global_ln]\nbackbone: swinir-tiny\ntask: sr-x2\n", "norm", "a single value"),
    ("name: t\ngrid: {norm: [token_ln]}\nbackbone: swinir-tiny\n", "task", "a task for every cell"),
    ("name: t\ngrid: {norm: [token_ln], seed: [0, -1]}\nbackbone: swinir-tiny\ntask: sr-x2\n", "grid.seed[1]",
     "a non-negative integer"),
    ("name: t\ngrid: {norm: [token_ln], rescale: [yes please]}\nbackbone: swinir-tiny\ntask: sr-x2\n",
     "grid.rescale[0]", "true, false or null"),
    ("name: t\ngrid: {norm: [token_ln, global_ln]}\nbackbone: swinir-tiny\ntask: sr-x2\n"
     "exclude: [{norm: rms_norm}]\n", "exclude[0]", "matches at least one grid cell"),
    ("name: t\ngrid: {norm: [token_ln]}\nbackbone: swinir-tiny\ntask: sr-x2\nexclude: [{norm: token_ln}]\n",
     "exclude", "at least one grid cell"),
    ("name: t\nnorm: token_ln\nbackbone: swinir-tiny\ntask: sr-x2\nexclude: [{seed: 0}]\n", "exclude",
     "a grid to exclude from"),
    ("name: t\ngrid: {norm: [token_ln]}\nbackbone: swinir-tiny\ntask: sr-x2\ninclude: [{norm: [i_ln]}]\n",
     "include[0].norm", "a single value"),
    ("name: t\ngrid: {norm: [token_ln]}\nbackbone: swinir-tiny\ntask: sr-x2\ninclude: [{nrom: i_ln}]\n",
     "include[0].nrom", "did you mean 'norm'?"),
    ("name: t\nnorm: token_ln\nbackbone: swinir-tiny\ntask: sr-x2\nresources: {gpus_per_trial: -1}\n",
     "resources.gpus_per_trial", "a number ≥ 0"),
    ("name: t\nnorm: token_ln\nbackbone: swinir-tiny\ntask: sr-x2\nresources: {cpu_per_trial: 2}\n",
     "resources.cpu_per_trial", "did you mean 'cpus_per_trial'?"),
    ("name: t\nnorm: token_ln\nbackbone: swinir-tiny\ntask: sr-x2\ntracking: {uri: 3}\n", "tracking.uri",
     "a tracking URI"),
    ("name: t\nnorm: token_ln\nbackbone: swinir-tiny\ntask: sr-x2\nsearch: {metric: val/pnsr, space: "
     "{train.steps: {type: int, low: 1, high: 9}}}\n", "search.metric", "did you mean 'val/psnr'?"),
    ("name: t\nnorm: token_ln\nbackbone: swinir-tiny\ntask: sr-x2\nsearch: {space: "
     "{train.optimizer.lr: {type: loguniform, low: 0, high: 1.0e-3}}}\n", "search.space.train.optimizer.lr.low",
     "positive"),
    ("name: t\nnorm: token_ln\nbackbone: swinir-tiny\ntask: sr-x2\nsearch: {space: "
     "{train.steps: {type: uniform, low: 1, high: 9}}}\n", "search.space.train.steps.type", "int or choice"),
    ("name: t\nnorm: token_ln\nbackbone: swinir-tiny\ntask: sr-x2\nsearch: {space: "
     "{train.optimizer.lr: {type: uniform, low: 1.0e-3, high: 1.0e-4}}}\n", "search.space.train.optimizer.lr",
     "low < high"),
    ("name: t\nnorm: token_ln\nbackbone: swinir-tiny\ntask: sr-x2\nsearch: {space: "
     "{train.optimizer.lr: {type: logunifrom, low: 1.0e-4, high: 1.0e-3}}}\n",
     "search.space.train.optimizer.lr.type", "did you mean 'loguniform'?"),
    ("name: t\ngrid: {norm: [token_ln], train.steps: [5, 10]}\nbackbone: swinir-tiny\ntask: sr-x2\nsearch: "
     "{space: {train.steps: {type: int, low: 1, high: 9}}}\n", "search.space.train.steps", "not also a grid axis"),
    ("name: t\nnorm: token_ln\nbackbone: swinir-tiny\ntask: sr-x2\nsearch: {space: {}}\n", "search.space",
     "non-empty mapping"),
    ("name: t\nnorm: token_ln\nbackbone: swinir-tiny\ntask: sr-x2\nsearch: {space: {norm: {type: choice, "
     "values: [token_ln, {name: group_norm, groups: 2}]}}}\n", "search.space.norm.values[1]", "a bare name"),
    ("name: t\nnorm: token_ln\nbackbone: swinir-tiny\ntask: sr-x2\nsearch: {space: {train.optimizer.betas: "
     "{type: choice, values: [[0.9, 0.99]]}}}\n", "search.space.train.optimizer.betas.values[0]", "a plain value"),
    ("name: t\nnorm: token_ln\nbackbone: swinir-tiny\ntask: sr-x2\nsearch: {space: {train.loss: "
     "{type: choice, values: [l1, l3]}}}\n", "search.space.train.loss.values[1]", "one of l1, charbonnier, mse"),
])
def test_invalid_files(tmp_path: Path, text: str, path: str, fragment: str) -> None:
    err = _error(tmp_path, text)
    assert err.path == path, str(err)
    assert fragment in str(err)


@pytest.mark.parametrize(("name", "fragment"), [
    ("..", "at least one letter or digit"),
    ("/", "at least one letter or digit"),
    ("a\nb", "printable characters only"),
    ("tab\there", "printable characters only"),
    ("x" * 201, "at most 200 bytes"),
    ("é" * 101, "at most 200 bytes"),
])
def test_names_that_cannot_name_a_folder(name: str, fragment: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_experiment(_base(name=name))
    assert info.value.path == "name" and fragment in str(info.value) and "\n" not in str(info.value)


def test_names_with_slashes_and_dots_are_valid() -> None:
    """A name is an MLflow experiment; where it names a folder it is made file-safe (tests/cli/test_names.py)."""
    for name in ("../../x", "norm ablation/v2", "/etc/passwd", "x" * 200):
        assert parse_experiment(_base(name=name)).name == name


def test_errors_are_ablate_errors_for_the_cli() -> None:
    with pytest.raises(AblateError):
        parse_experiment({"name": "t", "norm": "nope", "backbone": "swinir-tiny", "task": "sr-x2"})


# ------------------------------------------------------------------------------------------
# the other subpackages' checks
# ------------------------------------------------------------------------------------------
def test_unknown_backbone_and_bad_backbone_parameter(tmp_path: Path) -> None:
    err = _error(tmp_path, "name: t\nnorm: token_ln\ntask: sr-x2\ngrid: {backbone: [swinir-tiny, swinir-tyni]}\n")
    assert err.path == "grid.backbone[1]" and "did you mean 'swinir-tiny'?" in str(err)
    err = _error(tmp_path, "name: t\nnorm: token_ln\ntask: sr-x2\n"
                           "grid: {backbone: [{name: swinir-tiny, window_size: banana}]}\n")
    assert err.path.startswith("grid.backbone[0]") and "window_size" in err.path


def test_unknown_task_suggests_the_closest(tmp_path: Path) -> None:
    err = _error(tmp_path, "name: t\nnorm: token_ln\nbackbone: swinir-tiny\ngrid: {task: [sr-x2, sx-x2]}\n")
    assert err.path.startswith("grid.task[1]") and "sr-x2" in str(err)


def test_unknown_dataset_suggests_the_closest(tmp_path: Path) -> None:
    err = _error(tmp_path, "name: t\nnorm: token_ln\nbackbone: swinir-tiny\ntask: sr-x2\ndata: skimgae\n")
    assert err.path.startswith("data") and "skimage" in str(err)


def test_missing_data_folder_names_the_file(tmp_path: Path) -> None:
    from ablate.errors import DataError

    path = _write(tmp_path, "name: t\nnorm: token_ln\nbackbone: swinir-tiny\ntask: sr-x2\n"
                            f"data: {{name: folder, path: {tmp_path / 'no-such-dir'}}}\n")
    with pytest.raises(DataError) as info:
        load_experiment(path)
    assert str(info.value).startswith(f"{path}: ") and "no-such-dir" in str(info.value)


def test_data_folders_can_be_left_unchecked_but_names_cannot(tmp_path):
    from ablate.errors import DataError, SpecError
    from ablate.spec import load_experiment

    f = tmp_path / "cluster.yaml"
    f.write_text("name: c\nnorm: token_ln\nbackbone: swinir-tiny\ntask: sr-x2\n"
                 "data: {name: folder, path: /nonexistent/DF2K/HR}\n")
    with pytest.raises(DataError, match="does not exist"):
        load_experiment(f)
    assert load_experiment(f, check_data=False).name == "c"
    f.write_text(f.read_text().replace("name: folder", "name: foldr"))
    with pytest.raises(SpecError, match="did you mean 'folder'"):
        load_experiment(f, check_data=False)
