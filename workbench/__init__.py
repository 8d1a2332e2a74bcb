"""t2i-workbench: evaluate, route, optimize, A/B test, accelerate and serve text-to-image diffusion models."""

from workbench import metric_validity, plots
from workbench.abtest import ABTestResult, PromptABTester
from workbench.acceleration import image_flops, share_of_peak
from workbench.acceleration_benchmark import AccelerationBenchmark, benchmark_acceleration
from workbench.backends import ImageBackend
from workbench.client import RemoteModel
from workbench.config import SCHEDULERS, AccelerationConfig, GenerationConfig, RouteSpec
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
from workbench.generation import (
    ReproduceResult,
    accelerate,
    generate,
    read_settings,
    reproduce,
    reproduction_code,
    save_image,
)
from workbench.metrics import METRICS, CLIPScorer, Metric, MetricOptions, fidelity, register_metric
from workbench.models import ModelLoader, PipelineCache, available_models, load, register_loader
from workbench.plan import ROUTED, Plan, resolve, run
from workbench.plots import image_grid
from workbench.prompts import OptimizedPrompt, PromptOptimizer, StylePreset, expand_template, load_prompts, load_styles
from workbench.records import GenerationRecord
from workbench.resources import package_version
from workbench.results import ResultStore
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
from workbench.run_files import read_summary, save_study_results
from workbench.studies import StudyRun, run_study

__version__ = package_version()

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
    "StudyRun",
    "StylePreset",
    "UnknownModelError",
    "WorkbenchError",
    "__version__",
    "accelerate",
    "available_models",
    "benchmark_acceleration",
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
    "share_of_peak",
    "summarize",
    "summary_table",
]
