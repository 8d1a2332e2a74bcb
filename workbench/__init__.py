"""t2i-workbench: evaluate, route, optimize, A/B test, accelerate and serve text-to-image diffusion models.

The public names below are imported on first use (``wb.Router`` imports ``workbench.routing`` then), so that
``import workbench`` and the ``workbench`` command start in a fraction of a second: the evaluation, plotting and
diffusion modules bring in torch, diffusers, scipy and matplotlib, which most commands never need.

``_EXPORTS`` declares the public API, each name with its module; ``__all__`` and ``__getattr__`` follow from it.
A new name is a line there and its import in the ``TYPE_CHECKING`` block (tests/test_exported_members.py checks
that the two agree). A renamed name keeps its old one in ``_DEPRECATED`` (old -> new), which warns when used.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import TYPE_CHECKING

from workbench.deprecation import renamed
from workbench.resources import package_version

# For type checkers and editors, a line per name of _EXPORTS ("import X as X" marks a re-export: type checkers
# cannot read the __all__ built below). At run time, __getattr__ imports each name when first used.
if TYPE_CHECKING:
    from workbench import metric_validity as metric_validity
    from workbench import plots as plots
    from workbench.abtest import ABTestResult as ABTestResult
    from workbench.abtest import PromptABTester as PromptABTester
    from workbench.acceleration_benchmark import AccelerationBenchmark as AccelerationBenchmark
    from workbench.acceleration_benchmark import benchmark_acceleration as benchmark_acceleration
    from workbench.acceleration_benchmark import standard_configs as standard_configs
    from workbench.architectures import architecture_parameters as architecture_parameters
    from workbench.backends import ImageBackend as ImageBackend
    from workbench.client import RemoteModel as RemoteModel
    from workbench.config import ROUTED as ROUTED
    from workbench.config import SCHEDULERS as SCHEDULERS
    from workbench.config import AccelerationConfig as AccelerationConfig
    from workbench.config import GenerationConfig as GenerationConfig
    from workbench.config import RouteSpec as RouteSpec
    from workbench.errors import ConfigError as ConfigError
    from workbench.errors import GenerationCancelled as GenerationCancelled
    from workbench.errors import ImageMetadataError as ImageMetadataError
    from workbench.errors import NotebookRunError as NotebookRunError
    from workbench.errors import RemoteError as RemoteError
    from workbench.errors import UnknownModelError as UnknownModelError
    from workbench.errors import WorkbenchError as WorkbenchError
    from workbench.evaluation import ModelEvaluator as ModelEvaluator
    from workbench.evaluation_summary import EvaluationReport as EvaluationReport
    from workbench.evaluation_summary import evaluation_report as evaluation_report
    from workbench.evaluation_summary import paired_comparisons as paired_comparisons
    from workbench.evaluation_summary import prompt_differences as prompt_differences
    from workbench.evaluation_summary import summarize as summarize
    from workbench.flops import image_flops as image_flops
    from workbench.flops import share_of_peak as share_of_peak
    from workbench.generation import ReproduceResult as ReproduceResult
    from workbench.generation import accelerate as accelerate
    from workbench.generation import calibrate_mag_ratios as calibrate_mag_ratios
    from workbench.generation import generate as generate
    from workbench.generation import read_settings as read_settings
    from workbench.generation import reproduce as reproduce
    from workbench.generation import reproduction_code as reproduction_code
    from workbench.generation import save_image as save_image
    from workbench.metrics import METRICS as METRICS
    from workbench.metrics import CLIPScorer as CLIPScorer
    from workbench.metrics import Metric as Metric
    from workbench.metrics import MetricOptions as MetricOptions
    from workbench.metrics import fidelity as fidelity
    from workbench.metrics import register_metric as register_metric
    from workbench.models import ModelLoader as ModelLoader
    from workbench.models import PipelineCache as PipelineCache
    from workbench.models import available_models as available_models
    from workbench.models import load as load
    from workbench.models import register_loader as register_loader
    from workbench.plan import Plan as Plan
    from workbench.plan import resolve as resolve
    from workbench.plan import run_plan as run_plan
    from workbench.plots import image_grid as image_grid
    from workbench.prompts import OptimizedPrompt as OptimizedPrompt
    from workbench.prompts import PromptOptimizer as PromptOptimizer
    from workbench.prompts import StylePreset as StylePreset
    from workbench.prompts import expand_template as expand_template
    from workbench.prompts import load_prompts as load_prompts
    from workbench.prompts import load_styles as load_styles
    from workbench.ratings import RatingTask as RatingTask
    from workbench.ratings import analyze_ratings as analyze_ratings
    from workbench.ratings import people_preference as people_preference
    from workbench.ratings import rating_task as rating_task
    from workbench.records import GenerationRecord as GenerationRecord
    from workbench.report_tables import comparisons_table as comparisons_table
    from workbench.report_tables import cost_table as cost_table
    from workbench.report_tables import metrics_table as metrics_table
    from workbench.report_tables import summary_table as summary_table
    from workbench.routing import Classifier as Classifier
    from workbench.routing import EmbeddingClassifier as EmbeddingClassifier
    from workbench.routing import KeywordClassifier as KeywordClassifier
    from workbench.routing import Router as Router
    from workbench.routing import RouteTable as RouteTable
    from workbench.routing import RoutingDecision as RoutingDecision
    from workbench.routing import labelled_prompts as labelled_prompts
    from workbench.routing import model_targets as model_targets
    from workbench.routing import routing_latency as routing_latency
    from workbench.routing import score_routing as score_routing
    from workbench.row import Row as Row
    from workbench.run_folder import ResultStore as ResultStore
    from workbench.run_folder import RunFolder as RunFolder
    from workbench.run_folder import read_summary as read_summary
    from workbench.run_folder import save_study_results as save_study_results
    from workbench.studies import StudyRun as StudyRun
    from workbench.studies import run_study as run_study
    from workbench.verbosity import set_verbosity as set_verbosity
    from workbench.widgets import RatingPanel as RatingPanel

__version__ = package_version()

# Each public name and the module of the package it lives in ("": the name is a submodule, exported itself).
_EXPORTS: dict[str, str] = {
    "metric_validity": "",
    "plots": "",
    "ABTestResult": "abtest",
    "PromptABTester": "abtest",
    "AccelerationBenchmark": "acceleration_benchmark",
    "benchmark_acceleration": "acceleration_benchmark",
    "standard_configs": "acceleration_benchmark",
    "architecture_parameters": "architectures",
    "ImageBackend": "backends",
    "RemoteModel": "client",
    "ROUTED": "config",
    "SCHEDULERS": "config",
    "AccelerationConfig": "config",
    "GenerationConfig": "config",
    "RouteSpec": "config",
    "ConfigError": "errors",
    "GenerationCancelled": "errors",
    "ImageMetadataError": "errors",
    "NotebookRunError": "errors",
    "RemoteError": "errors",
    "UnknownModelError": "errors",
    "WorkbenchError": "errors",
    "ModelEvaluator": "evaluation",
    "EvaluationReport": "evaluation_summary",
    "evaluation_report": "evaluation_summary",
    "paired_comparisons": "evaluation_summary",
    "prompt_differences": "evaluation_summary",
    "summarize": "evaluation_summary",
    "image_flops": "flops",
    "share_of_peak": "flops",
    "ReproduceResult": "generation",
    "accelerate": "generation",
    "calibrate_mag_ratios": "generation",
    "generate": "generation",
    "read_settings": "generation",
    "reproduce": "generation",
    "reproduction_code": "generation",
    "save_image": "generation",
    "METRICS": "metrics",
    "CLIPScorer": "metrics",
    "Metric": "metrics",
    "MetricOptions": "metrics",
    "fidelity": "metrics",
    "register_metric": "metrics",
    "ModelLoader": "models",
    "PipelineCache": "models",
    "available_models": "models",
    "load": "models",
    "register_loader": "models",
    "Plan": "plan",
    "resolve": "plan",
    "run_plan": "plan",
    "image_grid": "plots",
    "OptimizedPrompt": "prompts",
    "PromptOptimizer": "prompts",
    "StylePreset": "prompts",
    "expand_template": "prompts",
    "load_prompts": "prompts",
    "load_styles": "prompts",
    "RatingTask": "ratings",
    "RatingPanel": "widgets",
    "analyze_ratings": "ratings",
    "people_preference": "ratings",
    "rating_task": "ratings",
    "GenerationRecord": "records",
    "comparisons_table": "report_tables",
    "cost_table": "report_tables",
    "metrics_table": "report_tables",
    "summary_table": "report_tables",
    "Classifier": "routing",
    "EmbeddingClassifier": "routing",
    "KeywordClassifier": "routing",
    "Router": "routing",
    "RouteTable": "routing",
    "RoutingDecision": "routing",
    "labelled_prompts": "routing",
    "model_targets": "routing",
    "routing_latency": "routing",
    "score_routing": "routing",
    "ResultStore": "run_folder",
    "Row": "row",
    "RunFolder": "run_folder",
    "read_summary": "run_folder",
    "save_study_results": "run_folder",
    "StudyRun": "studies",
    "run_study": "studies",
    "set_verbosity": "verbosity",
}

# Old names that still work, each with the public name that replaced it; using one warns. Not in __all__.
_DEPRECATED: dict[str, str] = {
    "run": "run_plan",
    "ModelComparison": "EvaluationReport",
    "compare_models": "paired_comparisons",
    "model_comparison": "evaluation_report",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    """A public name, imported from its module when first asked for (then kept here); a deprecated name, with a
    warning naming its replacement; any other submodule of the package by its name, as once ``import
    workbench`` imported them all (``workbench.evaluation``)."""
    if name in _DEPRECATED:
        new = _DEPRECATED[name]
        renamed(f"workbench.{name}", f"workbench.{new}")
        return globals()[new] if new in globals() else __getattr__(new)
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
