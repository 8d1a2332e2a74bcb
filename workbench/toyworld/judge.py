"""Judging toy world images: a pixel judge with no learned weights, and the toy CLIP's zero-shot reading.

The pixel judge (``read_image``, ``judge_image``, ``judge_images``) shares nothing with the toy CLIP, so
it can measure how far the CLIP score agrees with the truth. Colour, background, size and position come
from ``scenes.pixel_attributes``. Shape: the foreground (pixels as saturated as the shape, holes filled)
is compared with the mask the scene renderer draws for each shape, placed and sized from the
foreground's centroid and area; the best intersection-over-union wins. Style: an outline leaves the
filled foreground hollow (sketch); otherwise a photo's light makes the shape darker from top left to
bottom right, a plain fill is flat.

The toy CLIP (``ToyJudge``) reads every attribute: for each one, the score of a value is the log-sum-exp
of the image's similarity to every caption with that value (marginalising the other attributes).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from scipy import ndimage

from workbench.errors import ConfigError
from workbench.toyworld import scenes
from workbench.toyworld.captions import parse_prompt

__all__ = [
    "AttributeJudgement",
    "Judgement",
    "ToyJudge",
    "accuracy",
    "judge_accuracy",
    "judge_image",
    "judge_images",
    "read_image",
]

_BATCH = 256
_SUPERSAMPLE = 4
_ALPHA = 0.4  # share of the shape's colour that makes a pixel foreground
_HOLLOW = 0.03  # share of the filled foreground an outline leaves empty: 0 for fills, >= 0.06 for sketches
_CLOSE = 0.08  # IoU gap under which the best two shapes are refitted
_NUDGES = list(itertools.product((-0.5, 0.0, 0.5), (-0.5, 0.0, 0.5), (0.9, 1.0, 1.1)))
_SHADING = 0.12  # relative brightness drop across the shape: 0 for plain fills, >= 0.24 for photos


@dataclass(frozen=True)
class AttributeJudgement:
    """One attribute: the prompt's value, the image's, and whether they agree."""

    expected: str
    read: str | None
    right: bool


@dataclass(frozen=True)
class Judgement:
    """An image against its prompt: the judged attributes, and the share (``composition``) of them right.

    ``composition_all`` is 1.0 when every judged attribute is right, else 0.0. For a prompt outside the
    toy world nothing is judged: both are None and ``reason`` says why.
    """

    attributes: dict[str, AttributeJudgement]
    composition: float | None
    composition_all: float | None
    reason: str | None = None


def _shape_mask(shape: str, cx: float, cy: float, r: float, size: int = scenes.IMAGE_SIZE) -> np.ndarray:
    """The coverage (0-1) of ``shape`` as the renderer draws it filled, at ``size`` x ``size``."""
    k = _SUPERSAMPLE
    mask = Image.new("L", (size * k, size * k), 0)
    scenes._draw_shape(ImageDraw.Draw(mask), shape, cx * k, cy * k, r * k, fill=255)
    return np.asarray(mask.resize((size, size), Image.Resampling.BOX), dtype=np.float64) / 255.0


def _moments(shape: str) -> tuple[float, float]:
    """Area and centroid's downward offset of ``shape`` at radius 1 (from a large drawing)."""
    r = 100.0
    mask = _shape_mask(shape, 128.0, 128.0, r, size=256)
    centroid = float(((np.arange(256)[:, None] + 0.5) * mask).sum() / mask.sum())
    return float(mask.sum()) / r**2, (centroid - 128.0) / r


_MOMENTS = {shape: _moments(shape) for shape in scenes.SHAPES}


def _pixels(image) -> np.ndarray:
    if isinstance(image, np.ndarray):
        image = Image.fromarray(np.asarray(image, dtype=np.uint8))
    if not isinstance(image, Image.Image):
        raise ConfigError(f"image must be a PIL image or an HxWx3 uint8 array, not {type(image).__name__}", "image")
    return np.asarray(image.convert("RGB").resize((scenes.IMAGE_SIZE, scenes.IMAGE_SIZE)), dtype=np.float64)


