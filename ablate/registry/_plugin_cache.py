"""What `ablate plugins` lists of each entry-point plugin, cached so that listing does not import it.

Listing a plugin means importing it (for its docstring, and to find out whether it is broken), and a
plugin norm imports torch: over a second of CPU. So the rows one entry point's import added to its
registry, or its import error, are kept in ``plugins.json`` in ablate's user cache
(``$ABLATE_CACHE_DIR``, else ``$XDG_CACHE_HOME/ablate``, else ``~/.cache/ablate``), under a
fingerprint of what could change them:

- the interpreter (``sys.executable``, ``sys.version``) and ablate's version;
- the entry point (group, key, value) and its distribution's name and version;
- the size and mtime of every file of the plugin's top-level module or package, found with
  ``importlib.util.find_spec`` (which imports nothing for a top-level name), ``__pycache__`` aside;
- the same of ablate's own files (a plugin subclasses ablate's bases and may inherit a docstring);
- the mtime of each ``site-packages`` folder on ``sys.path``, which installing, upgrading or
  removing any distribution (a plugin's dependency too) changes.

A hit lists the plugin without importing it; a miss imports it as before and stores the result.
Only listing reads the cache: using a plugin (``Registry.entry``/``get``) always imports it. A cache
that cannot be read, parsed or written is ignored, and the plugin is imported. Not covered: a plugin
whose import registers components of another kind than its entry point's (they are listed only when
it is imported), and edits inside an editable install of one of its dependencies.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ablate.cache import cache_dir

CACHE_FILE = "plugins.json"
_FORMAT = 1  # bump when what a record holds changes
_MAX_RECORDS = 256  # oldest first out: fingerprints of uninstalled or edited plugins never hit again
_SITE_DIRS = {"site-packages", "dist-packages"}


@dataclass(frozen=True)
class Listing:
    """What importing one entry point showed: (key, source, version, description) of each entry it
    added to its registry, and its import error ("" when it imported)."""

    rows: tuple[tuple[str, str, str, str], ...]
    error: str = ""


def fingerprint(group: str, name: str, value: str, dist: str, version: str) -> str:
    """A hash of everything that could change what importing the entry point ``name = value`` shows."""
    from ablate import __version__

    parts: list[object] = [_FORMAT, sys.executable, sys.version, __version__, group, name, value, dist, version,
                           _module_stamp(value.split(":")[0].strip().split(".")[0]), _ablate_stamp(), _site_stamp()]
    return hashlib.sha256(repr(parts).encode()).hexdigest()


def lookup(key: str) -> Listing | None:
    """The cached listing under fingerprint ``key``; None when there is none or it is malformed."""
    record = _records().get(key)
    try:
        rows = tuple((str(k), str(s), str(v), str(d)) for k, s, v, d in record["rows"])  # type: ignore[index]
        error = record["error"]  # type: ignore[index]
    except (TypeError, KeyError, ValueError):
        return None
    return Listing(rows, error) if isinstance(error, str) else None


def save(key: str, listing: Listing) -> None:
    """Keep ``listing`` under fingerprint ``key``; written atomically, and silently not at all when the
    cache folder is not writable."""
    records = _records()
    records.pop(key, None)  # re-inserted last: the newest survive the trim
    records[key] = {"rows": [list(row) for row in listing.rows], "error": listing.error}
    for old in list(records)[:-_MAX_RECORDS]:
        del records[old]
    folder = cache_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{CACHE_FILE}.", dir=folder)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump({"format": _FORMAT, "records": records}, out)
            os.replace(tmp, folder / CACHE_FILE)  # a concurrent reader sees the old file or the new one
        except BaseException:
            os.unlink(tmp)
            raise
    except OSError:
        pass


_loaded: dict[str, dict[str, Any]] = {}  # cache file path -> its records, read once per process


def _records() -> dict[str, Any]:
    path = str(cache_dir() / CACHE_FILE)
    if path not in _loaded:
        records: Any = {}
        try:
            with open(path, encoding="utf-8") as src:
                data = json.load(src)
            if isinstance(data, dict) and data.get("format") == _FORMAT:
                records = data.get("records")
        except (OSError, ValueError):
            pass
        _loaded[path] = records if isinstance(records, dict) else {}
    return _loaded[path]


def _module_stamp(top: str) -> object:
    """Size and mtime of the files of the top-level module or package ``top``, imported by no one."""
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):  # a broken finder, or a module in sys.modules without __spec__
        return "unfindable"
    if spec is None:
        return "missing"
    if spec.submodule_search_locations:
        return [_tree_stamp(Path(folder)) for folder in spec.submodule_search_locations]
    return _file_stamp(spec.origin) if spec.origin else spec.name


@functools.lru_cache(maxsize=1)
def _ablate_stamp() -> object:
    return _tree_stamp(Path(__file__).resolve().parents[1])


@functools.lru_cache(maxsize=1)
def _site_stamp() -> object:
    return [_file_stamp(p) for p in sys.path if os.path.basename(p) in _SITE_DIRS]


def _tree_stamp(root: Path) -> object:
    stamps = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")  # written by the import itself
        stamps += [(os.path.relpath(os.path.join(folder, f), root), _file_stamp(os.path.join(folder, f)))
                   for f in sorted(files)]
    return [str(root), stamps]


def _file_stamp(path: str) -> object:
    try:
        st = os.stat(path)
    except OSError:
        return [path, None]
    return [path, st.st_size, st.st_mtime_ns]
