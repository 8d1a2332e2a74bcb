"""Image grids (PIL): images under wrapped labels, and a run's images by prompt and model."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from PIL import Image, ImageDraw

__all__ = ["image_grid", "results_grid"]


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
