"""The built-in norms, declared so that listing and validating them imports no torch.

Each normalizer is declared by the class that implements it in ``_normalizers`` (imported when a
model is built; its ``@NORMS.register`` names the same key), its docstring's first paragraph and
the :class:`NormInfo` of its class attributes. tests/registry/test_declared.py imports every
declared class and checks that the three agree, so a change to a class shows up there.
"""

from __future__ import annotations

from ablate.params import Param
from ablate.registry import NORMS

from ._info import NormInfo, NormPreset

_IMPL = "ablate.norms._normalizers"
_EPS = "added to the variance"

for _key, _cls, _sigma, _params, _description in (
    ("token_ln", "TokenLayerNorm", "token", {"eps": Param(1e-5, float, _EPS)},
     "Per-token LayerNorm over C (the standard transformer LN); σ per token."),
    ("global_ln", "GlobalLayerNorm", "sample", {"eps": Param(1e-4, float, _EPS)},
     "Global LN (LN*): one mean and biased variance per image over H·W·C; per-channel γ, β."),
    ("rms_norm", "RMSNorm", "token", {"eps": Param(1e-6, float, "added to the mean square")},
     "RMSNorm per token over C (no centering); σ = the token's RMS."),
    ("batch_norm", "BatchNorm", "channel",
     {"eps": Param(1e-5, float, _EPS), "momentum": Param(0.1, float, "running-statistics update rate"),
      "eval_stats": Param("running", str, "statistics used in eval mode", choices=("running", "batch"))},
     "BatchNorm per channel over B·H·W, with running statistics."),
    ("instance_norm", "InstanceNorm", "sample_channel", {"eps": Param(1e-5, float, _EPS)},
     "InstanceNorm: per image and channel over H·W; σ of shape (B, 1, C)."),
    ("group_norm", "GroupNorm", "sample_channel",
     {"eps": Param(1e-5, float, _EPS), "groups": Param(4, int, "channel groups")},
     "GroupNorm: per image and group of channels over H·W·(C/G); σ broadcast per channel (B, 1, C)."),
    ("dyt", "DynamicTanh", None, {"alpha": Param(0.5, float, "initial α (tanh input scale)")},
     "Dynamic Tanh: γ·tanh(αx) + β with a learnable scalar α; normalizes by no statistic."),
    ("affine", "Affine", None, {},
     "Affine only: γx + β, no normalization (i-LN's embedding and final norms)."),
    ("none", "Identity", None, {}, "No normalization at all (identity)."),
    ("layer_scale", "LayerScale", "token",
     {"eps": Param(1e-5, float, _EPS), "init": Param(1e-4, float, "initial per-channel branch gate γ")},
     "Per-token LN plus LayerScale: each residual branch multiplied by a learnable per-channel γ (init 1e-4)."),
    ("rezero", "ReZero", None, {"init": Param(0.0, float, "initial branch gate α")},
     "ReZero: no normalization; each residual branch multiplied by a learnable scalar α initialised to 0."),
):
    NORMS.declare(_key, f"{_IMPL}:{_cls}", description=_description, info=NormInfo(_cls, _sigma, _params))

NORMS.add(
    "i_ln",
    NormPreset(
        normalizer="global_ln",
        rescale=True,
        sites={"embed": "affine", "final": "affine"},
        description="i-LN preset: global_ln + input-adaptive rescale, affine-only embedding and final norms",
    ),
)
