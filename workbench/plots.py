"""Figures for studies (seaborn) and image grids (PIL)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from PIL import Image, ImageDraw

__all__ = [
    "ab_distributions",
    "ab_image_grid",
    "ab_paired_lines",
    "ab_report",
    "acceleration_images",
    "clip_by_category",
    "confusion_heatmap",
    "cost_vs_quality",
    "image_grid",
    "latency_vs_clip",
    "pareto",
    "results_grid",
]


def image_grid(
    images: Sequence[Image.Image],
    cols: int,
    *,
    scale: int = 1,
    labels: Sequence[str] | None = None,
    pad: int = 2,
) -> Image.Image:
    """Images laid out row by row, ``cols`` per row, each enlarged ``scale`` times (nearest neighbour),
    with an optional small label under each."""
    if not images:
        raise ValueError("image_grid needs at least one image")
    width, height = (side * scale for side in images[0].size)
    label_height = 12 if labels else 0
    rows = -(-len(images) // cols)
    grid = Image.new("RGB", (cols * (width + pad) + pad, rows * (height + label_height + pad) + pad), "white")
    draw = ImageDraw.Draw(grid)
    for i, image in enumerate(images):
        x = pad + (i % cols) * (width + pad)
        y = pad + (i // cols) * (height + label_height + pad)
        grid.paste(image.convert("RGB").resize((width, height), Image.Resampling.NEAREST), (x, y))
        if labels:
            draw.text((x, y + height), labels[i][: max(1, width // 6)], fill="black")
    return grid


def latency_vs_clip(summary: pd.DataFrame):
    """Each model's mean latency against its mean CLIP score, with the score's 95% CI as error bars."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    fig, ax = plt.subplots(figsize=(6, 4))
    sns.scatterplot(data=summary, x="latency_mean_s", y="clip_mean", hue="model_id", s=80, ax=ax)
    sns.move_legend(ax, "upper left", bbox_to_anchor=(1, 1))
    ax.errorbar(
        summary["latency_mean_s"],
        summary["clip_mean"],
        yerr=[summary["clip_mean"] - summary["clip_ci_low"], summary["clip_ci_high"] - summary["clip_mean"]],
        fmt="none",
        ecolor="grey",
        capsize=4,
    )
    ax.set(xlabel="mean latency per image (s)", ylabel="CLIP score (95% CI over prompts)", title="Speed vs quality")
    fig.tight_layout()
    return fig


def cost_vs_quality(summary: pd.DataFrame, apis: Sequence[str] | None = None, prices=None, ax=None):
    """Each model's dollars per 1,000 images (``usd_per_1000``, log scale) against its mean CLIP score, with the
    score's 95% CI as error bars where the summary has it; the image APIs (``apis``, default all in ``prices``,
    default the bundled ones) as vertical lines at their price: their CLIP score is not measured here."""
    import matplotlib.pyplot as plt

    from workbench.costs import load_prices
    from workbench.errors import ConfigError

    prices = prices or load_prices()
    apis = list(prices.apis) if apis is None else list(apis)
    if unknown := [name for name in apis if name not in prices.apis]:
        raise ConfigError(f"unknown image API(s) {unknown}; known: {', '.join(prices.apis)}", field="apis")
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4.5))
    if {"clip_ci_low", "clip_ci_high"} <= set(summary.columns):
        yerr = [summary["clip_mean"] - summary["clip_ci_low"], summary["clip_ci_high"] - summary["clip_mean"]]
        ax.errorbar(summary["usd_per_1000"], summary["clip_mean"], yerr=yerr, fmt="none", ecolor="grey", capsize=4)
    ax.scatter(summary["usd_per_1000"], summary["clip_mean"], color="black", zorder=3)
    for row in summary.itertuples():
        ax.annotate(
            row.model_id, (row.usd_per_1000, row.clip_mean), fontsize=7, xytext=(4, 3), textcoords="offset points"
        )
    at_price: dict[float, list[str]] = {}  # one line per price, naming every API at it
    for name in apis:
        at_price.setdefault(prices.apis[name].usd_per_image * 1000, []).append(name)
    for usd_per_1000, names in at_price.items():
        ax.axvline(usd_per_1000, color="tab:red", linestyle="--", linewidth=1)
        ax.annotate(", ".join(names), (usd_per_1000, 1), xycoords=("data", "axes fraction"), rotation=90, fontsize=7,
                    color="tab:red", xytext=(-3, -3), textcoords="offset points", ha="right", va="top")  # fmt: skip
    ax.set_xscale("log")
    ax.set(xlabel="$ per 1,000 images (log scale)", ylabel="mean CLIP score (bars: 95% CI)",
           title="Cost vs quality: self-hosted models (points), image APIs (lines)")  # fmt: skip
    return ax


