"""Renamed names keep working for one release, each use warning with the name that replaced it."""

import importlib
import re

import pytest

import workbench

# (module, old name, new name): module attributes renamed so that each word has one meaning; a new name with a
# module in it lives there now.
RENAMED = [
    ("workbench.engine", "WORKER_BACKENDS", "WORKER_POOLS"),
    ("workbench.engine", "WARMUP_STEPS", "BATCH_WARMUP_STEPS"),
    ("workbench.serve.pool", "WARMUP_STEPS", "STEP_PROBE_STEPS"),
    ("workbench.sweeps", "BACKENDS", "POOLS"),
    ("workbench.sweeps", "sweep_backend", "sweep_pool"),
    ("workbench.plan", "run", "run_plan"),
    ("workbench.evaluation", "compare_models", "workbench.evaluation_summary.paired_comparisons"),
    ("workbench.evaluation", "model_comparison", "workbench.evaluation_summary.evaluation_report"),
    ("workbench.evaluation", "ModelComparison", "workbench.evaluation_summary.EvaluationReport"),
]
# (module, name, new module): module attributes moved to the module of their concern, under the same name.
MOVED = [
    *[("workbench.evaluation", n, "workbench.latency") for n in ("NOISY_SPREAD", "LOAD_CHANGE", "BUSY")],
    *[("workbench.evaluation", n, "workbench.latency") for n in ("batch_latencies", "latency_summary")],
    ("workbench.evaluation", "priced_gpu", "workbench.costs"),
    *[
        ("workbench.evaluation", name, "workbench.evaluation_summary")
        for name in ("summarize", "image_metrics_in", "metric_summary_columns", "metric_notes", "prompt_differences")
    ],
    *[
        ("workbench.evaluation", name, "workbench.report_tables")
        for name in ("summary_table", "comparisons_table", "metrics_table", "cost_table")
    ],
]


@pytest.mark.parametrize(("module", "old", "new"), RENAMED)
def test_a_renamed_module_attribute_is_the_new_one_and_warns(module, old, new):
    home, _, name = new.rpartition(".")
    new = new if home else f"{module}.{new}"
    module = importlib.import_module(module)
    with pytest.warns(DeprecationWarning, match=rf"{module.__name__}\.{old} is deprecated; use {re.escape(new)}$"):
        assert getattr(module, old) is getattr(importlib.import_module(home) if home else module, name)
    with pytest.raises(AttributeError, match="has no attribute 'nothing_here'"):
        module.nothing_here  # noqa: B018


@pytest.mark.parametrize(("module", "name", "new"), MOVED)
def test_a_moved_module_attribute_is_the_one_of_its_new_module_and_warns(module, name, new):
    with pytest.warns(DeprecationWarning, match=rf"{module}\.{name} is deprecated; use {new}\.{name}$") as caught:
        assert getattr(importlib.import_module(module), name) is getattr(importlib.import_module(new), name)
    assert {w.filename for w in caught} == {__file__}  # blamed on the line that uses the old name
    assert name not in importlib.import_module(module).__all__


def test_the_evaluators_compare_is_its_report_under_the_old_name(tmp_path, monkeypatch):
    from workbench.evaluation import ModelEvaluator

    evaluator = ModelEvaluator(["a red circle"], ["toyworld/sd-small"], [0], output_dir=tmp_path)
    monkeypatch.setattr(evaluator, "report", lambda *args, **kwargs: (args, kwargs))
    with pytest.warns(DeprecationWarning, match=r"ModelEvaluator\.compare is deprecated; use ModelEvaluator\.report"):
        assert evaluator.compare("m", gpu_type="L4", alpha=0.1) == (("m",), {"gpu_type": "L4", "alpha": 0.1})


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
