"""t2i-workbench: evaluate, route, optimize, A/B test, accelerate and serve text-to-image diffusion models."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("t2i-workbench")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"

from workbench import plots
from workbench.abtest import ABTestResult, PromptABTester
from workbench.acceleration import AccelerationBenchmark, accelerate, benchmark_acceleration, image_flops, share_of_peak
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
from workbench.evaluation import ROUTED, ModelEvaluator, ResultStore, summarize, summary_table
from workbench.generation import (
    GenerationRecord,
    ReproduceResult,
    generate,
    read_settings,
    reproduce,
    reproduction_code,
    save_image,
)
from workbench.metrics import CLIPScorer, fidelity
from workbench.models import PipelineCache, available_models, load
from workbench.plots import image_grid
from workbench.prompts import OptimizedPrompt, PromptOptimizer, StylePreset, expand_template, load_prompts, load_styles
from workbench.routing import (
    EmbeddingClassifier,
    KeywordClassifier,
    Router,
    RouteTable,
    RoutingDecision,
    labelled_prompts,
    routing_latency,
    score_routing,
)
from workbench.serve.remote import RemoteModel
from workbench.studies import StudyRun, run_study, save_study_results

__all__ = [
    "ROUTED",
    "SCHEDULERS",
    "ABTestResult",
    "AccelerationBenchmark",
    "AccelerationConfig",
    "CLIPScorer",
    "ConfigError",
    "EmbeddingClassifier",
    "GenerationCancelled",
    "GenerationConfig",
    "GenerationRecord",
    "ImageMetadataError",
    "KeywordClassifier",
    "ModelEvaluator",
    "NotebookRunError",
    "OptimizedPrompt",
    "PipelineCache",
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
    "expand_template",
    "fidelity",
    "generate",
    "image_flops",
    "image_grid",
    "labelled_prompts",
    "load",
    "load_prompts",
    "load_styles",
    "plots",
    "read_settings",
    "reproduce",
    "reproduction_code",
    "routing_latency",
    "run_study",
    "save_image",
    "save_study_results",
    "score_routing",
    "share_of_peak",
    "summarize",
    "summary_table",
]
