"""Backbone specs: validation messages, overrides, registry entries, and parameter counts vs. the papers.

    .venv/bin/python -m pytest tests/backbones/test_backbone_specs.py -q -s   # -s prints the counts
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

import pytest
import torch

from ablate.backbones import build_backbone, validate_backbone
from ablate.errors import SpecError
from ablate.norms import resolve_norm
from ablate.registry import BACKBONES
from ablate.spec import Component

PRESETS = ("swinir-tiny", "swinir-light", "swinir", "hat-tiny", "hat-mini", "hat")


def _count(model: torch.nn.Module, *, tables: bool = True) -> int:
    return sum(p.numel() for n, p in model.named_parameters()
               if tables or "relative_position_bias_table" not in n)


@cache
def _preset_count(spec: str, scale: int) -> int:
    """Parameter count of a preset (spec: a name or a JSON mapping); cached: big models are slow to build."""
    parsed = json.loads(spec) if spec.startswith("{") else spec
    with torch.device("meta"):  # shapes only: no memory, no random init
        return _count(build_backbone(parsed, resolve_norm("token_ln"), scale))


def test_presets_are_registered_with_descriptions() -> None:
    for key in PRESETS:
        entry = BACKBONES.entry(key)
        assert entry.source == "ablate" and entry.description, key


@pytest.mark.parametrize("spec", [
    "swinir-tiny",
    {"name": "swinir-tiny", "embed_dim": 32, "depths": [2, 2, 2], "num_heads": [2, 4, 8], "window_size": 4},
    Component.parse({"name": "hat-tiny", "overlap_ratio": 0.25, "compress_ratio": 4, "mlp_ratio": 3}, "backbone"),
    {"name": "hat-tiny", "upsampler": "pixelshuffledirect", "stdnorm": True, "qkv_bias": False},
])
def test_overrides_build_what_they_say(spec: Any) -> None:
    validate_backbone(spec)
    model = build_backbone(spec, resolve_norm("token_ln"), 2)
    params = spec.kwargs if isinstance(spec, Component) else (spec if isinstance(spec, dict) else {})
    for key, value in params.items():
        if key == "name":
            continue
        got = getattr(model.config, key)
        assert got == (tuple(value) if isinstance(value, list) else value), key
    assert model(torch.rand(1, 3, 9, 9)).shape == (1, 3, 18, 18)


def test_num_heads_per_group_is_used() -> None:
    model = build_backbone({"name": "swinir-tiny", "num_heads": [2, 6]}, resolve_norm("token_ln"), 2)
    assert model.probe_sites()["g0.b0"].attn.num_heads == 2
    assert model.probe_sites()["g1.b3"].attn.num_heads == 6


@pytest.mark.parametrize(("spec", "pattern"), [
    ("swinir-tny", r"backbone: expected a registered backbone, got 'swinir-tny' .*did you mean 'swinir-tiny'"),
    ({"name": "hat-mni"}, r"backbone\.name: .*did you mean 'hat-mini'"),
    ({"name": "swinir-tiny", "embed_dims": 64},
     r"backbone\.embed_dims: expected a parameter of backbone 'swinir-tiny' \(accepted: embed_dim, depths, "
     r"num_heads, window_size, .*stdnorm\), got 'embed_dims' \(did you mean 'embed_dim'\?\)"),
    ({"name": "swinir-tiny", "compress_ratio": 3}, r"backbone\.compress_ratio: expected a parameter of backbone"),
    ({"name": "swinir-tiny", "depths": 4}, r"backbone\.depths: expected a non-empty list of positive integers"),
    ({"name": "swinir-tiny", "depths": [4, 0]}, r"backbone\.depths: .*got \[4, 0\]"),
    ({"name": "swinir-tiny", "embed_dim": "48"}, r"backbone\.embed_dim: expected a positive integer, got '48'"),
    ({"name": "swinir-tiny", "embed_dim": True}, r"backbone\.embed_dim: expected a positive integer"),
    ({"name": "swinir-tiny", "num_heads": 5}, r"backbone\.num_heads: expected a divisor of embed_dim 48, got 5"),
    ({"name": "swinir-tiny", "num_heads": [4, 4, 4]}, r"backbone\.num_heads: expected one head count per group"),
    ({"name": "swinir-tiny", "mlp_ratio": -1}, r"backbone\.mlp_ratio: expected a positive number, got -1"),
    ({"name": "swinir-tiny", "upsampler": "nearest"},
     r"backbone\.upsampler: expected one of pixelshuffle, pixelshuffledirect, got 'nearest'"),
    ({"name": "swinir-tiny", "stdnorm": "yes"}, r"backbone\.stdnorm: expected true or false, got 'yes'"),
    ({"name": "hat-tiny", "overlap_ratio": 0.375}, r"backbone\.overlap_ratio: expected a ratio making"),
    ({"name": "hat-tiny", "squeeze_factor": 100}, r"backbone\.squeeze_factor: expected at most embed_dim \(48\)"),
    ({"embed_dim": 48}, r"backbone\.name: expected a backbone name"),
    (3, r"backbone: expected a backbone name or a mapping with 'name', got 3"),
])
def test_invalid_specs_raise_clear_errors(spec: Any, pattern: str) -> None:
    with pytest.raises(SpecError, match=pattern):
        validate_backbone(spec)
    with pytest.raises(SpecError, match=pattern):
        build_backbone(spec, resolve_norm("token_ln"), 2)


def test_bad_scale_is_a_spec_error() -> None:
    with pytest.raises(SpecError, match=r"scale: expected one of 1, 2, 3, 4, got 8"):
        build_backbone("swinir-tiny", resolve_norm("token_ln"), 8)


def test_plugin_factory_params_are_checked_by_signature() -> None:
    def toy(norm: Any, scale: int, width: int = 8) -> Any:
        """A toy factory."""
        return build_backbone({"name": "swinir-tiny", "embed_dim": width}, norm, scale)

    BACKBONES.add("toy-test-backbone", toy)
    try:
        validate_backbone({"name": "toy-test-backbone", "width": 16})
        with pytest.raises(SpecError, match=r"backbone\.depth: .*accepted: width"):
            validate_backbone({"name": "toy-test-backbone", "depth": 3})
        assert build_backbone({"name": "toy-test-backbone", "width": 16}, "token_ln", 2).embed_dim == 16
    finally:
        BACKBONES.unregister("toy-test-backbone")


# ---------------------------------------------------------------------------------------------
# parameter counts
# ---------------------------------------------------------------------------------------------
def test_print_parameter_counts() -> None:
    rows = [f"{key:13s} x2 {_preset_count(key, 2):>11,}  x4 {_preset_count(key, 4):>11,}" for key in PRESETS]
    print("\nparameters (token_ln):\n" + "\n".join(rows))
    tiny = _preset_count("swinir-tiny", 2)
    assert 200_000 <= tiny <= 250_000  # the quickstart size the docs promise


def test_swinir_light_matches_the_published_count() -> None:
    """SwinIR paper (Liang et al. 2021), lightweight-SR table: 878K (x2), 886K (x3), 897K (x4).

    Those figures equal our model *without* its 24 relative-position bias tables (24 x 225 x 6 =
    32,400 parameters); the architecture with its tables has 910,152 at x2, 3.7% above 878K.
    """
    norm = resolve_norm("token_ln")
    for scale, published in ((2, 878_000), (3, 886_000), (4, 897_000)):
        model = build_backbone("swinir-light", norm, scale)
        total, without_tables = _count(model), _count(model, tables=False)
        print(f"swinir-light x{scale}: {total:,} parameters, {without_tables:,} without bias tables; "
              f"published {published:,}")
        assert abs(without_tables - published) / published < 0.03
        assert abs(without_tables - published) < 1_000  # in fact equal up to the paper's rounding
        assert total - without_tables == 32_400
    assert _count(build_backbone("swinir-light", norm, 2)) == 910_152


def test_big_presets_match_published_counts() -> None:
    """SwinIR paper (classical SR x4): 11.9M. HAT paper (x4): HAT 20.8M, HAT-S 9.6M."""
    swinir, hat, hat_mini = _preset_count("swinir", 4), _preset_count("hat", 4), _preset_count("hat-mini", 4)
    hat_s = _preset_count(json.dumps({"name": "hat", "embed_dim": 144, "compress_ratio": 24,
                                      "squeeze_factor": 24}), 4)
    print(f"swinir x4 {swinir:,} (11.9M), hat x4 {hat:,} (20.8M), HAT-S x4 {hat_s:,} (9.6M), "
          f"hat-mini x4 {hat_mini:,}")
    assert abs(swinir - 11.9e6) / 11.9e6 < 0.01
    assert abs(hat - 20.8e6) / 20.8e6 < 0.01
    assert abs(hat_s - 9.6e6) / 9.6e6 < 0.01
    assert hat_mini < hat_s < hat
