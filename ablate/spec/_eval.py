"""The ``eval:`` section: the test sets, precisions and inference options of ``ablate eval``.

    eval:
      sets:
        Set5: {name: folder, path: /data/Set5/HR}
        Rain100L: {name: paired, lq: /data/Rain100L/rain, gt: /data/Rain100L/norain}
      precisions: [fp32, fp16]
      self_ensemble: false
      tile: null

A set is a dataset component (``skimage``, ``folder``, ``paired`` or a plugin's) whose validation
images are the test images (``ablate.data.resolve_test_set``); its folders are relative to the YAML
file and checked at load time like ``data:``. docs/schema.md lists every key.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Protocol

from ablate.errors import AblateError, SpecError

from ._components import check_registered
from ._experiment import EVAL_PRECISIONS, EvalSpec
from ._fields import section
from ._types import Component

# a set name becomes part of metric keys (eval/<set>/psnr) and tags: no slashes, no spaces
_SET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}")


class SetPaths(Protocol):
    """What the eval section needs from the experiment parser: data folders made absolute, and
    whether to check that they exist."""

    check_data: bool

    def absolute_paths(self, comp: Component) -> Component: ...


def parse_eval(raw: Any, paths: SetPaths) -> EvalSpec | None:
    """The validated ``eval:`` section (None when absent); SpecError naming the key path."""
    if raw is None:
        return None
    raw = section(raw, "eval", EvalSpec)
    default = EvalSpec()
    sets = _sets(raw["sets"], paths) if "sets" in raw else default.sets
    precisions = _precisions(raw.get("precisions", list(default.precisions)))
    ensemble = raw.get("self_ensemble", default.self_ensemble)
    if not isinstance(ensemble, bool):
        raise SpecError("eval.self_ensemble", "true or false", ensemble)
    overlap = raw.get("tile_overlap", default.tile_overlap)
    if isinstance(overlap, bool) or not isinstance(overlap, int) or overlap < 0:
        raise SpecError("eval.tile_overlap", "an integer ≥ 0 (LQ pixels)", overlap)
    tile = raw.get("tile", default.tile)
    if tile is not None and (isinstance(tile, bool) or not isinstance(tile, int) or tile <= overlap):
        raise SpecError("eval.tile", f"null (whole images) or an integer > tile_overlap ({overlap}), "
                        "the LQ tile side", tile)
    return EvalSpec(sets, precisions, ensemble, tile, overlap)


def _sets(raw: Any, paths: SetPaths) -> tuple[tuple[str, Component], ...]:
    if isinstance(raw, list) and all(isinstance(v, str) for v in raw):
        raw = {v: v for v in raw}  # [skimage]: a set named after its dataset
    if not isinstance(raw, Mapping) or not raw:
        raise SpecError("eval.sets", "a non-empty mapping of set name: dataset (or a list of dataset names)",
                        raw)
    out = []
    for name, value in raw.items():
        where = f"eval.sets.{name}"
        if not isinstance(name, str) or not _SET_NAME.fullmatch(name):
            raise SpecError(where, "a set name of letters, digits, '_', '-' or '.' (it becomes part of "
                            "metric keys)", name)
        out.append((name, _set(value, where, paths)))
    return tuple(out)


def _set(raw: Any, where: str, paths: SetPaths) -> Component:
    comp = paths.absolute_paths(Component.parse(raw, where))
    check_registered("data", comp, where)
    if not paths.check_data:
        return comp
    from ablate.data import resolve_test_set

    try:
        resolve_test_set(comp.to_config(), where=where)
    except AblateError:
        raise
    except (TypeError, ValueError, KeyError) as err:  # a plugin dataset that does not raise SpecError
        raise SpecError(where, "valid dataset parameters", comp.to_config(),
                        hint=f"{type(err).__name__}: {err}") from None
    return comp


def _precisions(raw: Any) -> tuple[str, ...]:
    if not isinstance(raw, list) or not raw:
        raise SpecError("eval.precisions", f"a non-empty list of {', '.join(EVAL_PRECISIONS)}", raw)
    for i, p in enumerate(raw):
        if p not in EVAL_PRECISIONS:
            raise SpecError(f"eval.precisions[{i}]", f"one of {', '.join(EVAL_PRECISIONS)}", p)
    return tuple(dict.fromkeys(raw))
