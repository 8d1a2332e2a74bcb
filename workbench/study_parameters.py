"""A study's parameters: read from its notebook's cell tagged ``parameters``, and values checked against their
types (annotations, ``Literal`` choices) and metric names against the registry, before any kernel starts."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

from workbench.deprecation import renamed as warn_renamed
from workbench.errors import ConfigError
from workbench.study_notebooks import find_study, read_notebook, study_metadata

__all__ = ["check_parameters", "check_study_metrics", "current_parameters", "notebook_parameters"]

# What a parameter's type admits; an int is a fine float, a bool is no number. Other names are not checked.
_TYPES = {
    "int": (int,),
    "float": (int, float),
    "str": (str,),
    "bool": (bool,),
    "list": (list,),
    "List": (list,),
    "dict": (dict,),
    "Dict": (dict,),
    "None": (type(None),),
}


def notebook_parameters(notebook: str | Path) -> dict[str, dict[str, Any]]:
    """The parameters of a notebook (a path or a bundled study's name), read from its cell tagged
    ``parameters``: name -> {default, type}.

    ``default`` is the value's source text; ``type`` is the annotation as written (``device: str | None = None``
    gives ``"str | None"``), else the type name of the default value."""
    cells = read_notebook(find_study(notebook)).cells
    cell = next((c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])), None)
    if cell is None:
        raise ConfigError(f"{notebook} has no cell tagged 'parameters'")
    try:
        tree = ast.parse(cell.source)
    except SyntaxError as error:
        raise ConfigError(
            f"{notebook}: the parameters cell is not plain Python ({error.msg}, line {error.lineno})"
        ) from None
    found = {}
    for node in tree.body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            name, annotation, value = node.target.id, node.annotation, node.value
        elif isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name, annotation, value = node.targets[0].id, None, node.value
        else:
            continue
        default = ast.get_source_segment(cell.source, value) or ast.unparse(value)
        found[name] = {"default": default, "type": _type_name(annotation, value, cell.source)}
    return found


def _type_name(annotation: ast.expr | None, value: ast.expr, source: str) -> str:
    if isinstance(annotation, ast.Constant) and isinstance(annotation.value, str):
        return annotation.value  # a quoted annotation
    if annotation is not None:
        return ast.get_source_segment(source, annotation) or ast.unparse(annotation)
    try:
        return type(ast.literal_eval(value)).__name__
    except (ValueError, SyntaxError, TypeError):
        return "unknown"


def _admits(type_name: str, value: Any) -> bool | None:
    """Whether the annotation ``type_name`` admits ``value`` (``str | None``, ``Optional[int]``, ``list[int]``,
    ``Literal["local", "ray"]``, ``list[Literal["a", "b"]]``, ...), or None where it cannot tell (then any
    value goes)."""
    try:
        return _check(ast.parse(type_name, mode="eval").body, value)
    except SyntaxError:
        return None


def _check(node: ast.expr, value: Any) -> bool | None:
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return _any(_check(member, value) for member in (node.left, node.right))
    if isinstance(node, ast.Subscript):
        kind = _name(node.value)
        inner = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
        if kind == "Literal":
            choices = _choices(node)
            return None if choices is None else any(_same(value, choice) for choice in choices)
        if kind in {"Optional", "Union"}:
            members = [*inner, ast.Constant(None)] if kind == "Optional" else inner
            return _any(_check(member, value) for member in members)
        outer = _check(node.value, value)
        if outer and kind in {"list", "List"} and len(inner) == 1:  # list[X]: each item must be an X
            items = [_check(inner[0], item) for item in value]
            return False if False in items else outer
        return outer  # dict[str, int] is a dict; its items are not checked
    if isinstance(node, ast.Constant) and node.value is None:
        return value is None
    allowed = _TYPES.get(_name(node))
    if allowed is None:
        return None
    return isinstance(value, allowed) and (bool in allowed or not isinstance(value, bool))


def _any(results) -> bool | None:
    """True where any member admits the value, False where each refuses it, else None (cannot tell)."""
    results = list(results)
    return True if True in results else False if all(r is False for r in results) else None


def _same(value: Any, choice: Any) -> bool:
    """``value`` is the Literal's ``choice`` (True is not 1, 1.0 is not 1)."""
    return type(value) is type(choice) and value == choice


