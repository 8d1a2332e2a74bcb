"""t2i-workbench: evaluate, route, optimize, A/B test, accelerate and serve text-to-image diffusion models."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("t2i-workbench")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0"

from workbench.config import SCHEDULERS, GenerationConfig
from workbench.errors import (
    ConfigError,
    GenerationCancelled,
    ImageMetadataError,
    UnknownModelError,
    WorkbenchError,
)
from workbench.generation import GenerationRecord, ReproduceResult, generate, read_settings, reproduce, save_image
from workbench.models import PipelineCache, available_models, load
from workbench.plots import image_grid

__all__ = [
    "SCHEDULERS",
    "ConfigError",
    "GenerationCancelled",
    "GenerationConfig",
    "GenerationRecord",
    "ImageMetadataError",
    "PipelineCache",
    "ReproduceResult",
    "UnknownModelError",
    "WorkbenchError",
    "__version__",
    "available_models",
    "generate",
    "image_grid",
    "load",
    "read_settings",
    "reproduce",
    "save_image",
]
