"""Figures of an A/B test of prompt variations: the arms' score distributions, paired lines per prompt,
image grids and the report."""

from __future__ import annotations

import pandas as pd
from PIL import Image

from workbench.plots.grids import image_grid

__all__ = ["ab_distributions", "ab_image_grid", "ab_paired_lines", "ab_report"]


def _per_prompt(result) -> pd.DataFrame:
    return result.rows.groupby(["arm", "prompt_id"], sort=False)[result.metric].mean().reset_index()


def ab_distributions(result, ax=None):
    """Per arm: each prompt's score on the test's metric (seeds averaged) as dots, the mean with the interval
    the comparisons use (``stats.mean_ci``)."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    from workbench.stats import describe_interval, mean_ci

    per_prompt = _per_prompt(result)
    if ax is None:
        _, ax = plt.subplots(figsize=(1.6 * per_prompt["arm"].nunique() + 2.5, 4))
    sns.stripplot(data=per_prompt, x="arm", y=result.metric, alpha=0.35, color="grey", ax=ax)
    sns.pointplot(
        data=per_prompt,
        x="arm",
        y=result.metric,
        errorbar=lambda values: mean_ci(values),
        color="black",
        linestyle="none",
        capsize=0.2,
        ax=ax,
    )
    ax.set(xlabel="arm", ylabel=f"{result.metric} (per prompt, seeds averaged)",
           title=f"{result.metric} per arm: mean, {describe_interval()}")  # fmt: skip
    return ax


def ab_paired_lines(result, ax=None):
    """One line per prompt across the arms (control first): the paired design made visible."""
    import matplotlib.pyplot as plt

    per_prompt = _per_prompt(result).pivot(index="prompt_id", columns="arm", values=result.metric)
    order = [result.control] + [a for a in per_prompt.columns if a != result.control]
    per_prompt = per_prompt[order]
    if ax is None:
        _, ax = plt.subplots(figsize=(1.6 * len(order) + 2.5, 4))
    for _, values in per_prompt.iterrows():
        ax.plot(range(len(order)), values.to_numpy(), color="grey", alpha=0.4, marker="o", markersize=3)
    ax.plot(range(len(order)), per_prompt.mean().to_numpy(), color="black", marker="o", linewidth=2.5, label="mean")
    ax.set_xticks(range(len(order)), order)
    ax.set(xlabel="arm", ylabel=f"{result.metric} (seeds averaged)", title="Paired: each line is one prompt")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1))
    return ax


def ab_image_grid(result, prompt_id: str | None = None, *, scale: int = 2) -> Image.Image:
    """For one base prompt (the first by default): arms in rows, the shared seeds in columns."""
    prompt_id = prompt_id or result.rows["prompt_id"].iloc[0]
    arms = list(dict.fromkeys(result.rows["arm"]))
    seeds = list(dict.fromkeys(result.rows["pair_seed"]))
    images = [result.images[(arm, prompt_id, seed)] for arm in arms for seed in seeds]
    labels = [f"{arm} s{seed}" for arm in arms for seed in seeds]
    return image_grid(images, cols=len(seeds), scale=scale, labels=labels)


def _ab_verdict_note(metric: str) -> str:
    """What the A/B verdict on ``metric`` reports, naming the interval ``stats`` computes for its comparisons."""
    from workbench.metrics import metric_bounds
    from workbench.stats import describe_interval

    return (
        "Each arm against the control: the mean paired difference over prompts (seeds averaged within a prompt "
        f"first) with a {describe_interval(bounded=bool(metric_bounds([metric])))}, the Wilcoxon signed-rank "
        "p-value (Holm-adjusted across arms), and the win rate."
    )


def ab_report(result, *, n_prompts: int = 3, show=None) -> list:
    """An A/B result as the studies show it, each part under a heading: the verdict with the comparison and
    summary tables; the per-arm distributions beside the paired lines; and, for the first ``n_prompts`` base
    prompts, the prompt and its image grid (arms in rows, seeds in columns). Each part goes to ``show``
    (IPython's ``display`` by default) in that order, and the parts are returned."""
    import matplotlib.pyplot as plt
    from IPython.display import Markdown, Pretty

    if show is None:
        from IPython.display import display as show
    parts: list = [
        Markdown(f"## Verdict\n\n{_ab_verdict_note(result.metric)}"),
        Pretty(result.verdict),
        result.comparisons.style.format(precision=3).hide(axis="index"),
        result.summary.style.format(precision=2).hide(axis="index"),
        Markdown(f"## Per-arm {result.metric}, and the same prompts across arms"),
    ]
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.2))
    ab_distributions(result, ax=axes[0])
    ab_paired_lines(result, ax=axes[1])
    fig.tight_layout()
    plt.close(fig)  # shown once, here, not again by the notebook's inline backend
    parts += [fig, Markdown("## Images: arms (rows) × seeds (columns), for the first prompts")]
    for prompt_id in result.rows["prompt_id"].unique()[:n_prompts]:
        base = result.rows.loc[result.rows["prompt_id"] == prompt_id, "base_prompt"].iloc[0]
        parts += [Pretty(base), ab_image_grid(result, prompt_id)]
    for part in parts:
        show(part)
    return parts
