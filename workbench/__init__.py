"""t2i-workbench: evaluate, route, optimize, A/B test, accelerate and serve text-to-image diffusion models.

The public names below are imported on first use (``wb.Router`` imports ``workbench.routing`` then), so that
``import workbench`` and the ``workbench`` command start in a fraction of a second: the evaluation, plotting and
diffusion modules bring in torch, diffusers, scipy and matplotlib, which most commands never need.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING

from workbench.resources import package_version

if TYPE_CHECKING:  # for type checkers and editors; at run time, __getattr__ imports each name when first used
    from workbench import metric_validity, plots
    from workbench.abtest import ABTestResult, PromptABTester
    from workbench.acceleration_benchmark import AccelerationBenchmark, benchmark_acceleration, standard_configs
    from workbench.architectures import architecture_parameters
    from workbench.backends import ImageBackend
    from workbench.client import RemoteModel
    from workbench.config import ROUTED, SCHEDULERS, AccelerationConfig, GenerationConfig, RouteSpec
    from workbench.errors import (
        ConfigError,
        GenerationCancelled,
        ImageMetadataError,
        NotebookRunError,
        RemoteError,
        UnknownModelError,
        WorkbenchError,
    )
    from workbench.evaluation import (
        ModelComparison,
        ModelEvaluator,
        compare_models,
        comparisons_table,
        cost_table,
        metrics_table,
        model_comparison,
        prompt_differences,
        summarize,
        summary_table,
    )
    from workbench.flops import image_flops, share_of_peak
    from workbench.generation import (
        ReproduceResult,
        accelerate,
        calibrate_mag_ratios,
        generate,
        read_settings,
        reproduce,
        reproduction_code,
        save_image,
    )
    from workbench.metrics import METRICS, CLIPScorer, Metric, MetricOptions, fidelity, register_metric
    from workbench.models import ModelLoader, PipelineCache, available_models, load, register_loader
    from workbench.plan import Plan, resolve, run
    from workbench.plots import image_grid
    from workbench.prompts import (
        OptimizedPrompt,
        PromptOptimizer,
        StylePreset,
        expand_template,
        load_prompts,
        load_styles,
    )
    from workbench.records import GenerationRecord
    from workbench.routing import (
        Classifier,
        EmbeddingClassifier,
        KeywordClassifier,
        Router,
        RouteTable,
        RoutingDecision,
        labelled_prompts,
        model_targets,
        routing_latency,
        score_routing,
    )
    from workbench.run_folder import ResultStore, Row, RunFolder, read_summary, save_study_results
    from workbench.studies import StudyRun, run_study
    from workbench.verbosity import set_verbosity

__version__ = package_version()

# Where each public name lives (a module of the package: the module itself).
_EXPORTS: dict[str, str] = {
    **dict.fromkeys(["metric_validity", "plots"], ""),
    **dict.fromkeys(["ABTestResult", "PromptABTester"], "abtest"),
    **dict.fromkeys(["image_flops", "share_of_peak"], "flops"),
    **dict.fromkeys(["AccelerationBenchmark", "benchmark_acceleration", "standard_configs"], "acceleration_benchmark"),
    "architecture_parameters": "architectures",
    "ImageBackend": "backends",
    "RemoteModel": "client",
    **dict.fromkeys(["ROUTED", "SCHEDULERS", "AccelerationConfig", "GenerationConfig", "RouteSpec"], "config"),
    **dict.fromkeys(
        [
            "ConfigError",
            "GenerationCancelled",
            "ImageMetadataError",
            "NotebookRunError",
            "RemoteError",
            "UnknownModelError",
            "WorkbenchError",
        ],
        "errors",
    ),
    **dict.fromkeys(
        [
            "ModelComparison",
            "ModelEvaluator",
            "compare_models",
            "comparisons_table",
            "cost_table",
            "metrics_table",
            "model_comparison",
            "prompt_differences",
            "summarize",
            "summary_table",
        ],
        "evaluation",
    ),
    **dict.fromkeys(
        [
            "ReproduceResult",
            "accelerate",
            "calibrate_mag_ratios",
            "generate",
            "read_settings",
            "reproduce",
            "reproduction_code",
            "save_image",
        ],
        "generation",
    ),
    **dict.fromkeys(["METRICS", "CLIPScorer", "Metric", "MetricOptions", "fidelity", "register_metric"], "metrics"),
    **dict.fromkeys(["ModelLoader", "PipelineCache", "available_models", "load", "register_loader"], "models"),
    **dict.fromkeys(["Plan", "resolve", "run"], "plan"),
    "image_grid": "plots",
    **dict.fromkeys(
        ["OptimizedPrompt", "PromptOptimizer", "StylePreset", "expand_template", "load_prompts", "load_styles"],
        "prompts",
    ),
    "GenerationRecord": "records",
    **dict.fromkeys(["ResultStore", "Row", "RunFolder"], "run_folder"),
    **dict.fromkeys(
        [
            "Classifier",
            "EmbeddingClassifier",
            "KeywordClassifier",
            "Router",
            "RouteTable",
            "RoutingDecision",
            "labelled_prompts",
            "model_targets",
            "routing_latency",
            "score_routing",
        ],
        "routing",
    ),
    **dict.fromkeys(["read_summary", "save_study_results"], "run_folder"),
    **dict.fromkeys(["StudyRun", "run_study"], "studies"),
    "set_verbosity": "verbosity",
}


def __getattr__(name: str):
    """A public name, imported from its module when first asked for (then kept here); any other submodule of
    the package by its name, as once ``import workbench`` imported them all (``workbench.evaluation``)."""
    if name in _EXPORTS:
        module = importlib.import_module(f"workbench.{_EXPORTS[name] or name}")
        value = module if not _EXPORTS[name] else getattr(module, name)
    elif not name.startswith("_") and importlib.util.find_spec(f"workbench.{name}") is not None:
        value = importlib.import_module(f"workbench.{name}")
    else:
        raise AttributeError(f"module 'workbench' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = [
    "METRICS",
    "ROUTED",
    "SCHEDULERS",
    "ABTestResult",
    "AccelerationBenchmark",
    "AccelerationConfig",
    "CLIPScorer",
    "Classifier",
    "ConfigError",
    "EmbeddingClassifier",
    "GenerationCancelled",
    "GenerationConfig",
    "GenerationRecord",
    "ImageBackend",
    "ImageMetadataError",
    "KeywordClassifier",
    "Metric",
    "MetricOptions",
    "ModelComparison",
    "ModelEvaluator",
    "ModelLoader",
    "NotebookRunError",
    "OptimizedPrompt",
    "PipelineCache",
    "Plan",
    "PromptABTester",
    "PromptOptimizer",
    "RemoteError",
    "RemoteModel",
    "ReproduceResult",
    "ResultStore",
    "RouteSpec",
    "RouteTable",
    "Router",
    "RoutingDecision",
    "Row",
    "RunFolder",
    "StudyRun",
    "StylePreset",
    "UnknownModelError",
    "WorkbenchError",
    "__version__",
    "accelerate",
    "architecture_parameters",
    "available_models",
    "benchmark_acceleration",
    "calibrate_mag_ratios",
    "compare_models",
    "comparisons_table",
    "cost_table",
    "expand_template",
    "fidelity",
    "generate",
    "image_flops",
    "image_grid",
    "labelled_prompts",
    "load",
    "load_prompts",
    "load_styles",
    "metric_validity",
    "metrics_table",
    "model_comparison",
    "model_targets",
    "plots",
    "prompt_differences",
    "read_settings",
    "read_summary",
    "register_loader",
    "register_metric",
    "reproduce",
    "reproduction_code",
    "resolve",
    "routing_latency",
    "run",
    "run_study",
    "save_image",
    "save_study_results",
    "score_routing",
    "set_verbosity",
    "share_of_peak",
    "standard_configs",
    "summarize",
    "summary_table",
]
