"""Figures for studies (seaborn) and image grids (PIL): ``wb.plots.<name>``, each from the module of its study."""

from workbench.plots.abtest import ab_distributions, ab_image_grid, ab_paired_lines, ab_report
from workbench.plots.acceleration import acceleration_images, acceleration_table, pareto
from workbench.plots.evaluation import (
    confusion_heatmap,
    cost_vs_quality,
    latency_vs_quality,
    metric_by_category,
    metric_heatmap,
    metrics_against_judge,
    prompt_drilldown,
)
from workbench.plots.grids import image_grid, results_grid
from workbench.plots.ratings import disputed_pairs, strength_plot, win_rate_heatmap

__all__ = [
    "ab_distributions",
    "ab_image_grid",
    "ab_paired_lines",
    "ab_report",
    "acceleration_images",
    "acceleration_table",
    "confusion_heatmap",
    "cost_vs_quality",
    "disputed_pairs",
    "image_grid",
    "latency_vs_quality",
    "metric_by_category",
    "metric_heatmap",
    "metrics_against_judge",
    "pareto",
    "prompt_drilldown",
    "results_grid",
    "strength_plot",
    "win_rate_heatmap",
]
