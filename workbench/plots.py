"""Figures for studies (seaborn) and image grids (PIL)."""

from __future__ import annotations

import math
import re
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
    "acceleration_table",
    "confusion_heatmap",
    "cost_vs_quality",
    "image_grid",
    "latency_vs_quality",
    "metric_by_category",
    "metric_heatmap",
    "metrics_against_judge",
    "pareto",
    "prompt_drilldown",
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
    with an optional small label under each (lines split at "\n"; a line wider than its image wraps onto
    more lines, at spaces and punctuation where it can, never cut)."""
    if not images:
        raise ValueError("image_grid needs at least one image")
    width, height = (side * scale for side in images[0].size)
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1))).textlength
    lines = [_wrap(label, width, measure) for label in labels] if labels else []
    label_height = _LINE * max(len(label) for label in lines) if lines else 0
    rows = -(-len(images) // cols)
    grid = Image.new("RGB", (cols * (width + pad) + pad, rows * (height + label_height + pad) + pad), "white")
    draw = ImageDraw.Draw(grid)
    for i, image in enumerate(images):
        x = pad + (i % cols) * (width + pad)
        y = pad + (i // cols) * (height + label_height + pad)
        grid.paste(image.convert("RGB").resize((width, height), Image.Resampling.NEAREST), (x, y))
        for line, text in enumerate(lines[i] if lines else []):
            draw.text((x, y + height + _LINE * line), text, fill="black")
    return grid


_LINE = 12  # pixels per label line
_BREAKS = re.compile(r"(?<=[\s,;_=+/-])")  # a label may wrap after a space or these


def _wrap(label: str, width: float, measure) -> list[str]:
    """A label's lines, each no wider than ``width`` pixels (by ``measure``): its own lines ("\n"), each
    filled greedily with the pieces between break points, a piece wider than a line split between
    characters."""
    wrapped = []
    for text in label.split("\n"):
        lines, line = [], ""
        for piece in _BREAKS.split(text):
            while piece:
                if measure((line + piece).rstrip()) <= width:
                    line, piece = line + piece, ""
                elif line:
                    lines.append(line.rstrip())
                    line, piece = "", piece.lstrip()
                else:  # a piece wider than a line on its own: as many characters as fit (at least one)
                    cut = next((n for n in range(len(piece), 1, -1) if measure(piece[:n]) <= width), 1)
                    lines.append(piece[:cut])
                    piece = piece[cut:].lstrip()
        lines.append(line.rstrip())
        wrapped += [line for line in lines if line] or [""]
    return wrapped


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
    return result.rows.groupby(["arm", "prompt_id"], sort=False)[result.metric].mean().reset_index()


def ab_distributions(result, ax=None):
    """Per arm: each prompt's score on the test's metric (seeds averaged) as dots, the mean with its 95%
    bootstrap CI."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    per_prompt = _per_prompt(result)
    if ax is None:
        _, ax = plt.subplots(figsize=(1.6 * per_prompt["arm"].nunique() + 2.5, 4))
    sns.stripplot(data=per_prompt, x="arm", y=result.metric, alpha=0.35, color="grey", ax=ax)
    sns.pointplot(
        data=per_prompt,
        x="arm",
        y=result.metric,
        errorbar=("ci", 95),
        color="black",
        linestyle="none",
        capsize=0.2,
        ax=ax,
    )
    ax.set(xlabel="arm", ylabel=f"{result.metric} (per prompt, seeds averaged)",
           title=f"{result.metric} per arm, mean and 95% CI")  # fmt: skip
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


