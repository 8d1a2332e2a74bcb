import ast
import importlib
import inspect
import pkgutil
import subprocess
import sys
import warnings

import pytest

import workbench


def _type_checking_imports() -> list[tuple[str, str]]:
    """(name, module relative to the package: "" for the package itself) of each import in __init__.py's
    ``if TYPE_CHECKING:`` block."""
    tree = ast.parse(inspect.getsource(workbench))
    (block,) = [node for node in tree.body if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING"]
    imports = []
    for node in block.body:
        assert isinstance(node, ast.ImportFrom) and node.level == 0, ast.unparse(node)
        module = "" if node.module == "workbench" else node.module.removeprefix("workbench.")
        for alias in node.names:
            assert alias.asname == alias.name, f"{ast.unparse(node)}: re-export it as itself (X as X)"
            imports.append((alias.name, module))
    return imports


def test_the_type_checking_imports_are_the_exports_table():
    imports = _type_checking_imports()
    assert len(imports) == len(dict(imports)), "a name imported twice"
    assert dict(imports) == workbench._EXPORTS


def test_all_is_the_exports_table_and_lists_each_name_once():
    assert workbench.__all__ == ["__version__", *workbench._EXPORTS]
    assert len(workbench.__all__) == len(set(workbench.__all__))
    assert not set(workbench._DEPRECATED) & set(workbench.__all__)


def test_every_public_name_is_the_object_of_its_module():
    for name, module in workbench._EXPORTS.items():
        home = importlib.import_module(f"workbench.{module or name}")
        expected = home if not module else getattr(home, name)
        assert getattr(workbench, name) is expected, name
    assert set(dir(workbench)) >= set(workbench.__all__)


def test_submodules_stay_reachable_as_attributes():
    assert workbench.evaluation is importlib.import_module("workbench.evaluation")
    with pytest.raises(AttributeError, match="no attribute 'no_such_name'"):
        _ = workbench.no_such_name


def test_import_workbench_imports_none_of_the_heavy_libraries():
    heavy = ["torch", "diffusers", "transformers", "matplotlib", "scipy", "pandas"]
    code = f"import sys, workbench; print([m for m in {heavy!r} if m in sys.modules])"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip() == "[]"


def test_every_deprecated_name_points_to_a_public_one():
    for old, new in workbench._DEPRECATED.items():
        assert new in workbench._EXPORTS and old not in workbench._EXPORTS, (old, new)


def test_a_deprecated_name_warns_naming_its_replacement_each_time(monkeypatch):
    monkeypatch.setitem(workbench._DEPRECATED, "OldRouter", "Router")
    for _ in range(2):  # not kept in the module's namespace: every use warns
        with pytest.warns(DeprecationWarning, match=r"workbench\.OldRouter is deprecated; use workbench\.Router"):
            assert workbench.OldRouter is workbench.routing.Router
    with pytest.warns(DeprecationWarning) as caught:
        from workbench import OldRouter
    assert OldRouter is workbench.Router
    assert {w.filename for w in caught} == {__file__}  # blamed on the line that uses the old name
    assert "OldRouter" not in workbench.__all__ and "OldRouter" not in dir(workbench)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _ = workbench.Router  # the new name does not warn


def test_every_module_declares_all_and_its_names_exist():
    for info in pkgutil.walk_packages(workbench.__path__, "workbench."):
        module = importlib.import_module(info.name)
        assert hasattr(module, "__all__"), f"{info.name} has no __all__"
        for name in module.__all__:
            assert hasattr(module, name), f"{info.name}.{name}"
