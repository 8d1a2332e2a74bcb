"""The package's import graph, imports inside functions and under ``if TYPE_CHECKING:`` included: no cycles,
and no import that goes up the layer order of ARCHITECTURE.md (a module may import from its own layer or
below)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import workbench

ROOT = Path(workbench.__file__).parent
ARCHITECTURE = Path(__file__).resolve().parents[1] / "ARCHITECTURE.md"
_ROW = re.compile(r"^\|\s*(\d+)\s*\|\s*`(\w+)(?:\.py|/)`\s*\|")  # | 3 | `generation.py` | ... |  or `toyworld/`


def read_layers(text: str) -> list[list[str]]:
    """The layers of ARCHITECTURE.md's table, bottom to top: the names of their modules and packages."""
    layers: dict[int, list[str]] = {}
    for line in text.splitlines():
        if match := _ROW.match(line):
            layers.setdefault(int(match[1]), []).append(match[2])
    numbers = sorted(layers)
    assert numbers == list(range(1, len(numbers) + 1)), f"ARCHITECTURE.md's layers are not 1 to n: {numbers}"
    return [layers[n] for n in numbers]


LAYERS = read_layers(ARCHITECTURE.read_text(encoding="utf-8"))
LAYER = {name: index for index, names in enumerate(LAYERS) for name in names}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, module: str) -> set[str]:
    """The workbench modules ``path`` imports, anywhere in it: inside functions and under ``if TYPE_CHECKING:``
    too (relative imports resolved)."""
    found = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
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
    assert top in LAYER, f"{module} is in no layer: add a row for {top} to ARCHITECTURE.md"
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


def test_the_graph_sees_imports_inside_functions_and_for_type_checking():
    graph = import_graph()
    assert "workbench.models" in graph["workbench.generation"]
    assert "workbench.plots" in graph["workbench"]  # the package root's imports are for type checkers only
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


def test_every_module_is_in_one_layer_of_architecture_md():
    modules = {p.stem for p in ROOT.glob("*.py") if p.stem != "__init__"}
    modules |= {p.parent.name for p in ROOT.glob("*/__init__.py")}
    listed = [name for names in LAYERS for name in names]
    assert sorted({name for name in listed if listed.count(name) > 1}) == [], "in more than one row of ARCHITECTURE.md"
    assert sorted(modules - set(listed)) == [], "in no layer: add a row for each to ARCHITECTURE.md's table"
    assert sorted(set(listed) - modules) == [], "in ARCHITECTURE.md's table but not in workbench/"


def test_the_layers_are_read_from_the_table():
    text = "| layer | module | what |\n|---|---|---|\n| 1 | `a.py` | x |\n| 2 | `b/` | y \\| z |\n| 2 | `c.py` | |\n"
    assert read_layers(text) == [["a"], ["b", "c"]]


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
