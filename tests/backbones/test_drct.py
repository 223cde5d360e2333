"""DRCT: parameter counts pinned to the official code, dense-group structure, norm and probe sites.

    .venv/bin/python -m pytest tests/backbones/test_drct.py -q

The published presets are only built on the meta device (shapes, no forward): forwards run on drct-tiny.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import pytest
import torch
from torch import nn

from ablate.backbones import DRCT, build_backbone, validate_backbone
from ablate.backbones.drct import ResidualDenseGroup
from ablate.errors import SpecError
from ablate.norms import NormVariant, resolve_norm
from ablate.registry import BACKBONES
from ablate.testing import check_backbone

# Parameter counts of the official DRCT (github.com/ming053l/DRCT @ c0a8b51, drct/archs/DRCT_arch.py),
# instantiated with the network_g of its options files (options/train/train_DRCT[-L]_SRx{2,3,4}_*.yml:
# embed_dim 180, 6 or 12 groups, num_heads 6, window_size 16, mlp_ratio 2, gc 32 by default,
# pixelshuffle) with nn.LayerNorm, counted with sum(p.numel() for p in model.parameters()). Its README
# rounds the x4 ones to 14.13M and 27.58M.
REFERENCE_COUNTS = {
    ("drct", 2): 13_991_867, ("drct", 3): 14_176_507, ("drct", 4): 14_139_579,
    ("drct-l", 2): 27_433_007, ("drct-l", 3): 27_617_647, ("drct-l", 4): 27_580_719,
}
ODD = (19, 13)  # neither side a multiple of the window (8)


@cache
def _meta_model(name: str, scale: int) -> DRCT:
    with torch.device("meta"):  # shapes only: no memory, no random init, no forward
        model = build_backbone(name, resolve_norm("token_ln"), scale)
    assert isinstance(model, DRCT)
    return model


def _groups(model: nn.Module) -> list[ResidualDenseGroup]:
    return [g for g in model.modules() if isinstance(g, ResidualDenseGroup)]


def test_presets_are_registered_with_descriptions() -> None:
    for key in ("drct-tiny", "drct", "drct-l"):
        entry = BACKBONES.entry(key)
        assert entry.source == "ablate" and entry.description, key


@pytest.mark.parametrize(("name", "scale"), sorted(REFERENCE_COUNTS))
def test_parameter_counts_equal_the_official_code(name: str, scale: int) -> None:
    assert _meta_model(name, scale).num_parameters() == REFERENCE_COUNTS[(name, scale)]


def test_tiny_is_about_the_size_of_the_other_tiny_presets() -> None:
    """drct-tiny: embed 36, 2 RDGs x 5 blocks, growth 8, 6 heads (the published head pattern 6, 4, 2, 6, 4)."""
    tiny = _meta_model("drct-tiny", 2).num_parameters()
    assert tiny == 278_243
    with torch.device("meta"):
        hat_tiny = build_backbone("hat-tiny", resolve_norm("token_ln"), 2).num_parameters()
    assert 0.8 * hat_tiny < tiny < 1.2 * hat_tiny


@pytest.mark.parametrize("name", ["drct", "drct-tiny"])
def test_dense_group_structure(name: str) -> None:
    """Block j: width C + j·gc, heads h − (width mod h), shift 0/window/2, FFN ratio mlp_ratio then 1."""
    model = _meta_model(name, 4)
    c, gc, w = model.config.embed_dim, model.config.gc, model.window_size
    for group in _groups(model):
        assert len(group.blocks) == 5
        widths = [c + j * gc for j in range(5)]
        heads = [block.attn.num_heads for block in group.blocks]
        assert heads == [6, 4, 2, 6, 4]  # both presets have C ≡ 0 and gc ≡ 2 (mod 6)
        assert [block.attn.shift for block in group.blocks] == [0, w // 2, 0, w // 2, 0]
        assert [block.attn.qkv.in_features for block in group.blocks] == widths
        assert [block.mlp.fc1.out_features for block in group.blocks] == [2 * d for d in widths[:3]] + widths[3:]
        assert [(a.in_channels, a.out_channels, a.kernel_size) for a in group.adjust] == (
            [(d, gc, (1, 1)) for d in widths[:4]] + [(widths[4], c, (1, 1))])
    assert len(model.groups) == {"drct": 6, "drct-tiny": 2}[name]
    assert len(_meta_model("drct-l", 4).groups) == 12


class _WidthRecorder(NormVariant):
    """Records (dim, site) of every norm built and (site, shape) of every map a norm normalizes."""

    def __init__(self, base: NormVariant) -> None:
        super().__init__("recorder", base.normalizer, base.rescale, base.params, base.sites)
        object.__setattr__(self, "calls", [])
        object.__setattr__(self, "seen", [])

    def __call__(self, dim: int, site: str = "attn") -> Any:
        self.calls.append((dim, site))
        norm = super().__call__(dim, site)
        seen, normalize = self.seen, norm.normalize

        def recording(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
            seen.append((site, tuple(x.shape)))
            return normalize(x)

        norm.normalize = recording  # type: ignore[method-assign]
        return norm


def test_every_norm_sees_the_whole_dense_map_of_the_full_image() -> None:
    variant = _WidthRecorder(resolve_norm("token_ln"))
    model = build_backbone("drct-tiny", variant, 2)
    widths = [36 + 8 * j for j in range(5)]
    per_group = [(d, s) for d in widths for s in ("attn", "ffn")]
    assert variant.calls == [(36, "embed")] + per_group * 2 + [(36, "final")]

    model(torch.rand(2, 3, *ODD))
    tokens = 24 * 16  # padded to the window (8)
    want = {("embed", (2, tokens, 36)), ("final", (2, tokens, 36))}
    want |= {(s, (2, tokens, d)) for d, s in per_group}
    assert set(variant.seen) == want


def test_probe_sites_are_each_blocks_first_c_channels() -> None:
    model = build_backbone("drct-tiny", resolve_norm("i_ln"), 3).eval()
    sites = model.probe_sites()
    assert list(sites) == [f"g{i}.b{j}" for i in range(2) for j in range(5)] + ["final"]
    assert sites["final"] is model.final_norm

    blocks = {f"g{i}.b{j}": block for i, group in enumerate(_groups(model)) for j, block in enumerate(group.blocks)}
    block_out: dict[str, torch.Tensor] = {}
    site_out: dict[str, torch.Tensor] = {}
    hooks = [m.register_forward_hook(lambda _m, _a, out, n=n: block_out.__setitem__(n, out))
             for n, m in blocks.items()]
    hooks += [m.register_forward_hook(lambda _m, _a, out, n=n: site_out.__setitem__(n, out))
              for n, m in sites.items()]
    with torch.no_grad():
        model(torch.rand(2, 3, *ODD))
    for h in hooks:
        h.remove()
    for name, out in block_out.items():
        assert out.shape[-1] > 36 or name.endswith("b0")
        assert torch.equal(site_out[name], out[..., :36])
    assert {tuple(o.shape) for o in site_out.values()} == {(2, 24 * 16, 36)}


def test_a_group_with_a_zero_last_conv_is_the_identity() -> None:
    """The group output is x + 0.2 · (last 1×1 conv): zeroing that conv leaves the residual alone."""
    model = build_backbone("drct-tiny", resolve_norm("token_ln"), 2)
    group = _groups(model)[0]
    with torch.no_grad():
        nn.init.zeros_(group.adjust[-1].weight)
        nn.init.zeros_(group.adjust[-1].bias)
        x = torch.randn(2, 16 * 8, 36)
        torch.testing.assert_close(group(x, (16, 8)), x, rtol=0, atol=0)
        nn.init.ones_(group.adjust[-1].bias)
        torch.testing.assert_close(group(x, (16, 8)), x + 0.2, rtol=0, atol=1e-6)


@pytest.mark.parametrize("hw", [(1, 1), (5, 3), (8, 8), (9, 17)])
def test_any_input_size(hw: tuple[int, int]) -> None:
    model = build_backbone("drct-tiny", resolve_norm("i_ln"), 2).eval()
    with torch.no_grad():
        y = model(torch.rand(1, 3, *hw))
    assert y.shape == (1, 3, hw[0] * 2, hw[1] * 2) and torch.isfinite(y).all()


@pytest.mark.parametrize("norm", ["token_ln", "batch_norm", "layer_scale",
                                  {"name": "group_norm", "groups": 4, "rescale": True}])
def test_contract_with_other_norms(norm: Any) -> None:
    # every dense width (36 … 68) is a multiple of 4, so the grouped σ fits every block
    check_backbone("drct-tiny", norm=norm, scales=(2,), size=(9, 7))


def test_same_seed_same_init_across_norm_variants() -> None:
    """Paired cells differ only in the norm: every non-norm weight must start identical."""
    states = []
    for norm in ("token_ln", "i_ln", "layer_scale"):
        torch.manual_seed(7)
        states.append(build_backbone("drct-tiny", resolve_norm(norm), 2).state_dict())
    for other in states[1:]:
        for key, value in states[0].items():
            if not any(part in key for part in ("embed_norm.", "final_norm.", "norm1.", "norm2.")):
                torch.testing.assert_close(other[key], value, rtol=0, atol=0, msg=key)


def test_overrides_build_what_they_say() -> None:
    spec = {"name": "drct-tiny", "gc": 4, "depths": [3, 2, 1], "num_heads": [6, 3, 2], "window_size": 4}
    validate_backbone(spec)
    model = build_backbone(spec, resolve_norm("token_ln"), 2)
    assert model.config.gc == 4 and model.config.depths == (3, 2, 1)
    assert [len(g.blocks) for g in _groups(model)] == [3, 2, 1]
    assert [b.attn.num_heads for b in _groups(model)[0].blocks] == [6, 2, 4]  # 36, 40, 44 channels
    assert model(torch.rand(1, 3, 9, 9)).shape == (1, 3, 18, 18)


@pytest.mark.parametrize(("spec", "pattern"), [
    ({"name": "drct-tiny", "gc": 0}, r"backbone\.gc: expected a positive integer, got 0"),
    ({"name": "drct-tiny", "gc": "8"}, r"backbone\.gc: expected a positive integer, got '8'"),
    # 36 + 1 = 37 channels: 6 − 37 mod 6 = 5 heads, not a divisor of 37
    ({"name": "drct-tiny", "gc": 1}, r"backbone\.gc: expected a growth for which each block's head count "
                                     r"divides its width \(group 0 block 1: 37 channels, 5 heads"),
    ({"name": "drct-tiny", "compress_ratio": 3}, r"backbone\.compress_ratio: expected a parameter of backbone "
                                                 r"'drct-tiny' \(accepted: .*, gc\)"),
    ({"name": "hat-tiny", "gc": 8}, r"backbone\.gc: expected a parameter of backbone 'hat-tiny'"),
])
def test_invalid_specs_raise_clear_errors(spec: dict[str, Any], pattern: str) -> None:
    with pytest.raises(SpecError, match=pattern):
        validate_backbone(spec)
