"""Search → confirm: the experiment that compares each variant at its best values on fresh seeds.

The configuration a search picked looks best on the seed that picked it (the winner's curse), so the
comparison that counts runs it again on other seeds (``search.confirm_seeds``, never the search's own).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from ablate.spec import CellSpec, ExperimentSpec

# what the confirm file replaces: its cells are its include entries, one per variant and seed
_DROPPED = ("grid", "include", "exclude", "search", "seed")


def confirm_spec(spec: ExperimentSpec, bases: list[CellSpec], best: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The confirm experiment as YAML data: the search file's settings, no grid or search, and one include
    entry per (variant, seed) naming the variant's grid axes and its best values."""
    import copy

    assert spec.search is not None
    raw = yaml.safe_load(spec.source_text) if spec.source_text else {}
    out = {k: v for k, v in copy.deepcopy(raw).items() if k not in _DROPPED}
    seeds = spec.search.fresh_seeds({b.seed for b in bases})
    out["name"] = f"{spec.name}-confirm"
    out["description"] = (f"search {spec.name!r}: each variant at its best values on seeds "
                          f"{list(seeds)}")
    axes = [a for a in spec.axes if a != "seed"]
    entries: list[dict[str, Any]] = []
    for base in bases:
        cfg = base.to_config()
        variant = {axis: _at(cfg, axis) for axis in axes}
        for key, value in best[base.id].items():
            _put(variant, cfg, key, value)
        # copies: shared mappings would come out as YAML anchors
        entries.extend({**copy.deepcopy(variant), "seed": seed} for seed in seeds)
    out["include"] = entries
    return out


def write_confirm(spec: ExperimentSpec, bases: list[CellSpec], best: dict[str, dict[str, Any]], path: Path) -> Path:
    """Write :func:`confirm_spec` to ``path`` (checked to load and plan first)."""
    from ablate.spec import expand, load_experiment

    data = confirm_spec(spec, bases, best)
    text = (f"# written by `ablate search` from {spec.file or spec.name}: run it with `ablate run {path}`\n"
            + yaml.safe_dump(data, sort_keys=False))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text, encoding="utf-8")
    expand(load_experiment(tmp))  # a confirm file that would not run is a bug here, not the user's
    tmp.replace(path)
    return path


def _at(cfg: dict[str, Any], axis: str) -> Any:
    node: Any = cfg
    for part in axis.split("."):
        node = node[part]
    return node


def _put(entry: dict[str, Any], cfg: dict[str, Any], key: str, value: Any) -> None:
    """A best value into an include entry: a dotted field as it is; a component's parameter
    (``norm.groups``) into that component's mapping."""
    head, _, param = key.partition(".")
    if head in ("norm", "backbone", "task", "data") and param:
        comp = entry.get(head, cfg.get(head))
        comp = {"name": comp} if isinstance(comp, str) else dict(comp or {})
        comp[param] = value
        entry[head] = comp
    else:
        entry[key] = value
