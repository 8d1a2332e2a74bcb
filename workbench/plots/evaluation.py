"""Figures of a model evaluation (seaborn): speed and cost against quality, metrics by category and model, a
prompt's images, the router's confusion."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from PIL import Image

from workbench.plots.grids import image_grid

__all__ = [
    "confusion_heatmap",
    "cost_vs_quality",
    "latency_vs_quality",
    "metric_by_category",
    "metric_heatmap",
    "metrics_against_judge",
    "prompt_drilldown",
]


def _metric_axis(summary: pd.DataFrame, metric: str) -> tuple[pd.Series, list | None, str]:
    """A metric's values in a summary, its error bars (None without a CI) and an axis label."""
    from workbench.errors import ConfigError
    from workbench.evaluation_summary import metric_summary_columns
    from workbench.metrics import METRICS

    value, low, high = metric_summary_columns(metric)
    if value not in summary:
        raise ConfigError(f"the summary has no {metric!r} ({value}); columns: {list(summary.columns)}", "metric")
    y = summary[value].astype(float)
    yerr = [y - summary[low], summary[high] - y] if {low, high} <= set(summary.columns) else None
    better = (
        ""
        if metric not in METRICS
        else " (higher is better)"
        if METRICS[metric].higher_is_better
        else (" (lower is better)")
    )
    return y, yerr, f"{metric}{better}"


def latency_vs_quality(summary: pd.DataFrame, metric: str = "clip_score"):
    """Each model's mean latency against a metric (a per-image metric's mean or a per-set metric's value),
    with its 95% CI as error bars."""
    import matplotlib.pyplot as plt

    y, yerr, label = _metric_axis(summary, metric)
    fig, ax = plt.subplots(figsize=(6, 4))
    if yerr is not None:
        ax.errorbar(summary["latency_mean_s"], y, yerr=yerr, fmt="none", ecolor="grey", capsize=4)
    ax.scatter(summary["latency_mean_s"], y, color="black", zorder=3)
    for x, value, model in zip(summary["latency_mean_s"], y, summary["model_id"], strict=True):
        ax.annotate(model, (x, value), fontsize=7, xytext=(4, 3), textcoords="offset points")
    ax.set(xlabel="mean latency per image (s)", ylabel=f"{label}, 95% CI", title=f"Speed vs {metric}")
    fig.tight_layout()
    return fig


def cost_vs_quality(
    summary: pd.DataFrame, apis: Sequence[str] | None = None, prices=None, ax=None, *, metric: str = "clip_score"
):
    """Each model's dollars per 1,000 images (``usd_per_1000``, log scale) against a metric (default the
    CLIP score), with its 95% CI as error bars where the summary has it; the image APIs (``apis``, default
    all in ``prices``, default the bundled ones) as vertical lines at their price: their quality is not
    measured here."""
    import matplotlib.pyplot as plt

    from workbench.costs import load_prices
    from workbench.errors import ConfigError

    prices = prices or load_prices()
    apis = list(prices.apis) if apis is None else list(apis)
    if unknown := [name for name in apis if name not in prices.apis]:
        raise ConfigError(f"unknown image API(s) {unknown}; known: {', '.join(prices.apis)}", field="apis")
    y, yerr, label = _metric_axis(summary, metric)
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4.5))
    if yerr is not None:
        ax.errorbar(summary["usd_per_1000"], y, yerr=yerr, fmt="none", ecolor="grey", capsize=4)
    ax.scatter(summary["usd_per_1000"], y, color="black", zorder=3)
    for x, value, model in zip(summary["usd_per_1000"], y, summary["model_id"], strict=True):
        ax.annotate(model, (x, value), fontsize=7, xytext=(4, 3), textcoords="offset points")
    at_price: dict[float, list[str]] = {}  # one line per price, naming every API at it
    for name in apis:
        at_price.setdefault(prices.apis[name].usd_per_image * 1000, []).append(name)
    for usd_per_1000, names in at_price.items():
        ax.axvline(usd_per_1000, color="tab:red", linestyle="--", linewidth=1)
        ax.annotate(", ".join(names), (usd_per_1000, 1), xycoords=("data", "axes fraction"), rotation=90, fontsize=7,
                    color="tab:red", xytext=(-3, -3), textcoords="offset points", ha="right", va="top")  # fmt: skip
    ax.set_xscale("log")
    ax.set(xlabel="$ per 1,000 images (log scale)", ylabel=f"{label} (bars: 95% CI)",
           title="Cost vs quality: self-hosted models (points), image APIs (lines)")  # fmt: skip
    return ax


