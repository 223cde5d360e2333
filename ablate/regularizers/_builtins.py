"""The built-in regularizers, declared by import path so that listing them imports no torch.

Importing a declared module registers the class under the same key (its ``@REGULARIZERS.register``);
tests/registry/test_declared.py checks that each declaration says what its class says.
"""

from __future__ import annotations

from ablate.registry import REGULARIZERS

REGULARIZERS.declare(
    "none", "ablate.regularizers._base:NoRegularizer",
    description="No regularizer: the data loss alone (the default; the trainer attaches nothing and adds nothing).")
REGULARIZERS.declare(
    "feature_kl", "ablate.regularizers._feature_kl:FeatureKL",
    description="KL divergence of each block output's mean and variance from a standard normal, averaged over "
                "blocks and samples.")
