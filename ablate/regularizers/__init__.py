"""Training regularizers: penalties on the training forward pass, added to the loss (``train.regularizer``).

    from ablate.regularizers import build_regularizer
    reg = build_regularizer({"name": "feature_kl", "weight": 1e-4})   # None for "none", the default
    reg.attach(model)                                                  # hooks on the block outputs
    loss = F.l1_loss(model(lq), gt)
    loss = loss + reg.weight * reg.value()

Built-ins: ``none`` (the default) and ``feature_kl`` (KL of each block output's mean and variance from
N(0, 1)). Gradient clipping, the paper's other stabilizer, is the train option ``train.grad_clip``.
Plugins register under the entry-point group ``ablate.regularizers``; each declares its parameters
(``weight`` among them) in ``PARAMS``.

A built-in is added in one place, ``@REGULARIZERS.register("key")`` on its class in a module of this
package. Importing this package imports no torch: those decorators are read from the source
(``REGULARIZERS.declare_package``), and the classes and functions load on first use (``ablate
plugins`` lists them without torch).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ablate.lazy import lazy_exports
from ablate.registry import REGULARIZERS

if TYPE_CHECKING:
    from ._base import NoRegularizer, Regularizer, build_regularizer, resolve_regularizer
    from ._feature_kl import FeatureKL, feature_kl, gaussian_kl

__all__ = ["FeatureKL", "NoRegularizer", "Regularizer", "build_regularizer", "feature_kl", "gaussian_kl",
           "resolve_regularizer"]

# torch at module level: imported on first use
__getattr__, __dir__ = lazy_exports(__name__, {
    **{name: "._base" for name in ("NoRegularizer", "Regularizer", "build_regularizer", "resolve_regularizer")},
    **{name: "._feature_kl" for name in ("FeatureKL", "feature_kl", "gaussian_kl")}})
REGULARIZERS.declare_package(__name__)