def metric_by_category(results: pd.DataFrame, metric: str = "clip_score"):
    """A per-image metric's mean per prompt category and model (bars with 95% bootstrap CIs)."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    ok = results[results["status"] == "ok"]
    fig, ax = plt.subplots(figsize=(7, 4))
    sns.barplot(data=ok, x="category", y=metric, hue="model_id", errorbar=("ci", 95), ax=ax)
    ax.set(xlabel="prompt category", ylabel=metric, title=f"{metric} by category")
    sns.move_legend(ax, "upper left", bbox_to_anchor=(1, 1))
    ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    return fig


def metrics_against_judge(rungs: pd.DataFrame, metrics: Sequence[str]):
    """One panel per metric: each rung of a validity ladder (``metric_validity.rung_table``) as a point, the
    judge's score (% of images right on every attribute) across, the metric's value up; a metric that can
    be trusted rises (or falls, where lower is better) with the judge."""
    import matplotlib.pyplot as plt

    from workbench.metrics import METRICS

    cols = min(4, len(metrics))
    fig, axes = plt.subplots(-(-len(metrics) // cols), cols, figsize=(3.2 * cols, 2.8 * -(-len(metrics) // cols)),
                             squeeze=False)  # fmt: skip
    for ax, name in zip(axes.flat, metrics, strict=False):
        ax.scatter(rungs["judge"], rungs[name], color="black", s=14)
        better = "" if name not in METRICS else " ↑" if METRICS[name].higher_is_better else " ↓"
        ax.set(title=f"{name}{better}", xlabel="judge: % images right")
    for ax in list(axes.flat)[len(metrics) :]:
        ax.set_visible(False)
    fig.tight_layout()
    return fig


def metric_heatmap(summary: pd.DataFrame, metrics: Sequence[str] | None = None):
    """Metrics (rows) by models (columns): each cell the model's value, coloured by its rank among the models
    on that metric (dark: best, whichever way the metric points), so metrics of any scale share one map."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    from workbench.evaluation_summary import metric_summary_columns
    from workbench.metrics import METRICS

    metrics = [m for m in METRICS if metric_summary_columns(m)[0] in summary] if metrics is None else list(metrics)
    values = pd.DataFrame({m: _metric_axis(summary, m)[0].to_numpy() for m in metrics}, index=summary["model_id"]).T
    flipped = [m for m in metrics if m in METRICS and not METRICS[m].higher_is_better]
    goodness = values.copy()
    goodness.loc[flipped] = -goodness.loc[flipped]
    ranks = goodness.rank(axis=1, pct=True)
    fig, ax = plt.subplots(figsize=(1.6 + 1.5 * len(values.columns), 0.9 + 0.5 * len(values)))
    labels = values.map(lambda v: "" if pd.isna(v) else f"{v:.3g}")
    sns.heatmap(ranks, annot=labels, fmt="", cmap="Greens", cbar=False, linewidths=0.5, ax=ax)
    ax.set_yticklabels([f"{m} {'↓' if m in flipped else '↑'}" for m in values.index], rotation=0)
    ax.set(xlabel="", ylabel="", title="Metrics by model (darker: better among these models)")
    ax.tick_params(axis="x", rotation=20)
    fig.tight_layout()
    return fig


def prompt_drilldown(
    results: pd.DataFrame, root: str | Path, metric: str = "clip_score", *, top: int = 3, scale: int = 4
) -> list[tuple[str, Image.Image]]:
    """The ``top`` prompts on which the models differ most on ``metric``
    (``evaluation_summary.prompt_differences``, seeds averaged), each as (a caption, an image row): every model's
    image of the prompt, for the seed on which they differ most, side by side, with every per-image metric's
    value under it."""
    from workbench.evaluation_summary import image_metrics_in, prompt_differences

    ok = results[results["status"] == "ok"]
    metrics = image_metrics_in(ok)
    parts = []
    for row in prompt_differences(results, metric, top=top).itertuples():
        of_prompt = ok[ok["prompt_id"] == row.prompt_id]
        by_seed = of_prompt.assign(value=pd.to_numeric(of_prompt[metric], errors="coerce")).groupby("seed")["value"]
        seed = int((by_seed.max() - by_seed.min()).fillna(-1).idxmax())  # the seed on which they differ most
        chosen = of_prompt[of_prompt["seed"] == seed]
        images, labels = [], []
        for image in chosen.itertuples():
            with Image.open(Path(root) / image.image_path) as file:
                images.append(file.convert("RGB"))
            values = [f"{m} {getattr(image, m):.3g}" for m in metrics if pd.notna(getattr(image, m))]
            labels.append("\n".join([str(image.model_id).rpartition("/")[2], *values]))
        caption = f"{row.prompt_id}: {row.prompt!r}; {metric} differs by {row.spread:.3g} across models (seed {seed})"
        parts.append((caption, image_grid(images, cols=len(images), scale=scale, labels=labels)))
    return parts


def confusion_heatmap(confusion: pd.DataFrame, title: str = "", ax=None):
    """A confusion matrix (true rows x chosen columns, counts) as a heatmap, each row's share in colour."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    if ax is None:
        _, ax = plt.subplots(figsize=(1.2 * len(confusion.columns) + 2, 0.9 * len(confusion) + 1.5))
    shares = confusion.div(confusion.sum(axis=1).where(lambda n: n > 0, 1), axis=0)
    sns.heatmap(
        shares, annot=confusion, fmt="d", cmap="Blues", vmin=0, vmax=1, cbar_kws={"label": "share of row"}, ax=ax
    )
    ax.set_title(title)
    return ax
