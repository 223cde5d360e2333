"""ablate's user cache folder (what is kept between runs to skip work: an empty MLflow store, plugin listings).

Imports nothing from ablate, so that torch-free commands can use it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

ENV_CACHE_DIR = "ABLATE_CACHE_DIR"


def cache_dir(env: Mapping[str, str] | None = None) -> Path:
    """ablate's user cache: ``$ABLATE_CACHE_DIR``, ``$XDG_CACHE_HOME/ablate`` or ``~/.cache/ablate``."""
    env = os.environ if env is None else env
    if env.get(ENV_CACHE_DIR):
        return Path(env[ENV_CACHE_DIR]).expanduser()
    return Path(env.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "ablate"
