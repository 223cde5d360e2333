"""Names that are safe as file, folder, MLflow and Ray names.

    from ablate.naming import safe_name
    safe_name("norm ablation/v2")   # "norm-ablation-v2"
    safe_name("../../x")            # "x": never a path outside the folder it is joined to

This module imports nothing from ablate.
"""

from __future__ import annotations

import re

_UNSAFE = re.compile(r"[^\w.\-]")


def safe_name(name: str, fallback: str = "unnamed") -> str:
    """``name`` with every character but letters, digits, ``_``, ``-`` and ``.`` replaced by ``-``,
    runs of dots shortened to one and leading dots and dashes removed (so ``..`` cannot climb out of a folder)."""
    text = _UNSAFE.sub("-", str(name))
    text = re.sub(r"\.{2,}", ".", text).lstrip(".-")
    return text or fallback
