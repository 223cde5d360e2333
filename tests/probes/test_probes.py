from __future__ import annotations

import math

import pytest
import torch

from ablate.backbones import build_backbone
from ablate.norms import resolve_norm
from ablate.probes import Probe, beta_alignment, feature_stats


def test_feature_stats_match_a_hand_computation():
    # two images, two tokens, three channels
    x = torch.tensor([[[1.0, 0.0, 2.0], [3.0, 0.0, 0.0]],
                      [[-1.0, 1.0, 0.0], [1.0, -1.0, 2.0]]])
    s = feature_stats(x)
    sq = [1 + 9 + 1 + 1, 0 + 0 + 1 + 1, 4 + 0 + 0 + 4]  # per-channel sums of squares
    energy = [v / 4 for v in sq]
    p = [e / sum(energy) for e in energy]
    assert s["msq"] == pytest.approx(sum(sq) / 12)
    assert s["maxabs"] == 3.0
    assert s["entropy"] == pytest.approx(-sum(q * math.log(q) for q in p))
    assert s["top1"] == pytest.approx(max(p))


def test_entropy_bounds():
    uniform = torch.ones(1, 5, 8)
    assert feature_stats(uniform)["entropy"] == pytest.approx(math.log(8))
    one = torch.zeros(1, 5, 8)
    one[..., 3] = 7.0
    s = feature_stats(one)
    assert s["entropy"] == 0.0 and s["top1"] == 1.0
    bad = torch.full((1, 2, 3), float("inf"))
    assert math.isnan(feature_stats(bad)["entropy"])


def test_probe_measures_every_site_in_eval_mode_and_leaves_no_hooks():
    model = build_backbone({"name": "swinir-tiny", "embed_dim": 16, "depths": [2, 1], "num_heads": 2},
                           resolve_norm("batch_norm"), 2)
    model.train()
    lq = torch.rand(2, 3, 12, 12)
    trace = Probe(model, lq).measure()
    assert list(trace) == list(model.probe_sites())
    assert model.training  # mode restored
    assert all(not m._forward_hooks for m in model.modules())
    # eval mode: BatchNorm used its running statistics, so measuring twice is identical
    again = Probe(model, lq).measure()
    assert {k: v["msq"] for k, v in again.items()} == {k: v["msq"] for k, v in trace.items()}
    assert "beta_corr" in trace["final"]  # NaN here: β is all zeros before training


def test_beta_alignment_is_pearson_correlation():
    norm = resolve_norm("token_ln")(4, "final")
    with torch.no_grad():
        norm.bias.copy_(torch.tensor([1.0, 2.0, 3.0, 4.0]))
    x = torch.tensor([[[0.5, 1.0, 1.5, 2.0]]])
    assert beta_alignment(norm, x) == pytest.approx(1.0)
    assert beta_alignment(norm, -x * torch.tensor([4.0, 3.0, 2.0, 1.0]) ** 2) == pytest.approx(
        float(torch.corrcoef(torch.stack([torch.tensor([16.0, 9.0, 4.0, 1.0]) * torch.tensor([.5, 1, 1.5, 2]),
                                          norm.bias.detach()]))[0, 1]), abs=1e-6)