def clip_by_category(results: pd.DataFrame):
    """Mean CLIP score per prompt category and model (bars with 95% bootstrap CIs)."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    ok = results[results["status"] == "ok"]
    fig, ax = plt.subplots(figsize=(7, 4))
    sns.barplot(data=ok, x="category", y="clip_score", hue="model_id", errorbar=("ci", 95), ax=ax)
    ax.set(xlabel="prompt category", ylabel="CLIP score", title="CLIP score by category")
    sns.move_legend(ax, "upper left", bbox_to_anchor=(1, 1))
    ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    return fig


def results_grid(results: pd.DataFrame, root: str | Path, seed: int | None = None, max_prompts: int = 8) -> Image.Image:
    """Prompts (rows) x models (columns) for one seed, read from the saved images under ``root``; each
    image is labelled with its prompt id and model."""
    ok = results[results["status"] == "ok"]
    seed = int(ok["seed"].min()) if seed is None else seed
    chosen = ok[ok["seed"] == seed]
    models = list(dict.fromkeys(chosen["model_id"]))
    prompt_ids = list(dict.fromkeys(chosen["prompt_id"]))[:max_prompts]
    images, labels = [], []
    by_key = {(r.prompt_id, r.model_id): r.image_path for r in chosen.itertuples()}
    for prompt_id in prompt_ids:
        for model_id in models:
            path = by_key.get((prompt_id, model_id))
            images.append(Image.open(Path(root) / path).convert("RGB") if path else Image.new("RGB", (32, 32)))
            labels.append(f"{prompt_id} {model_id.split('/')[-1]}")
    scale = max(1, 96 // images[0].width)
    return image_grid(images, cols=len(models), scale=scale, labels=labels)


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


def _per_prompt(result) -> pd.DataFrame:
    return result.rows.groupby(["arm", "prompt_id"], sort=False)["clip_score"].mean().reset_index()


def ab_distributions(result, ax=None):
    """Per arm: each prompt's CLIP score (seeds averaged) as dots, the mean with its 95% bootstrap CI."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    per_prompt = _per_prompt(result)
    if ax is None:
        _, ax = plt.subplots(figsize=(1.6 * per_prompt["arm"].nunique() + 2.5, 4))
    sns.stripplot(data=per_prompt, x="arm", y="clip_score", alpha=0.35, color="grey", ax=ax)
    sns.pointplot(
        data=per_prompt,
        x="arm",
        y="clip_score",
        errorbar=("ci", 95),
        color="black",
        linestyle="none",
        capsize=0.2,
        ax=ax,
    )
    ax.set(xlabel="arm", ylabel="CLIP score (per prompt, seeds averaged)", title="CLIP score per arm, mean and 95% CI")
    return ax


def ab_paired_lines(result, ax=None):
    """One line per prompt across the arms (control first): the paired design made visible."""
    import matplotlib.pyplot as plt

    per_prompt = _per_prompt(result).pivot(index="prompt_id", columns="arm", values="clip_score")
    order = [result.control] + [a for a in per_prompt.columns if a != result.control]
    per_prompt = per_prompt[order]
    if ax is None:
        _, ax = plt.subplots(figsize=(1.6 * len(order) + 2.5, 4))
    for _, values in per_prompt.iterrows():
        ax.plot(range(len(order)), values.to_numpy(), color="grey", alpha=0.4, marker="o", markersize=3)
    ax.plot(range(len(order)), per_prompt.mean().to_numpy(), color="black", marker="o", linewidth=2.5, label="mean")
    ax.set_xticks(range(len(order)), order)
    ax.set(xlabel="arm", ylabel="CLIP score (seeds averaged)", title="Paired: each line is one prompt")
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


_AB_VERDICT_NOTE = (
    "Each arm against the control: the mean paired difference over prompts (seeds averaged within a prompt first) "
    "with a 95% bootstrap CI, the Wilcoxon signed-rank p-value (Holm-adjusted across arms), and the win rate."
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
        Markdown(f"## Verdict\n\n{_AB_VERDICT_NOTE}"),
        Pretty(result.verdict),
        result.comparisons.style.format(precision=3).hide(axis="index"),
        result.summary.style.format(precision=2).hide(axis="index"),
        Markdown("## Per-arm CLIP scores, and the same prompts across arms"),
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


def pareto(table: pd.DataFrame, x: str = "speedup_total", y: str = "ssim", ax=None):
    """Each config as a labelled point (x: speed-up, higher is better; y: fidelity, higher is better),
    with the Pareto front (the configs no other beats on both) drawn as a line."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4.5))
    points = table[["config", x, y]].dropna()
    front = points.sort_values(x, ascending=False)
    front = front[front[y] >= front[y].cummax()]  # keep what no faster config beats on fidelity
    ax.scatter(points[x], points[y], color="grey")
    ax.plot(front[x], front[y], color="black", marker="o", label="Pareto front")
    for row in points.itertuples():
        ax.annotate(
            row.config, (getattr(row, x), getattr(row, y)), fontsize=7, xytext=(4, 3), textcoords="offset points"
        )
    ax.set(xlabel=x.replace("_", " "), ylabel=y.replace("_", " "), title="Speed against fidelity (vs the baseline)")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1))
    return ax


def acceleration_images(benchmark, prompt: str | None = None, seed: int | None = None, *, scale: int = 3):
    """The baseline image and each config's image of the same prompt and seed, side by side."""
    keys = list(benchmark.images)
    prompt = prompt if prompt is not None else keys[0][1]
    seed = seed if seed is not None else keys[0][2]
    labels = list(benchmark.table["config"])
    return image_grid([benchmark.images[(label, prompt, seed)] for label in labels], cols=min(6, len(labels)),
                      scale=scale, labels=[label[:28] for label in labels])  # fmt: skip
