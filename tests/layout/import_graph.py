"""sam_core's import graph, read from the source with ``ast``: every ``import`` statement counts, those inside
functions included."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parents[2] / "sam_core"


def module_files() -> dict[str, Path]:
    """Dotted module name -> source file, for every module of sam_core."""
    modules = {}
    for path in PACKAGE_ROOT.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE_ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def imported_modules(path: Path, modules: dict[str, Path]) -> dict[str, list[ast.AST]]:
    """sam_core modules that ``path`` names in its import statements (module level or nested) -> the statements.
    ``from package import name`` names the package (its ``__init__`` runs) and, where ``name`` is a submodule,
    that submodule too."""
    found: dict[str, list[ast.AST]] = {}
    for node in ast.walk(ast.parse(path.read_text())):
        targets = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            targets.append(node.module)
            targets += [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        for target in targets:
            if target in modules:
                found.setdefault(target, []).append(node)
    return found


def import_graph() -> dict[str, set[str]]:
    """Module -> the sam_core modules it imports. Importing ``a.b.c`` also runs ``a.b``'s ``__init__``, so each
    import counts for the module's parent packages too, except the packages the importing module sits in (they
    are initialised before it); a package the statement names itself always counts. The top package
    ``sam_core`` (the public API, which imports everything) is left out."""
    modules = module_files()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = set()
        for target in imported_modules(path, modules):
            parts = target.split(".")
            parents = {".".join(parts[:i]) for i in range(2, len(parts))}
            targets.update(parent for parent in parents if not name.startswith(parent + "."))
            targets.add(target)
        graph[name] = {target for target in targets if target != name and target != "sam_core"}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first == last), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return stack[stack.index(target):] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None
