"""Renamed names keep working for one release, each use warning with the name that replaced it."""

import importlib
import sys

import pytest

import workbench

# (module, old name, new name): module attributes renamed so that each word has one meaning.
RENAMED = [
    ("workbench.engine", "WORKER_BACKENDS", "WORKER_POOLS"),
    ("workbench.engine", "WARMUP_STEPS", "BATCH_WARMUP_STEPS"),
    ("workbench.serve.pool", "WARMUP_STEPS", "STEP_PROBE_STEPS"),
    ("workbench.sweeps", "BACKENDS", "POOLS"),
    ("workbench.sweeps", "sweep_backend", "sweep_pool"),
    ("workbench.plan", "run", "run_plan"),
    ("workbench.cli", "SERVE_BACKENDS", "DEPLOYMENTS"),
]


@pytest.mark.parametrize(("module", "old", "new"), RENAMED)
def test_a_renamed_module_attribute_is_the_new_one_and_warns(module, old, new):
    module = importlib.import_module(module)
    with pytest.warns(DeprecationWarning, match=rf"{module.__name__}\.{old} is deprecated; use .*\.{new}"):
        assert getattr(module, old) is getattr(module, new)
    with pytest.raises(AttributeError, match="has no attribute 'nothing_here'"):
        module.nothing_here  # noqa: B018


def test_the_old_public_names_warn_naming_the_new_ones():
    for old, new in workbench._DEPRECATED.items():
        with pytest.warns(DeprecationWarning, match=rf"workbench\.{old} is deprecated; use workbench\.{new}"):
            assert getattr(workbench, old) is getattr(workbench, new)


def test_a_plans_backend_is_its_pipeline_under_the_old_name():
    from workbench.config import GenerationConfig
    from workbench.plan import Plan

    pipe = object()
    with pytest.warns(DeprecationWarning, match=r"Plan\.backend is deprecated; use Plan\.pipeline"):
        assert Plan("m", GenerationConfig(), pipe).backend is pipe


def test_the_ray_deployment_module_under_its_old_name_warns():
    pytest.importorskip("ray")
    sys.modules.pop("workbench.serve.ray_backend", None)
    with pytest.warns(DeprecationWarning, match="use workbench.serve.ray_deployment"):
        old = importlib.import_module("workbench.serve.ray_backend")
    from workbench.serve.ray_deployment import serve_on_ray

    assert old.serve_on_ray is serve_on_ray
