"""Built-ins declared by their decorator alone: a package's modules are read, not imported.

    # ablate/norms/__init__.py, after its imports
    NORMS.declare_package(__name__, info=read_norm_info)

A built-in is registered in one place, ``@NORMS.register("key")`` on its class, as BasicSR's
registries are; but importing a built-in norm or regularizer imports torch (over a second), which
``ablate validate``, ``plan`` and ``plugins`` must not pay. So :meth:`Registry.declare_package`
lists the package's modules with ``pkgutil``, reads each one's source with ``ast``, and declares
every ``@REG.register("key")`` it finds on a top-level class or function by import path, with the
first paragraph of its docstring (an axis can read more: a norm's ``sigma`` and ``PARAMS``, see
:meth:`Registration.class_attribute`). The module itself is imported on first use of one of its
components.

A module that registers in any other way (``REG.add(...)`` at module level, as presets and aliases
do, a key that is not a string literal, a decorator inside a function) cannot be read like this and
is imported instead, so such a module must import no torch. tests/registry/test_declared.py imports
every module of every built-in package and checks that what is declared before equals what is
registered after.
"""

from __future__ import annotations

import ast
import importlib.machinery
import pkgutil
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Registry methods that register (anything else, e.g. ``REG.get`` in a resolver, only reads).
_REGISTERING = frozenset({"register", "add", "declare", "declare_package"})


class Unreadable(Exception):
    """A class attribute that the source does not state as a plain value (see :func:`literal`)."""


@dataclass(frozen=True)
class Registration:
    """One ``@REG.register("key")`` found in a module's source, without importing the module."""

    key: str
    module: str  # dotted module name
    qualname: str  # the decorated class or function (top-level, so its name)
    description: str  # the decorator's ``description=``, else its docstring's first paragraph
    node: ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef
    tree: ast.Module  # the whole module, for the bases and constants an attribute may refer to

    @property
    def target(self) -> str:
        return f"{self.module}:{self.qualname}"

    def class_attribute(self, name: str, names: Mapping[str, Any], roots: Mapping[str, Any]) -> Any:
        """The value the source gives class attribute ``name``: its last assignment in the class body,
        else in the base classes defined in the same module, up to a base named in ``roots`` (a class
        imported from elsewhere, e.g. ``Normalizer``), whose value ``roots`` gives.

        The value is read with :func:`literal`, resolving ``names`` (what the axis lets a value call
        or name, e.g. ``Param``) and the module's own top-level constants. Raises :class:`Unreadable`
        when the value is not a plain one, or when the class has several bases or one that is
        neither in the module nor in ``roots``: the caller then imports the class instead.
        """
        classes = {n.name: n for n in self.tree.body if isinstance(n, ast.ClassDef)}
        scope = {**_constants(self.tree, names), **names}
        node: ast.AST = self.node
        while isinstance(node, ast.ClassDef):
            value = _last_assignment(node, name)
            if value is not None:
                return literal(value, scope)
            if len(node.bases) != 1 or not isinstance(node.bases[0], ast.Name):
                raise Unreadable(f"{node.name} does not have exactly one base class named plainly")
            base = node.bases[0].id
            if base in roots:
                return roots[base]
            if base not in classes:
                raise Unreadable(f"{node.name}'s base {base} is defined in another module")
            node = classes[base]
        raise Unreadable(f"{self.qualname} is not a class")


def package_modules(package: str, locations: list[str]) -> Iterator[tuple[str, Path]]:
    """(dotted name, source file) of every module under ``package`` (subpackages' ``__init__`` and
    modules included, the package's own ``__init__`` not: it is the one being imported)."""
    for info in pkgutil.iter_modules(locations, package + "."):
        if not isinstance(info.module_finder, importlib.machinery.FileFinder):
            continue  # zipped or frozen: nothing to read; the package imports such modules itself
        spec = info.module_finder.find_spec(info.name)
        if spec is None or not spec.origin or not spec.origin.endswith(".py"):
            continue
        yield info.name, Path(spec.origin)
        if info.ispkg and spec.submodule_search_locations:
            yield from package_modules(info.name, list(spec.submodule_search_locations))


