"""One registry primitive, one instance per axis.

    from ablate.registry import NORMS
    @NORMS.register("my_norm")
    class MyNorm(Normalizer): ...

A built-in is declared by that decorator alone: each built-in package calls
``REG.declare_package(__name__)``, which reads its modules' decorators without importing them (see
``_scan``), so listing and validating built-ins imports no torch.

Third-party packages register through the entry-point groups ``ablate.norms``, ``ablate.backbones``,
``ablate.tasks``, ``ablate.datasets`` and ``ablate.regularizers``; they are imported lazily, on first use of their key or when
listing, and a plugin that fails to import only warns until an experiment asks for it.
Set ``ABLATE_DISABLE_PLUGIN_AUTOLOAD=1`` to ignore entry points. Every entry records the distribution
and version that supplied it; :func:`provenance_tags` turns a cell's components into the tags its
MLflow run carries.
"""

from __future__ import annotations

from ._provenance import provenance_tags
from ._registry import BACKBONES, DATASETS, NORMS, REGISTRIES, REGULARIZERS, TASKS, Entry, Registry
from ._scan import Registration, Unreadable

__all__ = ["BACKBONES", "DATASETS", "NORMS", "REGISTRIES", "REGULARIZERS", "TASKS", "Entry", "Registration",
           "Registry", "Unreadable", "provenance_tags"]