def _foreground(pixels: np.ndarray) -> np.ndarray:
    """How much of the shape's colour each pixel holds (0-1): its chroma over the shape's nearby.

    Nearby (the 3x3 maximum), since a photo's light makes the shape's own chroma vary across it.
    """
    hi, lo = pixels.max(axis=2), pixels.min(axis=2)
    chroma = hi - lo
    saturated = (chroma / np.maximum(hi, 1.0) > 0.45) & (hi > 60)
    if saturated.sum() < 4:
        return np.zeros(chroma.shape)
    floor = 0.5 * np.percentile(chroma[saturated], 75)
    return np.clip(chroma / np.maximum(ndimage.maximum_filter(chroma, 3), floor), 0.0, 1.0)


def _read_shape(filled: np.ndarray) -> tuple[str, float]:
    """The shape whose renderer mask best overlaps ``filled``, and its fitted radius.

    Each shape is placed and sized from the foreground's centroid and area; when the best two are close,
    both are also tried half a pixel and a tenth of their size around that fit.
    """
    area = float(filled.sum())
    ys, xs = np.nonzero(filled)
    cx, cy = xs.mean() + 0.5, ys.mean() + 0.5

    def iou(shape: str, dx: float = 0.0, dy: float = 0.0, scale: float = 1.0) -> tuple[float, float]:
        unit_area, offset = _MOMENTS[shape]
        r = np.sqrt(area / unit_area) * scale
        template = _shape_mask(shape, cx + dx, cy + dy - offset * r, r) > 0.5
        return float((template & filled).sum() / max((template | filled).sum(), 1)), r

    fits = {shape: iou(shape) for shape in scenes.SHAPES}
    ranked = sorted(fits, key=lambda s: fits[s][0], reverse=True)
    if fits[ranked[0]][0] - fits[ranked[1]][0] < _CLOSE:
        for shape in ranked[:2]:
            fits[shape] = max(iou(shape, dx, dy, scale) for dx, dy, scale in _NUDGES)
    best = max(ranked[:2], key=lambda s: fits[s][0])
    return best, fits[best][1]


def _read_style(pixels: np.ndarray, mask: np.ndarray, filled: np.ndarray, r: float) -> str:
    if 1.0 - mask.sum() / filled.sum() > _HOLLOW:
        return "sketch"
    core = filled
    for _ in range(2):
        eroded = ndimage.binary_erosion(core)
        if eroded.sum() < 6:
            break
        core = eroded
    ys, xs = np.nonzero(core)
    brightness = pixels.sum(axis=2)[core]
    diagonal = (xs + ys).astype(np.float64)
    if diagonal.std() == 0:
        return "plain"
    slope = np.polyfit(diagonal, brightness, 1)[0]
    return "photo" if -slope * 2 * r / max(brightness.mean(), 1.0) > _SHADING else "plain"


def read_image(image) -> dict[str, str | None]:
    """Every attribute of a toy world image read off its pixels (no model); None where no shape is found."""
    pixels = _pixels(image)
    result: dict[str, str | None] = dict(scenes.pixel_attributes(Image.fromarray(pixels.astype(np.uint8))))
    mask = _foreground(pixels) > _ALPHA
    filled = ndimage.binary_fill_holes(mask)
    if filled.sum() < 4 or result["colour"] is None:
        return {a: result.get(a) for a in scenes.ATTRIBUTES}
    result["shape"], r = _read_shape(filled)
    result["style"] = _read_style(pixels, mask, filled, r)
    return {a: result[a] for a in scenes.ATTRIBUTES}


def _judge(read: dict[str, str | None], expected: dict[str, str]) -> Judgement:
    attributes = {a: AttributeJudgement(v, read[a], read[a] == v) for a, v in expected.items()}
    right = [j.right for j in attributes.values()]
    return Judgement(attributes, sum(right) / len(right), float(all(right)))


def judge_image(image, prompt: str) -> Judgement:
    """Judge ``image`` against the attributes ``prompt`` names (see ``captions.parse_prompt``)."""
    parsed = parse_prompt(prompt)
    if parsed.reason is not None:
        return Judgement({}, None, None, parsed.reason)
    return _judge(read_image(image), parsed.attributes)


def judge_images(images: Sequence, prompts: Sequence[str]) -> list[Judgement]:
    """``judge_image`` over pairs (one prompt per image)."""
    if isinstance(prompts, str) or len(images) != len(prompts):
        count = 1 if isinstance(prompts, str) else len(prompts)
        raise ConfigError(f"{len(images)} images but {count} prompts: give one prompt per image", "prompts")
    parsed = {p: parse_prompt(p) for p in dict.fromkeys(prompts)}
    judgements = []
    for image, prompt in zip(images, prompts, strict=True):
        if parsed[prompt].reason is not None:
            judgements.append(Judgement({}, None, None, parsed[prompt].reason))
        else:
            judgements.append(_judge(read_image(image), parsed[prompt].attributes))
    return judgements


