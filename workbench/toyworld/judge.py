"""Judging toy world images: the judge (a small learned reader that shares nothing with the toy CLIP), and the
toy CLIP's zero-shot reading.

The judge (``read_image``, ``judge_image``, ``judge_images``) reads every attribute with ``toyworld.reader``, a
network trained only on varied and degraded renders (``toyworld.train_reader``), never on generated images and
never with the toy CLIP, so it can measure how far the CLIP score agrees with the truth. Where the reader's
calibrated probability of its best value is under its threshold, the attribute is unsure: neither right nor
wrong. An image where nothing stands out from the background has no shape, colour, size, position or style to
read: those are surely wrong.

The toy CLIP (``ToyJudge``) reads every attribute: for each one, the score of a value is the log-sum-exp
of the image's similarity to every caption with that value (marginalising the other attributes).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from scipy import ndimage

from workbench.errors import ConfigError
from workbench.toyworld import scenes
from workbench.toyworld.captions import parse_prompt
from workbench.toyworld.reader import load_reader

__all__ = [
    "AttributeJudgement",
    "Judgement",
    "Reading",
    "ToyJudge",
    "accuracy",
    "judge_accuracy",
    "judge_image",
    "judge_images",
    "read_image",
    "read_images",
]

_BATCH = 256
_FIGURE, _STANDS_OUT = 8, 25.0  # fewer pixels than this that differ by more than that: no figure drawn


@dataclass(frozen=True)
class Reading:
    """One attribute read off an image: the value (None: no figure to read it from), the reader's calibrated
    probability of it, and whether that is sure enough to judge by."""

    value: str | None
    probability: float
    sure: bool


@dataclass(frozen=True)
class AttributeJudgement:
    """One attribute: the prompt's value, the image's (the reader's best guess where unsure), and whether they
    agree (None: unsure)."""

    expected: str
    read: str | None
    right: bool | None


@dataclass(frozen=True)
class Judgement:
    """An image against its prompt: the judged attributes and the share (``composition``) of the sure ones right.

    ``composition_all`` is 1.0 when every judged attribute is surely right, 0.0 when one is surely wrong and
    none is unsure, and None when any is unsure (``reason`` names them): such an image is neither accepted nor
    caught. For a prompt outside the toy world nothing is judged: both are None and ``reason`` says why.
    """

    attributes: dict[str, AttributeJudgement]
    composition: float | None
    composition_all: float | None
    reason: str | None = None


def _pixels(image) -> np.ndarray:
    if isinstance(image, np.ndarray):
        image = Image.fromarray(np.asarray(image, dtype=np.uint8))
    if not isinstance(image, Image.Image):
        raise ConfigError(f"image must be a PIL image or an HxWx3 uint8 array, not {type(image).__name__}", "image")
    return np.asarray(image.convert("RGB").resize((scenes.IMAGE_SIZE, scenes.IMAGE_SIZE)), dtype=np.uint8)


def _has_figure(pixels: np.ndarray) -> bool:
    """Whether anything stands out from the background (the median border colour): at least ``_FIGURE`` pixels
    that differ from it by more than ``_STANDS_OUT`` once each pixel is averaged with its neighbours (noise and
    compression stay far below that on a blank image; a blurred outline stays far above)."""
    smooth = ndimage.uniform_filter(pixels.astype(np.float64), size=(3, 3, 1))
    border = np.concatenate([smooth[1], smooth[-2], smooth[:, 1], smooth[:, -2]])
    distance = np.linalg.norm(smooth - np.median(border, axis=0), axis=2)
    return int((distance > _STANDS_OUT).sum()) >= _FIGURE


def read_images(images: Sequence) -> list[dict[str, Reading]]:
    """Every attribute of each toy world image (PIL images or HxWx3 uint8 arrays), read by the judge's reader."""
    pixels = np.stack([_pixels(image) for image in images]) if len(images) else np.zeros((0, 32, 32, 3), np.uint8)
    reader = load_reader()
    readings = []
    for image, read in zip(pixels, reader.read(pixels), strict=True):
        figure = _has_figure(image)
        readings.append({
            a: Reading(read[a][0], read[a][1], read[a][1] >= reader.threshold)
            if figure or a == "background" else Reading(None, 1.0, True)
            for a in scenes.ATTRIBUTES
        })  # fmt: skip
    return readings


def read_image(image) -> dict[str, Reading]:
    """``read_images`` of one image."""
    return read_images([image])[0]


def _judge(read: dict[str, Reading], expected: dict[str, str]) -> Judgement:
    attributes = {
        a: AttributeJudgement(v, read[a].value, read[a].value == v if read[a].sure else None)
        for a, v in expected.items()
    }
    sure = [j.right for j in attributes.values() if j.right is not None]
    unsure = [a for a, j in attributes.items() if j.right is None]
    composition = sum(sure) / len(sure) if sure else None
    if unsure:
        guesses = ", ".join(f"{a} ({attributes[a].read}, p={read[a].probability:.2f})" for a in unsure)
        return Judgement(attributes, composition, None, f"unsure of {guesses}")
    return Judgement(attributes, composition, float(all(sure)))


def judge_image(image, prompt: str) -> Judgement:
    """Judge ``image`` against the attributes ``prompt`` names (see ``captions.parse_prompt``)."""
    return judge_images([image], [prompt])[0]


def judge_images(images: Sequence, prompts: Sequence[str]) -> list[Judgement]:
    """``judge_image`` over pairs (one prompt per image), read in batches."""
    if isinstance(prompts, str) or len(images) != len(prompts):
        count = 1 if isinstance(prompts, str) else len(prompts)
        raise ConfigError(f"{len(images)} images but {count} prompts: give one prompt per image", "prompts")
    parsed = {p: parse_prompt(p) for p in dict.fromkeys(prompts)}
    readings = read_images(images)
    return [
        Judgement({}, None, None, parsed[prompt].reason)
        if parsed[prompt].reason is not None
        else _judge(read, parsed[prompt].attributes)
        for read, prompt in zip(readings, prompts, strict=True)
    ]


def judge_accuracy(n: int = 1000, seed: int = 12345) -> dict[str, float]:
    """The judge's accuracy per attribute on ``n`` rendered scenes (seeded draws, jittered renders; the default
    seed is none the reader's training drew from): the share surely right (an unsure reading counts against it)."""
    if n < 1:
        raise ConfigError(f"n must be >= 1 scene, got {n!r}", "n")
    truth = scenes.sample_scenes(n, seed=seed)
    rng = np.random.default_rng(seed)
    judgements = judge_images([scenes.render(s, rng) for s in truth], [scenes.caption(s) for s in truth])
    return {a: float(np.mean([j.attributes[a].right is True for j in judgements])) for a in scenes.ATTRIBUTES}


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
        """Per image, which attributes the toy CLIP got right (``clip_<attr>``, and ``clip_caption``: all)."""
        rows = []
        for scene, reading in zip(truth, self.read(images), strict=True):
            row = {"clip_caption": reading["caption"] == scene}
            row |= {f"clip_{a}": reading[a] == getattr(scene, a) for a in scenes.ATTRIBUTES}
            rows.append(row)
        return rows


def accuracy(rows: Sequence[dict[str, bool]]) -> dict[str, float]:
    """The share of rows right, per judged key."""
    return {key: sum(r[key] for r in rows) / len(rows) for key in rows[0]} if rows else {}
