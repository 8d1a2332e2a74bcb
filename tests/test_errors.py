import importlib
import inspect
import pkgutil
import re

import pytest

import workbench
from workbench import errors
from workbench.config import GenerationConfig


def _modules():
    for info in pkgutil.walk_packages(workbench.__path__, "workbench."):
        yield importlib.import_module(info.name)


def test_every_exception_of_the_package_is_a_workbench_error_defined_in_errors():
    found = {}
    for module in _modules():
        for name, value in vars(module).items():
            if inspect.isclass(value) and issubclass(value, BaseException) and value.__module__.startswith("workbench"):
                found[name] = value
    assert found, "no exceptions found: the walk saw no modules"
    for name, cls in found.items():
        assert cls.__module__ == "workbench.errors", f"{name} is defined in {cls.__module__}, not workbench.errors"
        assert issubclass(cls, errors.WorkbenchError), f"{name} is not a WorkbenchError"
    assert set(found) == set(errors.__all__)


def drawn_tree(doc: str) -> dict[str, str | None]:
    """Each class of the tree drawn after the docstring's ``::`` with its parent (None for the root); a class
    is one level below the line above when its name starts 4 columns further right."""
    lines = doc.split("::\n", 1)[1].strip("\n").split("\n\n", 1)[0].splitlines()
    parents: dict[str, str | None] = {}
    path: list[str] = []  # the classes above the current line, root first
    root_column = None
    for line in lines:
        match = re.match(r"^([\s│├└─]*)(\w+)", line)
        assert match, f"not a line of the tree: {line!r}"
        column = len(match[1])
        root_column = column if root_column is None else root_column
        depth = (column - root_column) // 4
        assert 0 <= depth <= len(path) and (depth > 0 or not path), f"misdrawn: {line!r}"
        assert match[2] not in parents, f"{match[2]} is drawn twice"
        path = [*path[:depth], match[2]]
        parents[match[2]] = path[-2] if depth else None
    return parents


def test_the_tree_in_the_docstring_is_the_class_hierarchy():
    real = {}
    for name in errors.__all__:
        cls = getattr(errors, name)
        bases = [base.__name__ for base in cls.__bases__ if issubclass(base, errors.WorkbenchError)]
        assert len(bases) <= 1, f"{name} has several WorkbenchError bases: {bases}"
        real[name] = bases[0] if bases else None
    assert drawn_tree(errors.__doc__) == real


def test_the_tree_reader_reads_nested_classes():
    doc = "Tree::\n\n    A\n     ├── B    b\n     │   └── C  c\n     └── D\n\nMore.\n"
    assert drawn_tree(doc) == {"A": None, "B": "A", "C": "B", "D": "A"}


def test_unknown_model_error_names_the_id_and_lists_what_is_available():
    error = errors.UnknownModelError("owner/missing", "offline", ["toyworld/sd-small", "arch/tiny"])
    assert "owner/missing" in str(error) and "offline" in str(error)
    assert "toyworld/sd-small" in str(error) and "arch/tiny" in str(error)
    assert error.available == ["toyworld/sd-small", "arch/tiny"]


def test_a_config_error_names_its_field():
    with pytest.raises(errors.ConfigError) as error:
        GenerationConfig(steps=0)
    assert error.value.field == "steps"
