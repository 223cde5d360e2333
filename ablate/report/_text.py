"""A fixed-width plain-text table (no dependencies), shared by the CLI commands.

    from ablate.report import table
    print(table([{"id": "3fa2c1d0e9", "norm": "token_ln", "seed": 0}], ["id", "norm", "seed"]))
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def fmt(value: Any) -> str:
    """One cell's text: ``-`` for None, true/false, 6 significant digits for floats."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, Mapping):
        return ",".join(f"{k}={fmt(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return ",".join(fmt(v) for v in value)
    return " ".join(str(value).split())  # one line per row, whatever the value holds


def _numeric(values: Sequence[Any]) -> bool:
    present = [v for v in values if v is not None]
    return bool(present) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present)


def table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None, *,
          headers: Mapping[str, str] | None = None) -> str:
    """Render ``rows`` as aligned columns with a header and a dashed rule; numbers align right.

    ``columns`` picks and orders the keys (default: every key, in first-seen order); ``headers``
    renames some of them. Missing values print as ``-``. No trailing newline.
    """
    if columns is None:
        columns = list(dict.fromkeys(key for row in rows for key in row))
    headers = headers or {}
    titles = [headers.get(c, c) for c in columns]
    body = [[fmt(row.get(c)) for c in columns] for row in rows]
    widths = [max([len(t), *(len(r[i]) for r in body)]) for i, t in enumerate(titles)]
    right = [_numeric([row.get(c) for row in rows]) for c in columns]

    def line(cells: Sequence[str]) -> str:
        parts = [c.rjust(w) if r else c.ljust(w) for c, w, r in zip(cells, widths, right)]
        return "  ".join(parts).rstrip()

    out = [line(titles), line(["-" * w for w in widths])]
    out += [line(r) for r in body]
    return "\n".join(out)
