"""The package's import graph, imports inside functions included: no cycles, and no import that goes up the
layer order of DESIGN.md (a module may import from its own layer or below)."""

from __future__ import annotations

import ast
from pathlib import Path

import workbench

ROOT = Path(workbench.__file__).parent

# Bottom to top, as in DESIGN.md; a name stands for the module or the package of that name.
LAYERS = [
    ["errors", "config", "resources", "data", "notebooks", "system_load", "ray_cluster", "verbosity"],
    [
        "records",
        "backends",
        "architectures",
        "flops",
        "tgate",
        "mag_cache",
        "acceleration",
        "models",
        "toyworld",
        "local_pipeline",
        "checkpoints",
        "costs",
    ],
    ["generation"],
    ["prompts", "routing", "metrics", "plan"],
    [
        "stats",
        "run_files",
        "results",
        "engine",
        "evaluation",
        "abtest",
        "acceleration_benchmark",
        "plots",
        "metric_validity",
    ],
    ["studies", "compare", "tracking", "sweeps", "widgets", "serve", "client", "cli"],
]
LAYER = {name: index for index, names in enumerate(LAYERS) for name in names}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _runtime_nodes(tree: ast.AST):
    """Every node, but those under ``if TYPE_CHECKING:`` (type hints only: never imported when running)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            yield from (n for child in node.orelse for n in [child, *_runtime_nodes(child)])
            continue
        yield node
        yield from _runtime_nodes(node)


def _imports(path: Path, module: str) -> set[str]:
    """The workbench modules ``path`` imports when it runs, anywhere in it (relative imports resolved)."""
    found = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in _runtime_nodes(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(
                    package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else [])
                )
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}  # "from workbench import plots"
    return {name for name in found if name == "workbench" or name.startswith("workbench.")}


def import_graph() -> dict[str, set[str]]:
    paths = {_module_name(p): p for p in ROOT.rglob("*.py") if "weights" not in p.parts}
    graph = {}
    for module, path in paths.items():
        targets = set()
        for name in _imports(path, module):
            while name not in paths and "." in name:  # "workbench.models.load" -> "workbench.models"
                name = name.rpartition(".")[0]
            if name in paths and name != module:
                targets.add(name)
        graph[module] = targets
    return graph


def _layer(module: str) -> int:
    """The layer of a module: its top-level name's (the package root is above everything)."""
    if module == "workbench":
        return len(LAYERS)
    top = module.split(".")[1]
    assert top in LAYER, f"{module} is in no layer: add it to LAYERS here and in DESIGN.md"
    return LAYER[top]


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan)."""
    index, low, stack, on_stack, groups, counter = {}, {}, [], set(), [], [0]

    def visit(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


def test_the_graph_sees_imports_inside_functions():
    graph = import_graph()
    assert "workbench.models" in graph["workbench.generation"]
    assert len(graph) > 30


def test_no_import_cycles():
    assert _cycles(import_graph()) == []


def test_no_import_goes_up_the_layers():
    upward = [
        f"{module} (layer {_layer(module) + 1}) imports {target} (layer {_layer(target) + 1})"
        for module, targets in sorted(import_graph().items())
        for target in sorted(targets)
        if _layer(target) > _layer(module)
    ]
    assert upward == []


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
