"""Reading an experiment file: the file itself, strict YAML, and errors that name line and column.

    from ablate.spec._yaml import read_yaml
    raw, text = read_yaml("experiments/quickstart.yaml")   # (parsed mapping, the file's text)

Every problem is a one-line :class:`SpecError` located in the file: a missing file (with the closest
YAML file of its folder), a directory, an unreadable or non-UTF-8 file, invalid YAML (with its line
and column) and duplicate keys, which plain YAML would silently collapse to the last one.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

from ablate.errors import SpecError, closest


class _Loader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys: two ``train:`` blocks would silently keep the last."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # `<<: *base` may repeat keys on purpose
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
            except TypeError:  # unhashable key: the base class reports it
                continue
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: str | os.PathLike[str]) -> tuple[Any, str]:
    """(the parsed YAML, the file's text); :class:`SpecError` naming the file on any problem."""
    file = os.fspath(path)
    text = _read_text(Path(file), file)
    try:
        raw = yaml.load(text, Loader=_Loader)  # noqa: S506  (_Loader is a SafeLoader)
    except yaml.YAMLError as err:
        raise _yaml_error(err, file) from None
    return raw, text


def _read_text(p: Path, file: str) -> str:
    if not p.is_file():
        if p.is_dir():
            raise SpecError("", "a YAML experiment file, not a directory", None, file=file)
        near = None
        if p.parent.is_dir():
            near = closest(p.name, [c.name for c in p.parent.iterdir() if c.suffix in (".yaml", ".yml")])
        hint = f"did you mean {str(p.parent / near)!r}?" if near else None
        raise SpecError("", "an existing YAML experiment file", None, file=file, hint=hint or "no such file")
    try:
        return p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise SpecError("", "a readable UTF-8 text file", None, file=file, hint=str(err)) from None


def _yaml_error(err: yaml.YAMLError, file: str) -> SpecError:
    """A YAML parser error as one line: ``line L, column C: expected valid YAML (problem (context))``."""
    mark = getattr(err, "problem_mark", None)
    problem = " ".join(str(getattr(err, "problem", None) or err).split())
    context = getattr(err, "context", None)
    context_mark = getattr(err, "context_mark", None)
    if context:
        extra = f" that starts at line {context_mark.line + 1}" if context_mark is not None else ""
        problem += f" ({' '.join(str(context).split())}{extra})"
    where = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return SpecError(where, "valid YAML", None, file=file, hint=problem)
