"""Preference models: scores trained to predict which image people prefer for a prompt.

PickScore (Kirstain et al. 2023) is a CLIP fine-tuned on human choices; its score is
``logit_scale.exp() * cos(E_image, E_text)`` (the authors' inference code), loaded through transformers
from any CLIP-family checkpoint id or folder: ``yuvalkirstain/PickScore_v1``, with the processor of
``laion/CLIP-ViT-H-14-laion2B-s32B-b79K``. Offline the toy CLIP takes the same code path; it was never
trained on preferences, so its "PickScore" is only a rescaled CLIP score (reports say so).

ImageReward is left out: its package (image-reward 1.5) does not import with transformers 5.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from PIL import Image

from workbench.metrics.clip import DEFAULT_CLIP, CLIPScorer

__all__ = ["PICKSCORE", "PICKSCORE_PROCESSOR", "PickScorer"]

PICKSCORE = "yuvalkirstain/PickScore_v1"
PICKSCORE_PROCESSOR = "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"


class PickScorer(CLIPScorer):
    """PickScore per image (``ImageScorer``: columns pickscore and pickscore_model). For the published
    checkpoint the processor defaults to the one its authors use."""

    metrics: tuple[str, ...] = ("pickscore",)

    def __init__(
        self,
        model_id: str = DEFAULT_CLIP,
        device: str | None = None,
        batch_size: int = 32,
        *,
        processor_id: str | None = None,
    ):
        if processor_id is None and model_id == PICKSCORE:
            processor_id = PICKSCORE_PROCESSOR
        super().__init__(model_id, device, batch_size, processor_id=processor_id)

    @torch.no_grad()
    def pickscores(self, images: Sequence[Image.Image], prompts: Sequence[str]) -> list[float]:
        """logit_scale.exp() x cosine of each image with its prompt."""
        return (self.model.logit_scale.exp() * self.cosines(images, prompts)).cpu().tolist()

    def score_columns(self, images: Sequence[Image.Image], prompts: Sequence[str]) -> dict[str, list]:
        return {"pickscore": self.pickscores(images, prompts), "pickscore_model": [self.model_id] * len(images)}