def judge_accuracy(n: int = 1000, seed: int = 0) -> dict[str, float]:
    """The pixel judge's accuracy per attribute on ``n`` rendered scenes (seeded draws, jittered renders)."""
    if n < 1:
        raise ConfigError(f"n must be >= 1 scene, got {n!r}", "n")
    truth = scenes.sample_scenes(n, seed=seed)
    rng = np.random.default_rng(seed)
    judgements = judge_images([scenes.render(s, rng) for s in truth], [scenes.caption(s) for s in truth])
    return {a: float(np.mean([j.attributes[a].right for j in judgements])) for a in scenes.ATTRIBUTES}


class ToyJudge:
    """Zero-shot attribute reader built on the toy CLIP (a folder saved by the toy world training)."""

    def __init__(self, clip_dir: str | Path):
        from workbench.verbosity import apply_verbosity

        apply_verbosity()  # before transformers' import-time warnings
        from transformers import CLIPImageProcessor, CLIPModel, CLIPTokenizer

        self.model = CLIPModel.from_pretrained(clip_dir, dtype=torch.float32).eval()
        self.tokenizer = CLIPTokenizer.from_pretrained(clip_dir)
        self.processor = CLIPImageProcessor.from_pretrained(clip_dir)
        self.scenes = scenes.all_scenes()
        with torch.no_grad():
            ids = self.tokenizer([scenes.caption(s) for s in self.scenes], padding=True, return_tensors="pt")
            text = self.model.get_text_features(**ids).pooler_output
        self.text = torch.nn.functional.normalize(text, dim=-1)
        # For each attribute, a (values x captions) mask of which captions carry which value.
        self.values = {a: sorted({getattr(s, a) for s in self.scenes}) for a in scenes.ATTRIBUTES}
        self.masks = {
            a: torch.tensor([[getattr(s, a) == v for s in self.scenes] for v in values])
            for a, values in self.values.items()
        }

    @torch.no_grad()
    def _similarity(self, images: Sequence[Image.Image]) -> torch.Tensor:
        chunks = []
        for start in range(0, len(images), _BATCH):
            pixels = self.processor(images=list(images[start : start + _BATCH]), return_tensors="pt").pixel_values
            features = self.model.get_image_features(pixel_values=pixels).pooler_output
            chunks.append(torch.nn.functional.normalize(features, dim=-1) @ self.text.T)
        return torch.cat(chunks) * self.model.logit_scale.exp()

    def read(self, images: Sequence[Image.Image]) -> list[dict[str, str]]:
        """Per image: the CLIP's value for every attribute, and ``caption``, its best caption's scene."""
        logits = self._similarity(images)
        best = logits.argmax(dim=1)
        readings = [{"caption": self.scenes[int(i)]} for i in best]
        for attribute, mask in self.masks.items():
            per_value = torch.stack(
                [torch.logsumexp(logits.masked_fill(~m, float("-inf")), dim=1) for m in mask], dim=1
            )
            for reading, index in zip(readings, per_value.argmax(dim=1), strict=True):
                reading[attribute] = self.values[attribute][int(index)]
        return readings

    def judge(self, images: Sequence[Image.Image], truth: Sequence[scenes.Scene]) -> list[dict[str, bool]]:
        """Per image, which attributes each judge got right (``clip_<attr>``, ``pixel_<attr>``, ``clip_caption``)."""
        rows = []
        for image, scene, reading in zip(images, truth, self.read(images), strict=True):
            row = {"clip_caption": reading["caption"] == scene}
            row |= {f"clip_{a}": reading[a] == getattr(scene, a) for a in scenes.ATTRIBUTES}
            pixels = read_image(image)
            row |= {f"pixel_{a}": pixels[a] == getattr(scene, a) for a in scenes.ATTRIBUTES}
            rows.append(row)
        return rows


def accuracy(rows: Sequence[dict[str, bool]]) -> dict[str, float]:
    """The share of rows right, per judged key."""
    return {key: sum(r[key] for r in rows) / len(rows) for key in rows[0]} if rows else {}
