"""``Registry.declare_package``: decorators read from the source, the other registrations imported.

    .venv/bin/python -m pytest tests/registry/test_scan.py

A real package in a temporary folder on ``sys.path``, declared into a registry of its own.
"""

from __future__ import annotations

import ast
import importlib
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ablate.params import Param
from ablate.registry import Registration, Registry, Unreadable
from ablate.registry._scan import literal, read_module

PACKAGE = {
    "widgetreg.py": """
        from ablate.registry import Registry
        WIDGETS = Registry("widgets")
    """,
    "widgets/__init__.py": """
        from widgetreg import WIDGETS
        WIDGETS.declare_package(__name__)
    """,
    # decorators only: declared from the source, never imported by the scan (it would fail if it were)
    "widgets/_plain.py": '''
        import no_such_module_anywhere  # what torch is to a norm: not importable while listing
        from widgetreg import WIDGETS as W

        _DOC = "the gear's size"

        @W.register("gear")
        class Gear:
            """A toothed wheel.

            Second paragraph."""

            SIZE = {"teeth": (12, -1.5, _DOC)}

        @W.register("cog", description="stated in the decorator")
        class Cog(Gear):
            """Not this."""

        class Helper:
            def lookup(self):
                return W.get("gear")  # a lookup, not a registration
    ''',
    # a module-level call: only importing the module registers it
    "widgets/_aliases.py": """
        from widgetreg import WIDGETS
        for n in (1, 2):
            WIDGETS.add(f"spring-{n}", n)
    """,
    # a key that is not a literal: imported too
    "widgets/_computed.py": """
        from widgetreg import WIDGETS
        KEY = "lever"

        @WIDGETS.register(KEY)
        class Lever:
            '''A lever.'''
    """,
    "widgets/sub/__init__.py": "",
    "widgets/sub/_deep.py": '''
        from widgetreg import WIDGETS

        @WIDGETS.register("axle")
        class Axle:
            """An axle, one package down."""
    ''',
    "widgets/_unrelated.py": "raise RuntimeError('never imported: it does not mention the registry')\n",
}


@pytest.fixture
def widgets(tmp_path: Path) -> Iterator[Registry[Any]]:
    for rel, text in PACKAGE.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(textwrap.dedent(text))
    sys.path.insert(0, str(tmp_path))
    importlib.invalidate_caches()
    try:
        import widgets  # noqa: F401  (declares its modules)
        from widgetreg import WIDGETS

        yield WIDGETS
    finally:
        sys.path.remove(str(tmp_path))
        for name in [m for m in sys.modules if m.split(".")[0] in ("widgets", "widgetreg")]:
            del sys.modules[name]


def test_decorators_are_declared_without_importing_their_module(widgets: Registry[Any]) -> None:
    assert widgets.keys() == ["axle", "cog", "gear", "lever", "spring-1", "spring-2"]
    assert "widgets._plain" not in sys.modules and "widgets.sub._deep" not in sys.modules
    gear, cog, axle = widgets.entry("gear"), widgets.entry("cog"), widgets.entry("axle")
    assert (gear.target, gear.description, gear.source) == ("widgets._plain:Gear", "A toothed wheel.", "ablate")
    assert cog.description == "stated in the decorator"
    assert axle.target == "widgets.sub._deep:Axle"
    with pytest.raises(ModuleNotFoundError, match="no_such_module_anywhere"):
        _ = gear.obj  # first use imports the module


def test_other_registrations_are_imported(widgets: Registry[Any]) -> None:
    assert {"widgets._aliases", "widgets._computed"} <= set(sys.modules)
    assert widgets.get("spring-2") == 2
    lever = widgets.entry("lever")
    assert lever.target == "" and lever.obj.__name__ == "Lever"  # registered by its import
    assert widgets.entry("axle").obj.__name__ == "Axle"


def _registration(source: str, name: str = "WIDGETS") -> tuple[list[Registration], bool]:
    return read_module("m", textwrap.dedent(source), name)


def test_what_counts_as_another_registration() -> None:
    assert _registration("from r import WIDGETS\nx = WIDGETS.get('a')\n") == ([], False)
    assert _registration("from r import WIDGETS\nWIDGETS.register('a')(int)\n")[1]
    assert _registration("from r import WIDGETS\ndef f():\n    @WIDGETS.register('a')\n    class A: ...\n")[1]
    assert _registration("from r import WIDGETS\n@WIDGETS.register('a', description=DOC)\nclass A: ...\n")[1]
    assert _registration("nothing here\n", "WIDGETS") == ([], False)


def _attribute(source: str, cls: str, name: str, roots: dict[str, Any] | None = None) -> Any:
    tree = ast.parse(textwrap.dedent(source))
    node = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == cls)
    found = Registration("k", "m", cls, "", node, tree)
    return found.class_attribute(name, {"Param": Param, "float": float}, roots or {"Base": "root"})


def test_class_attributes_are_read_through_the_module_s_own_bases() -> None:
    source = """
        EPS = "added"
        class A(Base):
            sigma = "token"
            PARAMS = {"eps": Param(1e-5, float, EPS, lo=-1.0)}
            sigma = "sample"           # the last assignment wins, as it does in Python
        class B(A):
            other: int = 3
        class C(Base):
            pass
    """
    assert _attribute(source, "B", "sigma") == "sample"
    assert _attribute(source, "B", "PARAMS") == {"eps": Param(1e-5, float, "added", lo=-1.0)}
    assert _attribute(source, "B", "other") == 3
    assert _attribute(source, "C", "sigma") == "root"


@pytest.mark.parametrize(("source", "why"), [
    ("class A(Base):\n    PARAMS = make()\n", "is not a plain value"),
    ("import x\nclass A(Base):\n    PARAMS = {'a': x.P}\n", "is not a plain value"),
    ("EPS = compute()\nclass A(Base):\n    PARAMS = {'a': EPS}\n", "is not a plain value"),
    ("class A(Base, Mixin):\n    pass\n", "exactly one base"),
    ("from elsewhere import Other\nclass A(Other):\n    pass\n", "defined in another module"),
])
def test_what_is_not_plain_is_unreadable(source: str, why: str) -> None:
    with pytest.raises(Unreadable, match=why):
        _attribute(source, "A", "PARAMS")


def test_literal_reads_only_plain_values() -> None:
    def read(text: str) -> Any:
        return literal(ast.parse(text, mode="eval").body, {"Param": Param, "float": float})

    assert read("(1, -2.5, [True, None], {'a': 'b'})") == (1, -2.5, [True, None], {"a": "b"})
    assert read("Param(4, float, 'doc', choices=(1, 2))") == Param(4, float, "doc", choices=(1, 2))
    for text in ("open('x')", "-'a'", "{**d}", "Param(*args)", "1 + 2"):
        with pytest.raises(Unreadable):
            read(text)
