"""Reference sets for the per-set metrics: a folder of images, or the toy world's ground truth.

A toy world prompt has a known answer: ``ground_truth_image`` draws it with the scene renderer, the
attributes the prompt leaves open and the renderer's jitter drawn from the seed, so the reference set of a
study is one true image per (prompt, seed) it made.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from workbench.errors import ConfigError
from workbench.toyworld import scenes
from workbench.toyworld.captions import parse_prompt

__all__ = ["IMAGE_SUFFIXES", "folder_images", "ground_truth_image"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


def ground_truth_image(prompt: str, seed: int) -> Image.Image:
    """The scene renderer's image of a toy world ``prompt``, seeded; refused, with the reason, for others."""
    parsed = parse_prompt(prompt)
    if parsed.reason is not None:
        raise ConfigError(f"no ground truth for {prompt!r}: {parsed.reason}", "reference_images")
    rng = np.random.default_rng(seed)
    values = {
        "shape": scenes.SHAPES, "colour": tuple(scenes.COLOURS), "background": tuple(scenes.BACKGROUNDS),
        "size": tuple(scenes.SIZES), "position": tuple(scenes.POSITIONS), "style": scenes.STYLES,
    }  # fmt: skip
    drawn = {a: str(rng.choice(values[a])) for a in scenes.ATTRIBUTES}  # always drawn: one seed, one scene
    return scenes.render(scenes.Scene(**(drawn | parsed.attributes)), rng)


def folder_images(folder: str | Path) -> list[Image.Image]:
    """Every image in ``folder`` (not its subfolders), in name order, as RGB."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise ConfigError(f"reference_images {str(folder)!r} is not a folder", "reference_images")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ConfigError(
            f"reference_images {str(folder)!r} holds no images ({', '.join(IMAGE_SUFFIXES)})", "reference_images"
        )
    images = []
    for file in files:
        with Image.open(file) as image:
            images.append(image.convert("RGB"))
    return images
