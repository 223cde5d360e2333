"""Contract checks for norm variants, backbones and regularizers, shipped for plugin authors to reuse.

    from ablate.testing import check_norm, check_backbone, check_regularizer
    check_norm("global_ln", rescale=True)        # a registry key, a NormVariant or a Normalizer class
    check_backbone("swinir-tiny", norm="i_ln")   # builds it via ablate.backbones.build_backbone
    check_regularizer("feature_kl")              # a registry key, a mapping or a Regularizer class

Each check runs on tiny CPU inputs in well under a second for small components and raises
:class:`AssertionError` naming the component, the site and the broken rule; it returns what it checked
so a caller can inspect it further. ablate's own test suite runs them over every registered component,
so a plugin's tests need only ``check_norm("my_norm")`` (see ``plugins/ablate-scalenorm``).

:mod:`ablate.testing.synthetic` (fake but realistic sweeps logged to MLflow, for tests and benchmarks)
is imported explicitly, never from here: it needs mlflow, these checks need only torch.
"""

from __future__ import annotations

from ._backbones import check_backbone
from ._norms import check_norm
from ._regularizers import check_regularizer

__all__ = ["check_backbone", "check_norm", "check_regularizer"]
