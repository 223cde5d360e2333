"""ScaleNorm for ablate: one learnable scalar g per layer, ``g · x / ‖x‖₂`` per token.

    pip install -e plugins/ablate-scalenorm
    ablate plugins --kind norms          # lists scale_norm, from ablate-scalenorm 0.1.0

Then use ``norm: scale_norm`` (or ``{name: scale_norm, eps: 1e-5}``) in an experiment's grid, with
or without ``rescale``. ablate imports this module only when the key is first used.
"""

from __future__ import annotations

from ._scalenorm import ScaleNorm

__all__ = ["ScaleNorm"]
