"""The package's architecture, checked from its source: no import cycles, imports only downwards through the
layers the README's layout section lists, nothing private crossing modules, and an ``import sam_core`` that
loads no console script and no optional dependency."""

from __future__ import annotations

import ast
import importlib
import json
import subprocess
import sys

import pytest
from import_graph import PACKAGE_ROOT, find_cycle, import_graph, imported_modules, module_files

# Lowest first: a module may import modules of its own layer and of the layers listed before it.
LAYERS = [
    ("foundation", ["sam_core.errors", "sam_core.fast_paths", "sam_core.openmp_wait", "sam_core.transforms"]),
    ("layers", ["sam_core.layers"]),
    ("interface", ["sam_core.interface"]),
    ("models", ["sam_core.models"]),
    ("registry", ["sam_core.registry"]),
    ("io", ["sam_core.io"]),
    ("pipelines", ["sam_core.pipelines", "sam_core.viz", "sam_core.runtime"]),
    ("finetune", ["sam_core.finetune"]),
    ("jobs", ["sam_core.jobs", "sam_core.serve"]),
    ("distributed", ["sam_core.distributed"]),
    ("compat", ["sam_core.compat"]),
    ("cli", ["sam_core.cli"]),
]

# Old import paths, kept as thin re-exports of the new ones (README, "Layout"). They sit outside the layers.
OLD_PATHS = {
    "sam_core.modeling": "sam_core.models.sam",
    "sam_core.sam2": "sam_core.models.sam2",
    "sam_core.sam2.parity": "sam_core.models.sam2.parity",
    "sam_core.onnx_export": "sam_core.io.onnx_export",
    "sam_core.int8": "sam_core.layers.int8_linear",
    "sam_core.parity": "sam_core.models.sam.parity",
    "sam_core.samples": "sam_core.jobs.samples",
    "sam_core.video_cli": "sam_core.cli.video",
    "sam_core.finetune.train_cli": "sam_core.cli.finetune",
    "sam_core.finetune.eval_cli": "sam_core.cli.evaluate",
    "sam_core.serve.cli": "sam_core.cli.serve",
}

# Optional dependencies (extras) and the reference packages the tests compare against: never imported by
# ``import sam_core``, and imported inside functions only, each with a comment saying why.
OPTIONAL = {"fastapi", "uvicorn", "ray", "pyarrow", "onnx", "onnxruntime", "matplotlib", "skimage", "scipy",
            "transformers", "segment_anything", "segment_anything_hq", "sam2", "mobile_sam", "efficientsam",
            "ssseg", "timm", "loralib"}


def layer_of(module: str) -> int | None:
    for rank, (_, prefixes) in enumerate(LAYERS):
        if any(module == prefix or module.startswith(prefix + ".") for prefix in prefixes):
            return rank
    return None


def test_every_module_has_a_layer():
    unplaced = [name for name in module_files() if name != "sam_core" and name not in OLD_PATHS
                and layer_of(name) is None]
    assert not unplaced, f"modules outside every layer of LAYERS: {unplaced}"


def test_no_import_cycles():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_imports_go_down_the_layers():
    upward = []
    for module, targets in import_graph().items():
        if module == "sam_core" or module in OLD_PATHS:
            continue
        for target in targets:
            if target in OLD_PATHS:
                upward.append(f"{module} imports the old path {target}")
            elif layer_of(target) is not None and layer_of(target) > layer_of(module):
                upward.append(f"{module} ({LAYERS[layer_of(module)][0]}) imports {target} "
                              f"({LAYERS[layer_of(target)][0]})")
    assert not upward, "\n".join(upward)


def test_nothing_imports_the_console_scripts():
    importers = [module for module, targets in import_graph().items()
                 if not module.startswith("sam_core.cli") and module not in OLD_PATHS
                 and any(target.startswith("sam_core.cli") for target in targets)]
    assert not importers, f"modules importing sam_core.cli: {importers}"


def test_no_private_names_cross_modules():
    """No ``from sam_core.x import _name``, and no ``other._name`` for a private name that sam_core defines
    (``self._name`` and ``cls._name`` are the class's own business)."""
    modules = module_files()
    trees = {name: ast.parse(path.read_text()) for name, path in modules.items()}
    defined = set()
    for tree in trees.values():
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                defined.add(node.name)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                defined.add(node.attr)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                defined.add(node.id)
    private = {name for name in defined if name.startswith("_") and not name.startswith("__")}
    crossings = []
    for module, tree in trees.items():
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sam_core"):
                crossings += [f"{module}: imports {node.module}.{alias.name}" for alias in node.names
                              if alias.name in private]
            elif isinstance(node, ast.Attribute) and node.attr in private:
                owner = node.value
                own = isinstance(owner, ast.Name) and owner.id in ("self", "cls") or (
                    isinstance(owner, ast.Call) and isinstance(owner.func, ast.Name) and owner.func.id == "super")
                if not own:
                    crossings.append(f"{module}:{node.lineno}: {ast.unparse(node)}")
    assert not crossings, "\n".join(crossings)


