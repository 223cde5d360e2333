"""A regularizer from an installed plugin: found through the entry-point group ``ablate.regularizers``,
validated by the spec, listed by ``ablate plugins``, and trained with.

    pytest tests/regularizers/test_plugin_regularizer.py

The plugin is a real distribution as importlib.metadata sees it: a ``*.dist-info`` folder with
``METADATA`` and ``entry_points.txt`` plus a module, in a temporary folder put on ``sys.path``.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from ablate.cli import main
from ablate.errors import SpecError
from ablate.registry import REGISTRIES, REGULARIZERS
from ablate.spec import expand, parse_experiment
from ablate.testing import check_regularizer
from ablate.train import run_cell

PLUGIN = '''
import torch
from ablate.params import Param
from ablate.regularizers import Regularizer


class OutputMeanSquare(Regularizer):
    """Mean square of the deepest block's output (a plugin test regularizer).

    Not part of the listing.
    """

    PARAMS = {"weight": Param(0.5, float, "weight", lo=0.0), "power": Param(2, int, "exponent", choices=(2, 4))}

    def __init__(self, weight=0.5, power=2):
        super().__init__(weight)
        self.power = power
        self.terms = []
        self.handle = None

    def attach(self, model):
        deepest = [m for name, m in model.probe_sites().items() if name != "final"][-1]
        self.handle = deepest.register_forward_hook(self.collect)

    def collect(self, module, inputs, out):
        if module.training and torch.is_grad_enabled():
            self.terms.append(out.float().abs().pow(self.power).mean())

    def value(self):
        terms, self.terms = self.terms, []
        return torch.stack(terms).mean()

    def detach(self):
        if self.handle is not None:
            self.handle.remove()
            self.handle = None
'''


@pytest.fixture
def plugin(tmp_path: Path) -> Iterator[Path]:
    info = tmp_path / "regplug-1.2.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: regplug\nVersion: 1.2.0\n")
    (info / "entry_points.txt").write_text("[ablate.regularizers]\nout_msq = regplug_mod:OutputMeanSquare\n")
    (tmp_path / "regplug_mod.py").write_text(PLUGIN)
    sys.path.insert(0, str(tmp_path))
    importlib.invalidate_caches()
    REGULARIZERS.reload_plugins()
    try:
        yield tmp_path
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("regplug_mod", None)
        for registry in REGISTRIES.values():
            registry.reload_plugins()


def test_the_plugin_is_found_with_its_provenance(plugin: Path) -> None:
    assert "out_msq" in REGULARIZERS.keys()
    entry = REGULARIZERS.entry("out_msq")
    assert (entry.source, entry.version) == ("regplug", "1.2.0")
    assert entry.description == "Mean square of the deepest block's output (a plugin test regularizer)."
    check_regularizer("out_msq")
    check_regularizer("out_msq", params={"power": 4})


def test_ablate_plugins_lists_regularizers(plugin: Path) -> None:
    result = CliRunner().invoke(main, ["plugins", "--kind", "regularizers"])
    assert result.exit_code == 0, result.output
    rows = {line.split()[1]: line.split() for line in result.stdout.splitlines()[1:] if line.startswith("regularizers")}
    assert set(rows) == {"feature_kl", "none", "out_msq"}
    assert rows["out_msq"][:4] == ["regularizers", "out_msq", "regplug", "1.2.0"]
    assert rows["feature_kl"][2] == "ablate"
    assert "3 components, 1 from plugins" in result.stdout


def test_a_spec_names_it_its_params_are_checked_and_a_cell_trains_with_it(plugin: Path) -> None:
    raw = {"name": "t", "norm": "token_ln", "task": "dn-s25",
           "backbone": {"name": "swinir-tiny", "embed_dim": 16, "depths": [1, 1], "num_heads": 2, "window_size": 4},
           "train": {"steps": 6, "batch_size": 2, "patch_size": 16, "eval_every": 6, "val_size": 32,
                     "lowprec_eval": False, "regularizer": {"name": "out_msq", "power": 4}},
           "grid": {"train.regularizer.weight": [0.0, 0.5]},
           "probes": {"every": 0}}
    cells = expand(parse_experiment(raw))
    assert [c.train.regularizer.kwargs for c in cells] == [{"power": 4, "weight": 0.0}, {"power": 4, "weight": 0.5}]
    reports: list[dict[str, float]] = []

    class Rec:
        def report(self, step, metrics, traces=None, checkpoint=None):  # noqa: ANN001
            reports.append(metrics)

    result = run_cell(cells[1], Rec())
    assert result.status == "finished"
    assert [m["train/reg"] for m in reports if "train/reg" in m]
    with pytest.raises(SpecError, match=r"train.regularizer.power: expected one of 2, 4, got 3"):
        parse_experiment({**raw, "train": {**raw["train"], "regularizer": {"name": "out_msq", "power": 3}}})
    with pytest.raises(SpecError, match=r"did you mean 'out_msq'\?"):
        parse_experiment({**raw, "train": {**raw["train"], "regularizer": {"name": "out_mse"}}})
