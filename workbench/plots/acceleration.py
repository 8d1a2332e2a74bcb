"""Figures of the acceleration benchmark: speed against fidelity (numbered points kept apart), its tables and
its images."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd

from workbench.plots.grids import image_grid

__all__ = ["acceleration_images", "acceleration_table", "pareto"]


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
            "n/a" if pd.isna(change) else f"{change:+.3f}" + ("" if pd.isna(low) else f" [{low:+.3f}, {high:+.3f}]")
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
