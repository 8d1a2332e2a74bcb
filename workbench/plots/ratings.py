"""Figures of a human evaluation: strengths with their intervals, the win-rate matrix, and the pairs people
disagreed on most."""

from __future__ import annotations

import pandas as pd
from PIL import Image

from workbench.plots.grids import image_grid

__all__ = ["disputed_pairs", "strength_plot", "win_rate_heatmap"]


def strength_plot(strengths: pd.DataFrame, title: str = "", ax=None):
    """Each target's strength (Davidson's Bradley-Terry, log scale) with its interval, strongest at the top, and
    its rank."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(7, 0.5 * len(strengths) + 1.5))
    rows = strengths.iloc[::-1]
    below = (rows["strength"] - rows["ci_low"]).clip(lower=0).fillna(0)  # a percentile interval may miss the point
    above = (rows["ci_high"] - rows["strength"]).clip(lower=0).fillna(0)
    ax.errorbar(rows["strength"], range(len(rows)), xerr=[below, above], fmt="o", color="black", capsize=3)
    ax.set_yticks(range(len(rows)), [f"{r.rank}. {r.target}" for r in rows.itertuples()])
    ax.axvline(0, color="grey", linewidth=0.5)
    ax.set(xlabel="strength (log odds scale, mean 0) with its 95% interval", title=title)
    return ax


def win_rate_heatmap(win_rates: pd.DataFrame, title: str = "", ax=None):
    """How often each target (row) beat each other (column), ties counted half."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    matrix = win_rates.pivot(index="target", columns="opponent", values="win_rate")
    if ax is None:
        _, ax = plt.subplots(figsize=(1.2 * len(matrix) + 3, 0.9 * len(matrix) + 2))
    sns.heatmap(matrix, annot=True, fmt=".2f", vmin=0, vmax=1, cmap="vlag", cbar=False, ax=ax)
    ax.set(xlabel="against", ylabel="", title=title or "win rate (row beats column; ties count half)")
    return ax


def disputed_pairs(task, outcomes: pd.DataFrame, n: int = 4, *, scale: int = 1) -> Image.Image | None:
    """The images of the ``n`` pairs the raters split most on (share of the minority answer), each labelled with
    its targets and the votes for each side."""
    if outcomes.empty:
        return None
    split = outcomes.groupby("item_id")["outcome"].agg(lambda v: min((v > 0.5).mean(), (v < 0.5).mean()))
    chosen = split[split > 0].sort_values(ascending=False).index[:n]
    if not len(chosen):
        return None
    images, labels = [], []
    for item_id in chosen:
        item, votes = task.items[item_id], outcomes[outcomes["item_id"] == item_id]["outcome"]
        for side, (target, image_id) in enumerate(zip(item.targets, item.images, strict=True)):
            won = int((votes == (1.0 if side == 0 else 0.0)).sum())
            with Image.open(task.image(image_id)) as image:
                images.append(image.convert("RGB"))
            labels.append(f"{target}: {won} of {len(votes)} votes")
    return image_grid(images, 2, scale=scale, labels=labels)