def read_module(module: str, source: str, registry_name: str) -> tuple[list[Registration], bool]:
    """(the ``@REG.register("key")`` registrations of ``module`` that its source states plainly,
    whether it registers in some other way too and must therefore be imported).

    ``REG`` is ``registry_name`` (``NORMS``) or the name it was imported under (``as``).
    """
    if registry_name not in source:  # most modules of a package never mention the registry
        return [], False
    tree = ast.parse(source, module)
    # the names the module imported the registry under (only top-level imports: a registry imported
    # inside a function under another name is not seen, and test_declared then fails)
    aliases = {registry_name} | {a.asname for n in tree.body if isinstance(n, ast.ImportFrom)
                                 for a in n.names if a.name == registry_name and a.asname}
    found: list[Registration] = []
    read: set[int] = set()  # the decorator calls read here
    for node in tree.body:
        if not isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for deco in node.decorator_list:
            key, description = _registration(deco, aliases)
            if key is None:
                continue
            doc = description if description is not None else summary(ast.get_docstring(node) or "")
            found.append(Registration(key, module, node.name, doc, node, tree))
            read.add(id(deco))
    # Walking the whole tree costs more than everything else here (most of `ablate validate`'s scan),
    # so it is done only when the text shows a registering call beyond the decorators just read.
    call = re.compile(rf"\b(?:{'|'.join(map(re.escape, aliases))})\s*\.\s*(?:{'|'.join(_REGISTERING)})\s*\(")
    if len(call.findall(source)) == len(read):
        return found, False
    other = any(isinstance(n, ast.Call) and id(n) not in read and isinstance(n.func, ast.Attribute)
                and n.func.attr in _REGISTERING and isinstance(n.func.value, ast.Name) and n.func.value.id in aliases
                for n in ast.walk(tree))
    return found, other


def _registration(deco: ast.expr, aliases: set[str]) -> tuple[str | None, str | None]:
    """(key, description or None) of ``@REG.register("key"[, description="..."])``; (None, None) for
    any other decorator, or one whose arguments are not string literals."""
    if not (isinstance(deco, ast.Call) and isinstance(deco.func, ast.Attribute) and deco.func.attr == "register"
            and isinstance(deco.func.value, ast.Name) and deco.func.value.id in aliases):
        return None, None
    if len(deco.args) != 1 or not _is_str(deco.args[0]):
        return None, None
    description = None
    for kw in deco.keywords:
        if kw.arg != "description" or not _is_str(kw.value):
            return None, None
        description = kw.value.value  # type: ignore[attr-defined]
    return deco.args[0].value, description  # type: ignore[attr-defined]


def _is_str(node: ast.expr) -> bool:
    return isinstance(node, ast.Constant) and isinstance(node.value, str)


def summary(doc: str) -> str:
    """A docstring's first paragraph on one line (a summary wrapped over two lines stays whole)."""
    return " ".join(doc.strip().split("\n\n")[0].split())


def _last_assignment(cls: ast.ClassDef, name: str) -> ast.expr | None:
    value = None
    for stmt in cls.body:
        if isinstance(stmt, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in stmt.targets):
            value = stmt.value
        elif isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and stmt.target.id == name:
            value = stmt.value
    return value


def _constants(tree: ast.Module, names: Mapping[str, Any]) -> dict[str, Any]:
    """The module's top-level ``NAME = <plain value>`` assignments, in order (others are skipped: a
    value that names one of them is then unreadable)."""
    scope: dict[str, Any] = {}
    for stmt in tree.body:
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
            try:
                scope[stmt.targets[0].id] = literal(stmt.value, {**scope, **names})
            except Unreadable:
                scope.pop(stmt.targets[0].id, None)
    return scope


def literal(node: ast.expr, names: Mapping[str, Any]) -> Any:
    """The value of a plain expression: constants, tuples, lists, dicts, a sign, ``names`` and calls
    of the callables among ``names`` with plain arguments (``Param(1e-5, float, "doc")``).

    What ``ast.literal_eval`` reads plus those names; anything else raises :class:`Unreadable`, so
    nothing a module does at import time (a function call, an attribute) is guessed at.
    """
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, (ast.Tuple, ast.List)):
        items = [literal(e, names) for e in node.elts]
        return tuple(items) if isinstance(node, ast.Tuple) else items
    if isinstance(node, ast.Dict) and all(k is not None for k in node.keys):
        return {literal(k, names): literal(v, names) for k, v in zip(node.keys, node.values)}  # type: ignore[arg-type]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = literal(node.operand, names)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return -value if isinstance(node.op, ast.USub) else value
    if isinstance(node, ast.Name) and node.id in names:
        return names[node.id]
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and callable(names.get(node.func.id)):
        if any(kw.arg is None for kw in node.keywords) or any(isinstance(a, ast.Starred) for a in node.args):
            raise Unreadable(f"line {node.lineno}: ** or * arguments")
        return names[node.func.id](*(literal(a, names) for a in node.args),
                                   **{kw.arg: literal(kw.value, names) for kw in node.keywords if kw.arg})
    raise Unreadable(f"line {getattr(node, 'lineno', '?')}: {ast.unparse(node)!r} is not a plain value")
