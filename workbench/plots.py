"""Figures: image grids (more plots arrive with the evaluation studies)."""

from __future__ import annotations

from collections.abc import Sequence

from PIL import Image, ImageDraw

__all__ = ["image_grid"]


def image_grid(
    images: Sequence[Image.Image], cols: int, *, scale: int = 1, labels: Sequence[str] | None = None, pad: int = 2
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
