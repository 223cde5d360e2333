"""ablate: normalization ablations for image-restoration transformers.

    ablate run experiments/quickstart.yaml

The core (registry, norms, backbones, tasks, train) imports with torch and pyyaml alone; Ray lives
in ``ablate.tune``, MLflow in ``ablate.track``, plotting in ``ablate.report``.
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["__version__"]
