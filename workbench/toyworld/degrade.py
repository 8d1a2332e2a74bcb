"""What generators do to an image, for checking a judge on more than clean renders.

``degrade`` draws, per image, a shape slightly off its template (a small rotation and an uneven scale about the
image's centre), then a Gaussian blur up to sigma 1 pixel, a colour drift up to +-20 per channel, noise up to
sigma 8 (on 0-255) and JPEG compression at quality 70 to 95; each at a strength drawn uniformly up to its limit.
The truth stays the scene's: a degraded image of a red circle on the left is still that.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageFilter

__all__ = ["LIMITS", "degrade"]

LIMITS = {"rotation_deg": 8.0, "scale": 0.1, "blur_sigma": 1.0, "drift": 20.0, "noise_sigma": 8.0, "jpeg": (70, 95)}


def degrade(image: Image.Image, rng: np.random.Generator, limits: dict | None = None) -> Image.Image:
    """``image`` with each degradation in ``limits`` (by default ``LIMITS``) applied at a strength drawn from
    ``rng``."""
    limits = LIMITS if limits is None else limits
    image = image.convert("RGB")
    background = tuple(int(v) for v in np.median(np.asarray(image)[0], axis=0))  # the top row: background
    angle = np.deg2rad(rng.uniform(-1, 1) * limits["rotation_deg"])
    sx, sy = 1 + rng.uniform(-1, 1, size=2) * limits["scale"]
    centre = (image.width - 1) / 2
    inverse = np.linalg.inv(
        np.array([[np.cos(angle) * sx, -np.sin(angle) * sy], [np.sin(angle) * sx, np.cos(angle) * sy]])
    )
    offset = np.array([centre, centre]) - inverse @ np.array([centre, centre])
    coefficients = (*inverse[0], offset[0], *inverse[1], offset[1])
    image = image.transform(image.size, Image.AFFINE, coefficients, Image.BICUBIC, fillcolor=background)
    image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0, limits["blur_sigma"])))
    pixels = np.asarray(image, dtype=np.float64)
    pixels = pixels + rng.uniform(-1, 1, size=3) * limits["drift"]
    pixels = pixels + rng.normal(0, rng.uniform(0, limits["noise_sigma"]), size=pixels.shape)
    image = Image.fromarray(np.clip(pixels, 0, 255).round().astype(np.uint8))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=int(rng.integers(limits["jpeg"][0], limits["jpeg"][1] + 1)))
    with Image.open(buffer) as compressed:
        return compressed.convert("RGB")
