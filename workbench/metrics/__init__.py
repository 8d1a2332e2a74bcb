"""Quality metrics: a registry of per-image and per-set metrics (``registry``), CLIP score and image
fidelity (``clip``), composition accuracy (``composition``), preference models (``preference``), FID, KID
and CMMD against a reference set (``sets``, ``reference``)."""

from workbench.metrics.clip import DEFAULT_CLIP, CLIPScorer, ClipScores, fidelity
from workbench.metrics.registry import (
    METRICS,
    ImageScorer,
    Metric,
    MetricOptions,
    check_metrics,
    image_metric_names,
    image_scorers,
    metric,
    metric_bounds,
    register_metric,
    set_metric_names,
)

__all__ = [
    "DEFAULT_CLIP",
    "METRICS",
    "CLIPScorer",
    "ClipScores",
    "ImageScorer",
    "Metric",
    "MetricOptions",
    "check_metrics",
    "fidelity",
    "image_metric_names",
    "image_scorers",
    "metric",
    "metric_bounds",
    "register_metric",
    "set_metric_names",
]
