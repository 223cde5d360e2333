"""Package attributes imported on first use (PEP 562), so that importing the package imports no torch.

    # ablate/norms/__init__.py
    from ablate.lazy import lazy_exports
    if TYPE_CHECKING:
        from ._base import Normalizer                   # what type checkers and readers see
    __getattr__, __dir__ = lazy_exports(__name__, {"Normalizer": "._base"})

``ablate.norms.Normalizer`` then imports ``ablate.norms._base`` (and torch) on first access only.
Imports nothing from ablate, so every subpackage can use it.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(package: str, exports: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The module-level ``__getattr__`` and ``__dir__`` of ``package`` for ``exports`` (attribute name →
    the module that defines it, relative to ``package`` when it starts with a dot)."""

    def __getattr__(name: str) -> Any:
        if name in exports:
            return getattr(importlib.import_module(exports[name], package), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(exports))

    return __getattr__, __dir__
