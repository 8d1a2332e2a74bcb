"""Judging toy world images two independent ways: the toy CLIP's zero-shot reading and a pixel check.

The CLIP reads every attribute: for each one, the score of a value is the log-sum-exp of the image's
similarity to every caption with that value (marginalising the other attributes). The pixel check
(``scenes.pixel_attributes``) reads colour, background, size and position without any model.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image

from workbench.toyworld import scenes

__all__ = ["PIXEL_ATTRIBUTES", "ToyJudge", "accuracy"]

PIXEL_ATTRIBUTES = ("colour", "background", "size", "position")
_BATCH = 256


class ToyJudge:
    """Zero-shot attribute reader built on the toy CLIP (a folder saved by the toy world training)."""

    def __init__(self, clip_dir: str | Path):
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
            pixels = scenes.pixel_attributes(image)
            row |= {f"pixel_{a}": pixels[a] == getattr(scene, a) for a in PIXEL_ATTRIBUTES}
            rows.append(row)
        return rows


def accuracy(rows: Sequence[dict[str, bool]]) -> dict[str, float]:
    """The share of rows right, per judged key."""
    return {key: sum(r[key] for r in rows) / len(rows) for key in rows[0]} if rows else {}
