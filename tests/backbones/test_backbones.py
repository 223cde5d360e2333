"""Contract tests for every registered backbone: shapes, norm sites, probe sites, independence, gradients.

    .venv/bin/python -m pytest tests/backbones -q
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from ablate.backbones import BackbonePreset, IRModel, build_backbone
from ablate.backbones._common import _TABLES
from ablate.norms import NormVariant, resolve_norm
from ablate.norms._normalizers import Affine, GlobalLayerNorm, TokenLayerNorm
from ablate.registry import BACKBONES

TINY = ("swinir-tiny", "hat-tiny")
ODD = (37, 29)  # neither side a multiple of 8 or 16
SMALL_ODD = (19, 13)  # for the big presets (CPU time)


def _spec(name: str) -> str | dict[str, object]:
    """The preset itself for tiny presets; big ones keep everything but get 2 + 1 blocks (CPU time)."""
    entry = BACKBONES.get(name)
    if name in TINY or not isinstance(entry, BackbonePreset):
        return name
    return {"name": name, "depths": [2, 1]}


@pytest.mark.parametrize("name", BACKBONES.keys())
@pytest.mark.parametrize("scale", [1, 2, 3, 4])
def test_any_size_any_scale(name: str, scale: int) -> None:
    torch.manual_seed(0)
    model = build_backbone(_spec(name), resolve_norm("token_ln"), scale).eval()
    assert isinstance(model, IRModel) and model.scale == scale
    batch, hw = (2, ODD) if name in TINY else (1, SMALL_ODD)
    with torch.no_grad():
        y = model(torch.rand(batch, 3, *hw))
    assert y.shape == (batch, 3, hw[0] * scale, hw[1] * scale)
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("name", TINY)
@pytest.mark.parametrize("hw", [(1, 1), (5, 3), (8, 8), (9, 17)])
def test_tiny_and_exact_sizes(name: str, hw: tuple[int, int]) -> None:
    model = build_backbone(name, resolve_norm("i_ln"), 2).eval()
    with torch.no_grad():
        y = model(torch.rand(1, 3, *hw))
    assert y.shape == (1, 3, hw[0] * 2, hw[1] * 2)


class RecordingVariant(NormVariant):
    """A NormVariant that records every (dim, site) it is asked for and every map its norms see."""

    def __init__(self, base: NormVariant, name: str = "recorder") -> None:
        super().__init__(name, base.normalizer, base.rescale, base.params, base.sites)
        object.__setattr__(self, "calls", [])
        object.__setattr__(self, "seen", [])

    def __call__(self, dim: int, site: str = "attn") -> nn.Module:
        self.calls.append((dim, site))
        norm = super().__call__(dim, site)
        seen, normalize = self.seen, norm.normalize

        def recording_normalize(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
            seen.append((site, tuple(x.shape)))  # both norm(x) and norm.residual(x, f) come through here
            return normalize(x)

        norm.normalize = recording_normalize  # type: ignore[method-assign]
        return norm


def _count_blocks(model: IRModel) -> int:
    return sum(1 for name in model.probe_sites() if name != "final")


@pytest.mark.parametrize("name", TINY)
def test_every_norm_site_is_requested_and_sees_the_full_map(name: str) -> None:
    variant = RecordingVariant(resolve_norm("token_ln"))
    model = build_backbone(name, variant, 2)
    blocks = _count_blocks(model)
    sites = [s for _, s in variant.calls]
    assert sites.count("embed") == 1 and sites.count("final") == 1
    assert sites.count("attn") == blocks and sites.count("ffn") == blocks
    assert {d for d, _ in variant.calls} == {model.embed_dim}

    model(torch.rand(2, 3, *ODD))
    w = model.window_size
    padded = -(-ODD[0] // w) * w * (-(-ODD[1] // w) * w)
    # every norm normalizes the whole padded image's token map, never a window
    assert {shape for _, shape in variant.seen} == {(2, padded, model.embed_dim)}
    assert {s for s, _ in variant.seen} == {"embed", "attn", "ffn", "final"}


@pytest.mark.parametrize("name", TINY)
def test_blocks_do_not_look_at_the_variant_name(name: str) -> None:
    x = torch.rand(1, 3, 16, 16)
    outs = []
    for label in ("token_ln", "something-else"):
        torch.manual_seed(3)
        variant = dataclasses.replace(resolve_norm("token_ln"), name=label)
        model = build_backbone(name, variant, 2)
        outs.append(model(x))
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=0)


def test_i_ln_site_policy_reaches_the_model() -> None:
    model = build_backbone("hat-tiny", resolve_norm("i_ln"), 2)
    assert isinstance(model.embed_norm, Affine) and isinstance(model.final_norm, Affine)
    block = model.probe_sites()["g0.b0"]
    assert isinstance(block.norm1, GlobalLayerNorm) and block.norm1.rescale
    assert isinstance(model.probe_sites()["g1.ocab"].norm2, GlobalLayerNorm)
    plain = build_backbone("hat-tiny", resolve_norm("token_ln"), 2)
    assert isinstance(plain.final_norm, TokenLayerNorm) and not plain.probe_sites()["g0.b1"].norm1.rescale


@pytest.mark.parametrize("name", TINY)
def test_probe_sites_order_and_outputs(name: str) -> None:
    model = build_backbone(name, resolve_norm("token_ln"), 2).eval()
    sites = model.probe_sites()
    names = list(sites)
    groups = model.config.depths
    expected = []
    for i, depth in enumerate(groups):
        expected += [f"g{i}.b{j}" for j in range(depth)]
        if name.startswith("hat"):
            expected.append(f"g{i}.ocab")
    assert names == expected + ["final"]
    assert sites["final"] is model.final_norm

    shapes: dict[str, tuple[int, ...]] = {}
    hooks = [m.register_forward_hook(lambda mod, a, out, n=n: shapes.__setitem__(n, tuple(out.shape)))
             for n, m in sites.items()]
    with torch.no_grad():
        model(torch.rand(3, 3, 20, 12))
    for h in hooks:
        h.remove()
    w = model.window_size
    tokens = (-(-20 // w) * w) * (-(-12 // w) * w)
    assert shapes == {n: (3, tokens, model.embed_dim) for n in names}


@pytest.mark.parametrize("name", TINY)
def test_i_ln_model_is_per_sample_independent(name: str) -> None:
    torch.manual_seed(0)
    model = build_backbone(name, resolve_norm("global_ln", rescale=True), 2)
    a, b = torch.rand(2, 3, 20, 20)
    pair = model(torch.stack([a, b]))
    other = model(torch.stack([a, torch.rand(3, 20, 20) * 0.2]))
    alone = model(a[None])
    torch.testing.assert_close(pair[0], other[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(pair[0], alone[0], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(pair[1], other[1], atol=1e-3)


def test_batch_norm_model_is_not_per_sample_independent() -> None:
    """The control for the test above: a batch-statistics norm must make it fail."""
    torch.manual_seed(0)
    model = build_backbone("swinir-tiny", resolve_norm("batch_norm"), 2).train()
    a, b = torch.rand(2, 3, 16, 16)
    first = model(torch.stack([a, b]))[0]
    second = model(torch.stack([a, torch.rand(3, 16, 16)]))[0]
    assert not torch.allclose(first, second, atol=1e-4)


@pytest.mark.parametrize("name", TINY)
@pytest.mark.parametrize("scale", [1, 3])
def test_gradients_reach_every_parameter(name: str, scale: int) -> None:
    torch.manual_seed(0)
    model = build_backbone(name, resolve_norm("token_ln"), scale)
    model(torch.rand(2, 3, 12, 10)).square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


@pytest.mark.parametrize("stdnorm", [False, True])
def test_mean_std_round_trip(stdnorm: bool) -> None:
    """With the reconstruction conv zeroed, scale 1 is the identity (global residual) and SR gives the mean."""
    x = torch.rand(2, 3, 11, 13)
    same = build_backbone({"name": "swinir-tiny", "stdnorm": stdnorm}, resolve_norm("token_ln"), 1)
    sr = build_backbone({"name": "hat-tiny", "stdnorm": stdnorm}, resolve_norm("token_ln"), 2)
    with torch.no_grad():
        nn.init.zeros_(same.head.weight)
        nn.init.zeros_(same.head.bias)
        last = sr.head[-1]
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        torch.testing.assert_close(same(x), x, rtol=0, atol=1e-6)
        mean = torch.tensor([0.4488, 0.4371, 0.4040]).view(1, 3, 1, 1).expand(2, 3, 22, 26)
        torch.testing.assert_close(sr(x), mean, rtol=0, atol=1e-6)


def test_stdnorm_is_its_own_option() -> None:
    x = torch.rand(1, 3, 16, 16)
    torch.manual_seed(0)
    plain = build_backbone("swinir-tiny", resolve_norm("i_ln"), 2)
    torch.manual_seed(0)
    scaled = build_backbone({"name": "swinir-tiny", "stdnorm": True}, resolve_norm("i_ln"), 2)
    assert not plain.stdnorm and scaled.stdnorm
    assert plain.state_dict().keys() == scaled.state_dict().keys()  # buffers are not in checkpoints
    assert not torch.allclose(plain(x), scaled(x))


def test_cached_masks_survive_inference_mode() -> None:
    _TABLES.clear()
    model = build_backbone("swinir-tiny", resolve_norm("token_ln"), 2)
    x = torch.rand(1, 3, 40, 24)  # a size no other test uses: its mask is built under inference mode
    with torch.inference_mode():
        model(x)
    model(x).mean().backward()  # the cached mask must be an ordinary tensor
    assert model.conv_first.weight.grad is not None


def test_model_rejects_non_rgb_input() -> None:
    model = build_backbone("swinir-tiny", resolve_norm("token_ln"), 2)
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        model(torch.rand(1, 1, 8, 8))


@pytest.mark.parametrize("name", TINY)
def test_same_seed_same_init_across_norm_variants(name: str) -> None:
    """Paired cells differ only in the norm: every non-norm weight must start identical."""
    states = []
    for norm in ("token_ln", "i_ln", "layer_scale", "batch_norm"):
        torch.manual_seed(7)
        states.append(build_backbone(name, resolve_norm(norm), 2).state_dict())
    is_norm = ("embed_norm.", "final_norm.", "norm1.", "norm2.")
    for other in states[1:]:
        for key, value in states[0].items():
            if not any(part in key for part in is_norm):
                torch.testing.assert_close(other[key], value, rtol=0, atol=0, msg=key)


@pytest.mark.parametrize("name", BACKBONES.keys())
def test_shipped_backbone_contract(name: str) -> None:
    """ablate.testing.check_backbone (what plugin authors run) passes for every registered preset."""
    from ablate.testing import check_backbone

    spec = _spec(name)
    norms = ("i_ln", "token_ln") if name in TINY else ("i_ln",)
    for norm in norms:
        check_backbone(spec, norm=norm, scales=(1, 3), size=(13, 11))
