import importlib
import pkgutil

import workbench


def test_public_names_exist_and_are_listed_once():
    assert len(workbench.__all__) == len(set(workbench.__all__))
    for name in workbench.__all__:
        assert hasattr(workbench, name), name


def test_every_module_declares_all_and_its_names_exist():
    for info in pkgutil.walk_packages(workbench.__path__, "workbench."):
        module = importlib.import_module(info.name)
        assert hasattr(module, "__all__"), f"{info.name} has no __all__"
        for name in module.__all__:
            assert hasattr(module, name), f"{info.name}.{name}"
