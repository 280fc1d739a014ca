"""The package's modules import each other without a cycle, counting the imports inside
functions too (a lazy import that closes a cycle only hides it). Parsed with ``ast``, nothing
is imported. An import of ``a.b.c`` is an edge to ``a.b.c`` only: the parent packages that
Python initialises first are not counted, else every package ``__init__`` that re-exports its
submodules would be a cycle."""
import ast
import pathlib
from typing import Dict, List, Set

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "anyup_dense"


def module_files(package: pathlib.Path) -> Dict[str, pathlib.Path]:
    """Dotted module name -> file, for every ``.py`` file under ``package``."""
    modules = {}
    for path in package.rglob("*.py"):
        parts = path.relative_to(package.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def imported_modules(name: str, path: pathlib.Path, known: Set[str]) -> Set[str]:
    """The modules of ``known`` that module ``name`` (at ``path``) imports anywhere in its body."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: drop level-1 trailing parts of the package
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            # ``from a import b`` imports the submodule a.b when there is one, else module a
            found.update(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names)
    return (found & known) - {name}


def import_graph(package: pathlib.Path) -> Dict[str, Set[str]]:
    modules = module_files(package)
    return {name: imported_modules(name, path, set(modules)) for name, path in modules.items()}


def find_cycle(graph: Dict[str, Set[str]]) -> List[str]:
    """One cycle [m0, m1, ..., m0] of ``graph``, or [] when there is none (depth-first search)."""
    state: Dict[str, str] = {}  # "open" while on the current path, "done" after
    path: List[str] = []

    def visit(node: str) -> List[str]:
        state[node] = "open"
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                return path[path.index(target):] + [target]
            if target not in state:
                cycle = visit(target)
                if cycle:
                    return cycle
        path.pop()
        state[node] = "done"
        return []

    for start in sorted(graph):
        if start not in state:
            cycle = visit(start)
            if cycle:
                return cycle
    return []


def test_finder_sees_function_level_and_relative_imports(tmp_path):
    """The checker itself: a cycle closed by an import inside a function, or by a relative
    import, is found; re-exporting submodules from ``__init__`` is not a cycle."""
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("from pkg.a import f\n")
    (pkg / "a.py").write_text("def f():\n    from pkg.sub import b\n")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "sub" / "b.py").write_text("import os\n")
    assert import_graph(pkg) == {"pkg": {"pkg.a"}, "pkg.a": {"pkg.sub.b"}, "pkg.sub": set(), "pkg.sub.b": set()}
    assert find_cycle(import_graph(pkg)) == []
    (pkg / "sub" / "b.py").write_text("from .. import a\n")
    assert find_cycle(import_graph(pkg)) == ["pkg.a", "pkg.sub.b", "pkg.a"]


def test_package_import_graph_has_no_cycle():
    graph = import_graph(PACKAGE)
    assert len(graph) > 50 and "anyup_dense.upsamplers.anyup" in graph  # the walk found the package
    assert find_cycle(graph) == []