def test_imports_inside_functions_keep_optional_dependencies_optional():
    """An import inside a function is of an optional dependency (or of a sam_core module that imports one at
    its top), with a comment on its line or above its block saying why."""
    modules = module_files()
    graph = import_graph()

    def imports_optional_at_top(module: str) -> bool:
        for node in ast.parse(modules[module].read_text()).body:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [node.module] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
                if any((name or "").split(".")[0] in OPTIONAL for name in names):
                    return True
        return False

    def pulls_optional(module: str) -> bool:
        """Whether importing ``module`` imports an optional dependency, through any chain of sam_core modules."""
        seen, todo = set(), [module]
        while todo:
            current = todo.pop()
            if current in seen:
                continue
            seen.add(current)
            if imports_optional_at_top(current):
                return True
            todo.extend(graph[current])
        return False

    problems = []
    for module, path in modules.items():
        lines = path.read_text().splitlines()
        for function in ast.walk(ast.parse("\n".join(lines))):
            if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(function):
                if not isinstance(node, (ast.Import, ast.ImportFrom)):
                    continue
                name = node.module if isinstance(node, ast.ImportFrom) else node.names[0].name
                where = f"{module}:{node.lineno} ({name})"
                optional = name.split(".")[0] in OPTIONAL or (name in modules and pulls_optional(name))
                if not optional:
                    problems.append(f"{where}: not an optional dependency; import it at the top")
                above = node.lineno - 2
                while above >= 0 and lines[above].strip().startswith(("import ", "from ")):
                    above -= 1
                if "#" not in lines[node.lineno - 1] and not lines[above].strip().startswith("#"):
                    problems.append(f"{where}: no comment saying why it is imported here")
    assert not problems, "\n".join(problems)


def test_import_sam_core_loads_no_console_script_and_no_optional_dependency():
    code = "import json, sys; import sam_core; print(json.dumps(sorted(sys.modules)))"
    loaded = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                       check=True, cwd=PACKAGE_ROOT.parent).stdout)
    assert not [name for name in loaded if name == "sam_core.cli" or name.startswith("sam_core.cli.")]
    assert not [name for name in loaded if name.split(".")[0] in OPTIONAL]
    assert "sam_core.pipelines.predictor" in loaded  # the check sees sam_core's modules at all


@pytest.mark.parametrize("old", sorted(OLD_PATHS))
def test_old_paths_re_export_the_new_modules(old):
    old_module, new_module = importlib.import_module(old), importlib.import_module(OLD_PATHS[old])
    assert old_module.__doc__.startswith("Old path, kept as a re-export")
    public = [name for name in vars(old_module) if not name.startswith("_")]
    assert public
    for name in public:
        value = getattr(old_module, name)
        if not isinstance(value, type(sys)):
            assert getattr(new_module, name, value) is value, f"{old}.{name} is not {OLD_PATHS[old]}.{name}"


def test_old_paths_are_thin():
    for old in OLD_PATHS:
        path = module_files()[old]
        tree = ast.parse(path.read_text())
        statements = [node for node in tree.body if not isinstance(node, ast.Expr)  # the docstring
                      and not (isinstance(node, ast.Assign) and ast.unparse(node.targets[0]) == "__all__")]
        assert all(isinstance(node, (ast.Import, ast.ImportFrom)) for node in statements), old
        assert all(target not in OLD_PATHS for target in imported_modules(path, module_files())), old


def test_public_names_keep_working():
    import sam_core
    import sam_core.cli
    import sam_core.compat
    import sam_core.modeling
    import sam_core.sam2

    for name in sam_core.__all__:
        assert getattr(sam_core, name) is not None, name
    for module in (sam_core.compat, sam_core.modeling, sam_core.sam2):
        for name in module.__all__:
            assert getattr(module, name) is not None, f"{module.__name__}.{name}"
    assert sam_core.cli.amg_main is importlib.import_module("sam_core.cli.amg").main
    assert sam_core.build_sam2_video_predictor is sam_core.compat.build_sam2_video_predictor
