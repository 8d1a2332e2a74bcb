"""Composition accuracy, GenEval-style: a judge reads each image's attributes and checks them against the
prompt's. Two per-image metrics: ``composition`` (the share of the prompt's attributes read right, of those the
judge is sure of) and ``composition_all`` (1 when all are right; no value when the judge is unsure of one).

The judge is pluggable: any callable ``(images, prompts) -> list[Judgement]``. The default is the toy
world's judge (``workbench.toyworld.judge``: a small reader trained on renders only, sharing nothing with any
CLIP); a detector or VQA model for real images plugs in the same way, returning a ``Judgement`` per image. A
prompt the judge cannot read gets no value and its reason; an attribute it is unsure of is named in the reason.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from PIL import Image

from workbench.errors import ConfigError
from workbench.toyworld.judge import Judgement, judge_images

__all__ = ["CompositionScorer", "Judge"]

Judge = Callable[[Sequence[Image.Image], Sequence[str]], list[Judgement]]


class CompositionScorer:
    """``composition`` and ``composition_all`` per image (``ImageScorer``), with ``composition_wrong`` (the
    attributes surely read wrong, "attribute: expected -> read") and ``composition_reason`` (why an image has no
    value, or which attributes the judge was unsure of)."""

    metrics: tuple[str, ...] = ("composition", "composition_all")

    def __init__(self, judge: Judge = judge_images):
        self.judge = judge

    def score_columns(self, images: Sequence[Image.Image], prompts: Sequence[str]) -> dict[str, list[Any]]:
        judgements = self.judge(images, prompts)
        if len(judgements) != len(images):
            raise ConfigError(f"the judge returned {len(judgements)} judgements for {len(images)} images", "judge")
        return {
            "composition": [j.composition for j in judgements],
            "composition_all": [j.composition_all for j in judgements],
            "composition_wrong": [
                ", ".join(f"{a}: {v.expected} -> {v.read}" for a, v in j.attributes.items() if v.right is False)
                if j.attributes
                else None
                for j in judgements
            ],
            "composition_reason": [j.reason for j in judgements],
        }
