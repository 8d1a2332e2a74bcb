import importlib
import inspect
import pkgutil

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


def test_unknown_model_error_names_the_id_and_lists_what_is_available():
    error = errors.UnknownModelError("owner/missing", "offline", ["toyworld/sd-small", "arch/tiny"])
    assert "owner/missing" in str(error) and "offline" in str(error)
    assert "toyworld/sd-small" in str(error) and "arch/tiny" in str(error)
    assert error.available == ["toyworld/sd-small", "arch/tiny"]


def test_a_config_error_names_its_field():
    with pytest.raises(errors.ConfigError) as error:
        GenerationConfig(steps=0)
    assert error.value.field == "steps"
