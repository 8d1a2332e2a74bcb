"""Composition accuracy, GenEval-style: a judge reads each image's attributes and checks them against the
prompt's. Two per-image metrics: ``composition`` (the share of the prompt's attributes read right) and
``composition_all`` (1 when all are).

The judge is pluggable: any callable ``(images, prompts) -> list[Judgement]``. The default is the toy
world's pixel judge (``workbench.toyworld.judge``: pixel rules and the scene renderer's shapes, no learned
weights, so it is independent of every CLIP); a detector or VQA model for real images plugs in the same
way, returning a ``Judgement`` per image. A prompt the judge cannot read gets no value and its reason.
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
    attributes read wrong, "attribute: expected -> read") and ``composition_reason`` (why an image has no
    value)."""

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
                ", ".join(f"{a}: {v.expected} -> {v.read}" for a, v in j.attributes.items() if not v.right)
                if j.reason is None
                else None
                for j in judgements
            ],
            "composition_reason": [j.reason for j in judgements],
        }