def _ab_verdict_note() -> str:
    """What the A/B verdict reports, naming the interval ``stats`` computes for its comparisons."""
    from workbench.stats import describe_interval

    return (
        "Each arm against the control: the mean paired difference over prompts (seeds averaged within a prompt "
        f"first) with a {describe_interval()}, the Wilcoxon signed-rank p-value (Holm-adjusted across arms), and "
        "the win rate."
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
        Markdown(f"## Verdict\n\n{_ab_verdict_note()}"),
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


def pareto(table: pd.DataFrame, x: str = "speedup_total", y: str = "ssim", ax=None):
    """Each config as a numbered point (x: speed-up, higher is better; y: fidelity, higher is better), with the
    Pareto front (the configs no other beats on both) drawn as a line. The numbers are keyed to the configs'
    labels beside the axes, and each is drawn where it overlaps no other, so clustered configs stay legible."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4.5))
    points = table[["config", x, y]].dropna().reset_index(drop=True)
    front = points.sort_values(x, ascending=False)
    front = front[front[y] >= front[y].cummax()]  # keep what no faster config beats on fidelity
    ax.scatter(points[x], points[y], color="grey")
    (line,) = ax.plot(front[x], front[y], color="black", marker="o")
    numbers = [
        ax.annotate(
            str(n), (px, py), xytext=_LABEL_OFFSETS[0], textcoords="offset points", fontsize=7, ha="center", va="center"
        )
        for n, (px, py) in enumerate(zip(points[x], points[y], strict=True), 1)
    ]
    _keep_apart(ax, numbers)
    keys = [
        Line2D([], [], linestyle="none", marker=f"${n}$", markersize=1.5 + 4 * len(str(n)), color="black")
        for n in range(1, len(points) + 1)
    ]
    ax.legend([line, *keys], ["Pareto front", *points["config"]], loc="upper left", bbox_to_anchor=(1.01, 1),
              fontsize=7)  # fmt: skip
    ax.set(xlabel=x.replace("_", " "), ylabel=y.replace("_", " "), title="Speed against fidelity (vs the baseline)")
    return ax


_MARKER_HALF = 3.5  # points: half the side of a plotted point, which its label keeps clear of
# Where a point's label may go (points from the point), nearest first: around it at growing distances.
_LABEL_OFFSETS = [
    (round(r * math.cos(math.radians(a)), 1), round(r * math.sin(math.radians(a)), 1))
    for r in (8, 15, 22, 29)
    for a in (45, 0, 90, 135, -45, 180, -90, -135)
]


def _keep_apart(ax, labels: list) -> None:
    """Moves point labels (annotations in offset points) apart whenever the figure is drawn, after its layout:
    each to the first of ``_LABEL_OFFSETS`` where it covers no point and no label placed before it (or to the
    first, where it covers one at every offset)."""
    from matplotlib.artist import Artist
    from matplotlib.transforms import Bbox

    class LabelsApart(Artist):
        def draw(self, renderer) -> None:
            half = renderer.points_to_pixels(_MARKER_HALF)
            points = [ax.transData.transform(label.xy) for label in labels]
            placed = [Bbox.from_extents(x - half, y - half, x + half, y + half) for x, y in points]
            for label in labels:
                for offset in [*_LABEL_OFFSETS, _LABEL_OFFSETS[0]]:
                    label.xyann = offset
                    box = label.get_window_extent(renderer)
                    if not any(box.overlaps(other) for other in placed):
                        break
                placed.append(box)

    placer = LabelsApart()
    placer.set_in_layout(False)
    placer.set_zorder(-1)  # drawn before the labels
    ax.add_artist(placer)


# The acceleration table's speed and fidelity columns, with their short headers.
_SPEED_COLUMNS = {
    "total_s_per_image": "s / image",
    "speedup_total": "speed-up",
    "denoiser_s_per_image": "denoiser s / image",
    "speedup_denoiser": "denoiser speed-up",
    "cold_extra_s": "cold start, extra s",
    "psnr": "PSNR (dB)",
    "ssim": "SSIM",
    "changed": "images changed",
}


def acceleration_table(table: pd.DataFrame, metrics: Sequence[str]):
    """An acceleration benchmark's table (``table``; a ``model`` column for several) as two narrow tables that
    fit a page, rows by model and config, in boxes that scroll sideways on a page narrower still: speed and
    fidelity (the ``_SPEED_COLUMNS``), and per metric of ``metrics`` (those in the table) its mean and its
    change against the baseline images of the same prompts and seeds, 95% interval in brackets."""
    from IPython.display import HTML

    rows = table.set_index([c for c in ("model", "config") if c in table])
    speed = rows[[c for c in _SPEED_COLUMNS if c in rows]].rename(columns=_SPEED_COLUMNS)
    quality = {}
    for metric in (m for m in metrics if m in rows):
        changes = rows[[f"{metric}_delta", f"{metric}_delta_ci_low", f"{metric}_delta_ci_high"]]
        quality[(metric, "mean")] = rows[metric]
        quality[(metric, "change [95% CI]")] = [
            "n/a" if pd.isna(change) else f"{change:+.3f} [{low:+.3f}, {high:+.3f}]"
            for change, low, high in changes.itertuples(index=False)
        ]
    headers = [  # wrapped: a header or a config label takes a few lines rather than the page's width
        {"selector": "th.col_heading", "props": "white-space: normal; max-width: 7em; text-align: center"},
        {"selector": "th.row_heading", "props": "white-space: normal; max-width: 14em; text-align: left"},
    ]
    boxes = [
        f'<div style="overflow-x: auto">{part.style.format(precision=3).set_table_styles(headers).to_html()}</div>'
        for part in (speed, pd.DataFrame(quality, index=rows.index))
        if len(part.columns)
    ]
    return HTML("\n".join(boxes))


def acceleration_images(benchmark, prompt: str | None = None, seed: int | None = None, *, scale: int = 3):
    """The baseline image and each config's image of the same prompt and seed, side by side, each under
    its config's whole label (wrapped onto as many lines as it needs)."""
    keys = list(benchmark.images)
    prompt = prompt if prompt is not None else keys[0][1]
    seed = seed if seed is not None else keys[0][2]
    labels = list(benchmark.table["config"])
    return image_grid([benchmark.images[(label, prompt, seed)] for label in labels], cols=min(6, len(labels)),
                      scale=scale, labels=labels)  # fmt: skip