def _choices(node: ast.Subscript) -> list[Any] | None:
    """A ``Literal[...]``'s values, or None where one is not a plain constant."""
    elts = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
    try:
        return [ast.literal_eval(elt) for elt in elts]
    except ValueError:
        return None


def _literal_values(type_name: str) -> list[Any]:
    """The values the ``Literal[...]`` parts of an annotation name (none where it has no Literal)."""
    tree = ast.parse(type_name, mode="eval")
    literals = [n for n in ast.walk(tree) if isinstance(n, ast.Subscript) and _name(n.value) == "Literal"]
    return [choice for node in literals for choice in _choices(node) or []]


def _name(node: ast.expr) -> str:
    """``str`` for ``str``, ``Optional`` for ``typing.Optional``."""
    return node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else ""


def current_parameters(notebook: str | Path, parameters: dict[str, Any]) -> dict[str, Any]:
    """``parameters`` under their current names: a renamed one the study declares (``renamed`` in its metadata)
    is given its new name, with a warning; both names given is an error."""
    renamed = study_metadata(notebook).get("renamed", {})
    current = dict(parameters)
    for old, new in renamed.items():
        if old in current:
            if new in current:
                raise ConfigError(f"parameter {old!r} is the old name of {new!r}: give {new!r} only", old)
            warn_renamed(f"parameter {old!r}", repr(new))
            current[new] = current.pop(old)
    return current


def check_parameters(notebook: str | Path, parameters: dict[str, Any]) -> None:
    """Refuse unknown names, and values the parameter's type does not admit, naming them. The type is the
    annotation's (``device: str | None = None`` takes None or a string; ``worker_pool: Literal["local",
    "ray"] = "local"`` one of those two; ``classifiers: list[Literal["keyword", "embedding"]]`` a list of
    them), else the default value's."""
    known = notebook_parameters(notebook)
    unknown = sorted(set(parameters) - set(known))
    if unknown:
        raise ConfigError(f"unknown parameter(s) {unknown} for {Path(notebook).name}; valid: {sorted(known)}")
    for name, value in parameters.items():
        if _admits(known[name]["type"], value) is False:
            choices = _literal_values(known[name]["type"])
            hint = f"; one of {', '.join(map(repr, choices))}" if choices else ""
            raise ConfigError(
                f"parameter {name!r} must be {known[name]['type']} (default {known[name]['default']}), "
                f"got {type(value).__name__} {value!r}{hint}",
                name,
            )


def check_study_metrics(notebook: str | Path, parameters: dict[str, Any]) -> None:
    """For a study with a ``metrics`` parameter: refuse unknown metric names, and per-set metrics without a
    reference set for prompts with no known answer (``metrics.check_metrics``), before any kernel starts.
    The prompts are the ones the study loads, from the parameters its metadata names (``prompts``)."""
    from workbench.metrics import check_metrics, set_metric_names
    from workbench.prompts import load_prompts

    known = notebook_parameters(notebook)
    if "metrics" not in known:
        return

    def value(name: str) -> Any:
        return parameters[name] if name in parameters else ast.literal_eval(known[name]["default"])

    loads = study_metadata(notebook).get("prompts", {})
    if missing := sorted(set(loads.values()) - set(known)):
        raise ConfigError(f"{Path(notebook).name}: metadata.workbench.prompts names no such parameter(s) {missing}")
    names = value("metrics")
    prompts: list[str] = []
    if loads and not isinstance(names, str) and set_metric_names(names):
        arguments = {argument: value(parameter) or None for argument, parameter in loads.items()}
        prompts = list(load_prompts(**arguments)["prompt"])
    check_metrics(names, prompts, reference_images=value("reference_images") if "reference_images" in known else None)
