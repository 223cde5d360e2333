"""Dashboard specs: the shipped YAMLs load, and mistakes name the file, the key and what was expected."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from ablate.errors import SpecError
from ablate.report import DashboardSpec, load_dashboard_spec, parse_dashboard_spec

DASHBOARDS = Path(__file__).resolve().parents[2] / "dashboards"


def test_shipped_default_equals_the_builtin_default() -> None:
    shipped = load_dashboard_spec(DASHBOARDS / "norm-ablation.yaml")
    builtin = DashboardSpec()
    for f in dataclasses.fields(DashboardSpec):
        if f.name not in ("source", "description"):
            assert getattr(shipped, f.name) == getattr(builtin, f.name), f.name
    assert load_dashboard_spec(None) == builtin
    assert load_dashboard_spec("norm-ablation", search=()) == builtin  # the name works without the file


def test_every_shipped_spec_loads_and_names_resolve() -> None:
    files = sorted(DASHBOARDS.glob("*.yaml"))
    assert {f.stem for f in files} >= {"norm-ablation", "divergence"}
    for f in files:
        spec = load_dashboard_spec(f)
        assert spec.name == f.stem and spec.plots and spec.source
    div = load_dashboard_spec("divergence", search=(DASHBOARDS,))
    assert div.table.metric == "final/max_msq" and div.table.goal == "min"
    assert div.table.statuses == ("finished", "diverged")


@pytest.mark.parametrize(("raw", "path", "fragment"), [
    ({"tabel": {}}, "tabel", "did you mean"),
    ({"table": {"goal": "maximum"}}, "table.goal", "one of max, min"),
    ({"table": {"statuses": ["finised"]}}, "table.statuses[0]", "one of finished"),
    ({"table": {"precision": 12}}, "table.precision", "an integer from 0 to 8"),
    ({"plots": [{"kind": "histogram"}]}, "plots[0].kind", "one of trace, depth, metric, lowprec"),
    ({"plots": [{"kind": "trace", "stat": "mean"}]}, "plots[0].stat", "one of msq, maxabs, entropy, top1"),
    ({"plots": [{"stat": "msq"}]}, "plots[0].kind", "one of trace"),
    ({"plots": [{"kind": "lowprec", "precisions": ["fp8"]}]}, "plots[0].precisions[0]", "fp16, bf16"),
    ({"filters": {"params": ["task"]}}, "filters.params", "a mapping"),
    ({"max_facets": 0}, "max_facets", "a positive integer"),
])
def test_bad_specs_raise_spec_errors(raw: dict, path: str, fragment: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_dashboard_spec(raw, file="dash.yaml")
    assert info.value.path == path and info.value.file == "dash.yaml"
    assert fragment in str(info.value) and str(info.value).startswith(f"dash.yaml: {path}: expected")


def test_yaml_syntax_and_missing_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("table: {metric: final/psnr\nplots: [\n")
    with pytest.raises(SpecError, match=r"bad.yaml: line \d+: expected valid YAML"):
        load_dashboard_spec(bad)
    with pytest.raises(SpecError, match="expected a dashboard spec file"):
        load_dashboard_spec(tmp_path / "nope.yaml")


def test_filters_parse_to_strings() -> None:
    spec = parse_dashboard_spec({"filters": {"params": {"train.optimizer.lr": [0.001, "2e-4"], "task": "sr-x2"},
                                             "norms": "i_ln"}})
    assert spec.filters.params == (("train.optimizer.lr", ("0.001", "2e-4")), ("task", ("sr-x2",)))
    assert spec.filters.norms == ("i_ln",)
