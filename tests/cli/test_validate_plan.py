"""`ablate validate` and `ablate plan` through click's CliRunner: output, exit codes, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from ablate.cli import main
from ablate.spec import expand, load_experiment

DATA = Path(__file__).parents[1] / "spec" / "data"


@pytest.fixture()
def runner() -> CliRunner:
    return CliRunner()


def _one_line_error(result: object, *fragments: str) -> str:
    assert result.exit_code == 2, result.output  # type: ignore[attr-defined]
    lines = [line for line in result.output.splitlines() if line.strip()]  # type: ignore[attr-defined]
    assert len(lines) == 1, result.output  # type: ignore[attr-defined]
    assert lines[0].startswith("error: ") and "Traceback" not in result.output  # type: ignore[attr-defined]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def test_validate_ok(runner: CliRunner) -> None:
    result = runner.invoke(main, ["validate", str(DATA / "grid.yaml")])
    assert result.exit_code == 0, result.output
    assert result.output == "ok: 18 cells, norm-ablation-test\n"
    single = runner.invoke(main, ["validate", str(DATA / "single.yaml")])
    assert single.output == "ok: 1 cell, single-cell\n"


def test_validate_bad_file_is_one_line_and_exit_2(runner: CliRunner, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: t\ngrid: {norm: [token_ln, toekn_ln]}\nbackbone: swinir-tiny\ntask: sr-x2\n")
    _one_line_error(runner.invoke(main, ["validate", str(bad)]), str(bad), "grid.norm[1]",
                    "did you mean 'token_ln'?")
    _one_line_error(runner.invoke(main, ["validate", str(DATA / "bad_syntax.yaml")]), "line 4, column 11")
    _one_line_error(runner.invoke(main, ["validate", str(tmp_path / "missing.yaml")]), "missing.yaml",
                    "an existing YAML experiment file")


def test_validate_several_files_reports_each(runner: CliRunner, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: t\nnorm: token_ln\nbackbone: swinir-tiny\ntask: sr-x2\ntrain: {steps: abc}\n")
    result = runner.invoke(main, ["validate", str(DATA / "single.yaml"), str(bad)])
    assert result.exit_code == 2
    assert f"ok: 1 cell, single-cell ({DATA / 'single.yaml'})" in result.output
    assert f"error: {bad}: train.steps: expected an integer, got 'abc'" in result.output
    assert "Traceback" not in result.output


def test_plan_table(runner: CliRunner) -> None:
    result = runner.invoke(main, ["plan", str(DATA / "grid.yaml")])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["id", "norm", "rescale", "backbone", "task", "seed", "train.optimizer.lr"]
    assert set(lines[1]) == {"-", " "}
    spec = load_experiment(DATA / "grid.yaml")
    cells = expand(spec)
    assert len(lines) == 2 + len(cells) + 1
    assert [line.split()[0] for line in lines[2:-1]] == [c.id for c in cells]
    assert lines[2].split()[1:] == ["token_ln", "false", "swinir-tiny", "sr-x2", "0", "0.0002"]
    assert lines[-1] == f"18 cells (norm-ablation-test, spec {spec.hash})"


def test_plan_json(runner: CliRunner) -> None:
    result = runner.invoke(main, ["plan", str(DATA / "grid.yaml"), "--format", "json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    cells = expand(load_experiment(DATA / "grid.yaml"))
    assert out["name"] == "norm-ablation-test" and len(out["cells"]) == len(cells) == 18
    first = out["cells"][0]
    assert first["id"] == cells[0].id and first["config"] == json.loads(json.dumps(cells[0].to_config()))
    assert first["train.optimizer.lr"] == 2e-4


def test_plan_bad_file_is_one_line(runner: CliRunner, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: t\ngrid: {norm: [dyt], rescale: [false, true]}\nbackbone: swinir-tiny\ntask: sr-x2\n")
    _one_line_error(runner.invoke(main, ["plan", str(bad)]), "norm dyt with rescale true",
                    "exclude: [{norm: dyt, rescale: true}]")


@pytest.mark.parametrize("name", ["validate", "plan"])
def test_help_opens_with_a_runnable_example(runner: CliRunner, name: str) -> None:
    result = runner.invoke(main, [name, "--help"])
    assert result.exit_code == 0
    body = result.output.split("\n\n")
    examples = [line.strip() for line in result.output.splitlines() if line.strip().startswith("ablate ")]
    assert examples and examples[0].startswith(f"ablate {name} experiments/")
    assert body[2].strip().startswith(f"ablate {name} ")  # right after the usage and summary lines
