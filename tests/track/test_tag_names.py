"""Tag names and run states: constants in one module (``ablate/track/_names.py``), listed in docs/mlflow.md.

    .venv/bin/python -m pytest tests/track/test_tag_names.py

docs/mlflow.md names a tag in the first column of a table row (``| `ablate.cell` | the cell id |``) or
next to the word "tag" (``context tag `mlflow.data.context` ``); a run state as a bare upper-case word
in backticks. Both directions are checked: every constant is on the page, every tag the page names is
a constant. The package itself writes the names through the constants (read with ``ast``).
"""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path

from ablate.track import State, Tag
from ablate.track._names import names

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "mlflow.md"
_CODE = re.compile(r"`([^`]+)`")
# a dotted name that starts a span or a JSON key in one (not "<state dir>/mlflow.db"); "<…>" or "*" ends
# a prefix: ablate.eval.<set>, ablate.driver.*
_NAME = re.compile(r"(?<![\w/.])(?:ablate|mlflow)\.[A-Za-z_][\w.]*(?:<[^>]+>|\*)?")
_NEAR_TAG = re.compile(r"\btag `([^`]+)`|`([^`]+)` tags?\b")


def _names_in(text: str) -> set[str]:
    return {m.group() for span in _CODE.findall(text) for m in _NAME.finditer(span)}


def _tag(name: str) -> str:
    """``ablate.eval.<set>`` -> the prefix constant's value ``ablate.eval.``."""
    return name.split("<")[0]


def doc_tags(text: str) -> tuple[set[str], set[str]]:
    """(tag names, wildcard prefixes such as ``ablate.driver.``) the page names as tags."""
    found: set[str] = set()
    for line in text.splitlines():
        if line.startswith("| "):
            found |= _names_in(line.split(" | ")[0])
    for m in _NEAR_TAG.finditer(text):
        found |= _names_in(f"`{m.group(1) or m.group(2)}`")
    wild = {n[:-1] for n in found if n.endswith("*")}
    return {_tag(n) for n in found if not n.endswith("*")}, wild


def test_every_tag_constant_is_on_the_page_and_every_tag_there_is_a_constant() -> None:
    text = DOC.read_text()
    tags, wild = doc_tags(text)
    constants = set(names(Tag).values())
    assert sorted(constants - tags) == [], "constants docs/mlflow.md does not list as tags"
    assert sorted(tags - constants) == [], "tags docs/mlflow.md lists that are not constants of ablate.track.Tag"
    for prefix in wild:
        assert any(c.startswith(prefix) for c in constants), prefix


def test_every_other_dotted_name_on_the_page_is_a_python_reference() -> None:
    """A name that is not a tag is a module or an attribute of one (ablate.track.Tag, ablate.status.CellStatus):
    a tag written where the check above does not look fails here."""
    text = DOC.read_text()
    tags, wild = doc_tags(text)
    for name in sorted(_names_in(text)):
        if _tag(name) in tags or name.endswith("*") and name[:-1] in wild:
            continue
        module, _, attr = name.rpartition(".")
        try:
            importlib.import_module(name)
        except ImportError:
            assert hasattr(importlib.import_module(module), attr), f"docs/mlflow.md: `{name}` is neither a tag nor Python"


def test_every_run_state_is_on_the_page_and_no_other() -> None:
    caps = {span for span in _CODE.findall(DOC.read_text()) if re.fullmatch(r"[A-Z]+", span)}
    assert caps == set(names(State).values())
    assert set(State.ENDED) == {State.FINISHED, State.FAILED, State.KILLED}


def test_constants_are_unique_and_prefixes_end_with_a_dot() -> None:
    values = list(names(Tag).values())
    assert len(values) == len(set(values))
    for value in values:
        assert re.fullmatch(r"(ablate|mlflow)\.[A-Za-z_][\w.]*", value), value
    prefixes = [v for v in values if v.endswith(".")]
    assert sorted(prefixes) == sorted([Tag.BEST, Tag.EVAL, Tag.IMPL, Tag.SOURCE])
    for prefix in prefixes:  # a prefix is no other tag's beginning, so a reader can tell them apart
        assert [v for v in values if v.startswith(prefix)] == [prefix]


def test_provenance_tags_are_under_the_source_prefix() -> None:
    """``ablate.registry`` makes them, and cannot import ``ablate.track`` (which imports it)."""
    from ablate.registry import provenance_tags

    tags = provenance_tags(norm="token_ln", backbone="swinir-tiny", task="sr-x2", data="skimage")
    assert sorted(tags) == [f"{Tag.SOURCE}{kind}" for kind in ("backbone", "data", "norm", "task")]


# modules that may spell a tag's value as a literal, and why
_LITERALS_ALLOWED = {
    "ablate/track/_names.py": "the constants themselves",
    "ablate/registry/_registry.py": "entry-point groups (ablate.data, ablate.norms…), not tags",
    "ablate/registry/_provenance.py": "ablate.track imports ablate.registry (checked above)",
    "ablate/tune/_studies.py": "Optuna trial attributes, not MLflow tags",
}


def _literals(path: Path) -> list[tuple[int, str]]:
    """String constants of a module that spell a tag or a tag prefix (docstrings left out)."""
    tree = ast.parse(path.read_text())
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr)
                  and isinstance(node.body[0].value, ast.Constant)}
    tags = set(names(Tag).values())
    prefixes = tuple(t for t in tags if t.endswith(".")) + ("ablate.driver.",)
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
            and (node.value in tags or node.value.startswith(prefixes))]


def test_the_package_writes_tag_names_through_the_constants() -> None:
    found = [f"{path.relative_to(ROOT)}:{line}: {value!r}" for path in sorted((ROOT / "ablate").rglob("*.py"))
             if str(path.relative_to(ROOT)) not in _LITERALS_ALLOWED for line, value in _literals(path)]
    assert found == [], "use ablate.track.Tag instead of these literals"
