"""The package's import structure, read statically with ``ast`` (no module is imported):

    .venv/bin/python -m pytest tests/test_structure.py

- no import cycle between modules of ``ablate`` (imports anywhere in a file count, function-level and
  ``if TYPE_CHECKING:`` ones included: a cycle hidden in a function is still a knot in the design);
- no module imports a private (``_``-prefixed) module of another subpackage: a subpackage's surface
  is its ``__init__``;
- the heavy dependencies stay at the edges (docs/architecture.md, "Dependencies"): ``ray`` only in
  ``ablate/tune``, ``mlflow`` only in ``ablate/track``, plotting and page templating only in
  ``ablate/report``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "ablate"

# third-party top-level module -> the only ablate package that may import it
EDGE_DEPENDENCIES = {
    "ray": "ablate.tune",
    "mlflow": "ablate.track",
    "matplotlib": "ablate.report",
    "jinja2": "ablate.report",
    "pandas": "ablate.report",
}

@dataclass(frozen=True)
class Import:
    module: str  # the importing module
    target: str  # the ablate module it imports, or a third-party dotted name
    line: int

    def __str__(self) -> str:
        return f"{self.module} imports {self.target} (line {self.line})"


def module_files(root: Path = PACKAGE) -> dict[str, Path]:
    """Dotted module name -> file, a package named by its ``__init__.py``."""
    mods = {}
    for f in sorted(root.rglob("*.py")):
        parts = list(f.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        mods[".".join(parts)] = f
    return mods


def _imported_names(node: ast.AST, module: str, is_package: bool) -> Iterator[str]:
    """Dotted names an import statement may load: ``from a import b`` yields ``a`` and ``a.b``
    (b may be a submodule); relative imports are made absolute."""
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom):
        if node.level:
            here = module.split(".") if is_package else module.split(".")[:-1]
            base = ".".join(here[: len(here) - node.level + 1] + ([node.module] if node.module else []))
        else:
            base = node.module or ""
        yield base
        yield from (f"{base}.{alias.name}" for alias in node.names)


def imports(mods: dict[str, Path]) -> list[Import]:
    """Every import in every module, wherever it sits in the file; ablate targets resolved to the
    innermost module that exists, third-party ones kept as written."""
    root = next(iter(mods)).split(".")[0]
    found = set()
    for module, path in mods.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            for name in _imported_names(node, module, path.name == "__init__.py"):
                if name.split(".")[0] != root:
                    found.add(Import(module, name, node.lineno))  # type: ignore[attr-defined]
                    continue
                while name not in mods:
                    name = name.rpartition(".")[0]
                found.add(Import(module, name, node.lineno))  # type: ignore[attr-defined]
    return sorted(found, key=lambda i: (i.module, i.target, i.line))


def dependency_graph(mods: dict[str, Path], found: list[Import]) -> dict[str, set[str]]:
    """Module -> the ablate modules it imports. A module's own packages are left out: importing a
    sibling runs the package ``__init__`` first, and counting that would make every package that
    re-exports its modules a cycle."""
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for imp in found:
        if imp.target in mods and imp.target != imp.module and not imp.module.startswith(imp.target + "."):
            graph[imp.module].add(imp.target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def private_owner(target: str) -> str | None:
    """The package a private module belongs to (``ablate.tasks`` for ``ablate.tasks._params``), or
    None for a public module."""
    parts = target.split(".")
    for i, part in enumerate(parts):
        if part.startswith("_"):
            return ".".join(parts[:i])
    return None


def private_imports(mods: dict[str, Path], found: list[Import]) -> list[Import]:
    """Imports of a private module by a module outside the package that holds it."""
    out = []
    for imp in found:
        owner = private_owner(imp.target) if imp.target in mods else None
        if owner is not None and not _within(imp.module, owner):
            out.append(imp)
    return out


def misplaced_dependencies(found: list[Import], homes: dict[str, str] = EDGE_DEPENDENCIES) -> list[Import]:
    """Imports of an edge dependency outside the one package allowed to import it."""
    out = []
    for imp in found:
        home = homes.get(imp.target.split(".")[0])
        if home is not None and not _within(imp.module, home):
            out.append(imp)
    return out


@pytest.fixture(scope="module")
def package() -> tuple[dict[str, Path], list[Import]]:
    mods = module_files()
    return mods, imports(mods)


def test_no_import_cycles(package: tuple[dict[str, Path], list[Import]]) -> None:
    mods, found = package
    knots = cycles(dependency_graph(mods, found))
    assert not knots, "import cycles (each line: modules that import each other, directly or not):\n" + "\n".join(
        " <-> ".join(c) for c in knots)


def test_no_private_module_of_another_subpackage(package: tuple[dict[str, Path], list[Import]]) -> None:
    mods, found = package
    bad = private_imports(mods, found)
    assert not bad, "import the subpackage's public names instead:\n" + "\n".join(map(str, bad))


def test_heavy_dependencies_stay_at_the_edges(package: tuple[dict[str, Path], list[Import]]) -> None:
    bad = misplaced_dependencies(package[1])
    assert not bad, ("ray belongs in ablate/tune, mlflow in ablate/track, matplotlib/jinja2/pandas in "
                     "ablate/report:\n" + "\n".join(map(str, bad)))


# the checker checks itself on a small package, so a bug in it cannot pass for a clean tree
def _write(root: Path, files: dict[str, str]) -> dict[str, Path]:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return module_files(root / "pkg")


def test_the_checker_finds_function_level_cycles_private_and_edge_imports(tmp_path: Path) -> None:
    mods = _write(tmp_path, {
        "pkg/__init__.py": "from .a import x\n",
        "pkg/a/__init__.py": "from ._impl import x\n",
        "pkg/a/_impl.py": "import ray\nx = 1\ndef f():\n    from pkg.b import y\n",
        "pkg/b/__init__.py": "def y():\n    from ..a._impl import x\n    import mlflow.tracking\n",
        "pkg/c.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import b\n",
    })
    found = imports(mods)
    assert cycles(dependency_graph(mods, found)) == [["pkg.a._impl", "pkg.b"]]
    assert [(i.module, i.target) for i in private_imports(mods, found)] == [("pkg.b", "pkg.a._impl")]
    assert ("pkg.c", "pkg.b") in {(i.module, i.target) for i in found}
    misplaced = misplaced_dependencies(found, {"ray": "pkg.tune", "mlflow": "pkg.b"})
    assert [(i.module, i.target) for i in misplaced] == [("pkg.a._impl", "ray")]


def test_a_package_reexporting_its_modules_is_no_cycle(tmp_path: Path) -> None:
    mods = _write(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/t/__init__.py": "from ._base import A\nfrom ._sweep import run\n",
        "pkg/t/_base.py": "A = 1\n",
        "pkg/t/_sweep.py": "from ._base import A\nfrom pkg.t import _base\nrun = A\n",
    })
    assert cycles(dependency_graph(mods, imports(mods))) == []
    assert private_imports(mods, imports(mods)) == []


def package_graph(mods: dict[str, Path], found: list[Import]) -> dict[str, set[str]]:
    """Subpackage (or top-level module) -> the ones it imports, ``errors`` left out."""
    def top(module: str) -> str:
        parts = module.split(".")
        return parts[1] if len(parts) > 1 else parts[0]

    graph: dict[str, set[str]] = {}
    for module, targets in dependency_graph(mods, found).items():
        for target in targets:
            a, b = top(module), top(target)
            if a != b and b != "errors":
                graph.setdefault(a, set()).add(b)
    return graph


def documented_graph(doc: Path = PACKAGE.parent / "docs" / "architecture.md") -> dict[str, set[str]]:
    text = doc.read_text()
    block = text.split("```deps\n", 1)[1].split("```", 1)[0]
    graph = {}
    for line in block.strip().splitlines():
        name, _, targets = line.partition(" -> ")
        graph[name.strip()] = {t.strip() for t in targets.split(",") if t.strip()}
    return graph


def test_architecture_doc_lists_the_real_dependencies(package: tuple[dict[str, Path], list[Import]]) -> None:
    real, doc = package_graph(*package), documented_graph()
    diff = [f"{k}: code {sorted(real.get(k, set()))} vs docs/architecture.md {sorted(doc.get(k, set()))}"
            for k in sorted(set(real) | set(doc)) if real.get(k, set()) != doc.get(k, set())]
    assert not diff, "update the deps block of docs/architecture.md:\n" + "\n".join(diff)
