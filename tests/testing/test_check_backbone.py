"""``ablate.testing.check_backbone`` passes a correct backbone and catches each broken rule.

    pytest tests/testing/test_check_backbone.py

The backbone under test is a small plugin-style factory registered for the test only (one
windowless block type, any input size), with one switchable defect at a time.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ablate.norms import NormVariant
from ablate.norms._normalizers import TokenLayerNorm
from ablate.registry import BACKBONES
from ablate.testing import check_backbone

KEY = "toy-test-backbone"


class ToyBlock(nn.Module):
    def __init__(self, dim: int, norm: NormVariant, defect: str | None) -> None:
        super().__init__()
        self.defect = defect
        self.norm1 = norm(dim, "atn" if defect == "typo_site" else "attn")
        self.mix = nn.Linear(dim, dim)
        self.norm2 = norm(dim, "ffn")
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))
        if defect == "torch_norm":
            self.extra = nn.LayerNorm(dim)
        if defect == "direct_normalizer":
            self.extra = TokenLayerNorm(dim)
        if defect == "unused_param":
            self.unused = nn.Parameter(torch.zeros(dim))

    def forward(self, x: Tensor) -> Tensor:
        if self.defect == "no_residual":  # the σ of a rescale variant would be dropped
            x = x + self.mix(self.norm1(x))
        else:
            x = self.norm1.residual(x, self.mix)
        x = self.norm2.residual(x, self.mlp)
        if self.defect == "batch_mix":
            x = x + 0.1 * x.mean(dim=0, keepdim=True)
        if self.defect in ("torch_norm", "direct_normalizer"):
            x = self.extra(x)
        if self.defect == "crash":
            raise RuntimeError("boom")
        if self.defect == "nan":
            x = x / 0.0
        return x


class Toy(nn.Module):
    def __init__(self, norm: NormVariant, scale: int, defect: str | None = None) -> None:
        super().__init__()
        dim = 8
        self.defect, self.scale, self.window_size, self.embed_dim = defect, scale, 4, dim
        self.head = nn.Conv2d(3, dim, 3, padding=1)
        self.embed_norm = norm(dim, "embed")
        self.blocks = nn.ModuleList(ToyBlock(dim, norm, defect) for _ in range(2))
        self.final_norm = norm(dim, "ffn" if defect == "final_site" else "final")
        self.tail = nn.Conv2d(dim, 3 * scale * scale, 3, padding=1)

    def forward(self, img: Tensor) -> Tensor:
        b, _, h, w = img.shape
        hp, wp = -(-h // 4) * 4, -(-w // 4) * 4
        x = self.head(F.pad(img, (0, wp - w, 0, hp - h), mode="replicate"))
        t = self.embed_norm(x.flatten(2).transpose(1, 2))
        for block in self.blocks:
            t = block(t)
        t = self.final_norm(t)
        feat = t.transpose(1, 2).reshape(b, -1, hp, wp) + x
        out = F.pixel_shuffle(self.tail(feat), self.scale)
        if self.defect == "no_crop":
            return out
        return out[:, :, : h * self.scale, : w * self.scale]

    def probe_sites(self) -> dict[str, nn.Module]:
        sites: dict[str, nn.Module] = {f"g0.b{j}": blk for j, blk in enumerate(self.blocks)}
        if self.defect == "conv_site":
            sites["g0.conv"] = self.head  # an image-shaped output, not a token map
        if self.defect == "final_first":
            return {"final": self.final_norm, **sites}
        return {**sites, "final": self.final_norm}


def toy(norm: NormVariant, scale: int, defect: str | None = None) -> Toy:
    """A toy backbone for check_backbone's own tests."""
    return Toy(norm, scale, defect)


@pytest.fixture(autouse=True)
def registered() -> Iterator[None]:
    BACKBONES.add(KEY, toy)
    try:
        yield
    finally:
        BACKBONES.unregister(KEY)


@pytest.mark.parametrize("norm", ["i_ln", "token_ln", "batch_norm", {"name": "group_norm", "groups": 2}])
def test_a_correct_backbone_passes(norm: str) -> None:
    model = check_backbone(KEY, norm=norm, scales=(1, 2, 3))
    assert isinstance(model, Toy) and model.scale == 3


@pytest.mark.parametrize(("defect", "message"), [
    ("no_residual", r"the 'attn' norm 'blocks.0.norm1' is never applied through norm.residual"),
    ("torch_norm", r"'blocks.0.extra' is a torch LayerNorm"),
    ("direct_normalizer", r"'blocks.0.extra' is a TokenLayerNorm built directly"),
    ("batch_mix", "the output for sample 0 changes"),
    ("no_crop", r"forward maps an input of shape \(2, 3, 13, 11\) to \(2, 3, 16, 12\), expected \(2, 3, 13, 11\)"),
    ("final_first", "probe_sites\\(\\) must end with 'final', ends with 'g0.b1'"),
    ("conv_site", r"probe site 'g0.conv' outputs shape \(2, 8, 16, 12\), expected a \(B=2, L, C=8\) token map"),
    ("unused_param", r"no gradient reaches 2 parameter\(s\): blocks.0.unused, blocks.1.unused"),
    ("typo_site", r"built norms for unknown sites \['atn'\]"),
    ("final_site", "model.final_norm was built for site 'ffn', expected 'final'"),
    ("nan", "the output is not finite"),
    ("crash", r"scale 1, norm i_ln\): raised RuntimeError: .*boom"),
])
def test_each_broken_rule_is_caught(defect: str, message: str) -> None:
    with pytest.raises(AssertionError, match=message) as info:
        check_backbone({"name": KEY, "defect": defect})
    assert f"backbone '{KEY}' (scale " in str(info.value) and "norm i_ln)" in str(info.value)


def test_batch_dependent_norm_checks_independence_with_token_ln() -> None:
    with pytest.raises(AssertionError, match=r"scale 2, norm token_ln\): the output for sample 0 changes"):
        check_backbone(KEY, norm="batch_norm", params={"defect": "batch_mix"})


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="batch must be ≥ 2"):
        check_backbone(KEY, batch=1)
    with pytest.raises(TypeError, match="expected a backbone key"):
        check_backbone(3.5)


def test_leaves_the_global_rng_alone() -> None:
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    check_backbone(KEY, scales=(2,))
    assert torch.equal(torch.random.get_rng_state(), before)
