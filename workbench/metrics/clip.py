"""Image metrics: CLIP score (batched, any CLIP checkpoint) and fidelity between two images.

CLIP score, torchmetrics' definition, per image::

    clip_score = 100 * max(cos(E_image(image), E_text(prompt)), 0)

with E the CLIP model's projected embeddings. It is reported with the id of the CLIP that produced it
(scores from different CLIPs are not comparable). Prompts longer than the CLIP's text window are
scored on what fits and flagged (``truncated``), never cut silently.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from workbench.errors import ConfigError, UnknownModelError

__all__ = ["DEFAULT_CLIP", "CLIPScorer", "ClipScores", "fidelity"]

DEFAULT_CLIP = "toyworld/clip"


def _clip_source(model_id: str) -> tuple[str, bool]:
    """Where a CLIP id loads from, and whether only local files may be used."""
    from workbench.models import TOYWORLD_DIR, available_models, is_offline

    if model_id.startswith("toyworld/"):
        folder = TOYWORLD_DIR / model_id.removeprefix("toyworld/")
        if not (folder / "config.json").is_file():
            raise UnknownModelError(model_id, "no toy world CLIP of that name", available_models())
        return str(folder), True
    if Path(model_id).expanduser().is_dir():
        return str(Path(model_id).expanduser()), True
    return model_id, is_offline()


def _from_pretrained(loader, model_id: str, **kwargs):
    """``loader.from_pretrained`` on a CLIP id or folder; refused, naming what to download, when it cannot."""
    from workbench.models import available_models

    source, local_only = _clip_source(model_id)
    try:
        return loader.from_pretrained(source, local_files_only=local_only, **kwargs)
    except OSError as error:
        hint = "" if Path(source).is_dir() else f"; download it on a machine with internet: hf download {model_id}"
        raise UnknownModelError(model_id, f"cannot load a CLIP from it ({error}){hint}", available_models()) from None


@dataclass(frozen=True)
class ClipScores:
    """Per-image CLIP scores, whether each prompt was longer than the CLIP's window, and the CLIP's id."""

    scores: list[float]
    truncated: list[bool]
    clip_model: str


class CLIPScorer:
    """Scores images against prompts with a CLIP model, in batches, caching each prompt's embedding.
    ``processor_id``: where the image and text processor loads from when the checkpoint has none."""

    metrics: tuple[str, ...] = ("clip_score",)

    def __init__(
        self,
        model_id: str = DEFAULT_CLIP,
        device: str | None = None,
        batch_size: int = 32,
        *,
        processor_id: str | None = None,
    ):
        from workbench.models import pick_device
        from workbench.verbosity import apply_verbosity

        apply_verbosity()  # before transformers' import-time warnings
        from transformers import CLIPModel, CLIPProcessor

        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size!r}")
        self.model = _from_pretrained(CLIPModel, model_id, dtype=torch.float32)
        self.processor = _from_pretrained(CLIPProcessor, processor_id or model_id)
        self.device = pick_device(device)
        self.model = self.model.eval().to(self.device)
        self.model_id = model_id
        self.batch_size = batch_size
        self.max_tokens = self.processor.tokenizer.model_max_length
        self._text_cache: dict[str, torch.Tensor] = {}

    def is_truncated(self, prompt: str) -> bool:
        """True when the prompt has more tokens than the CLIP's text window."""
        return len(self.processor.tokenizer(prompt, truncation=False, verbose=False).input_ids) > self.max_tokens

    @torch.no_grad()
    def text_embeddings(self, prompts: Sequence[str]) -> torch.Tensor:
        """Unit-length text embeddings, each distinct prompt computed once (and remembered)."""
        missing = [p for p in dict.fromkeys(prompts) if p not in self._text_cache]
        for start in range(0, len(missing), self.batch_size):
            chunk = missing[start : start + self.batch_size]
            # verbose=False: no "sequence length is longer" / "max_length is ignored" warning per batch; a
            # prompt longer than the window is recorded instead (ClipScores.truncated, clip_truncated).
            tokens = self.processor.tokenizer(
                chunk, padding=True, truncation=True, max_length=self.max_tokens, return_tensors="pt", verbose=False
            ).to(self.device)
            features = self.model.get_text_features(**tokens)
            features = getattr(features, "pooler_output", features)
            for prompt, feature in zip(chunk, torch.nn.functional.normalize(features, dim=-1), strict=True):
                self._text_cache[prompt] = feature
        return torch.stack([self._text_cache[p] for p in prompts])

    @torch.no_grad()
    def image_embeddings(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """Unit-length image embeddings, computed in batches."""
        chunks = []
        for start in range(0, len(images), self.batch_size):
            batch = [image.convert("RGB") for image in images[start : start + self.batch_size]]
            pixels = self.processor(images=batch, return_tensors="pt").pixel_values.to(self.device)
            features = self.model.get_image_features(pixel_values=pixels)
            features = getattr(features, "pooler_output", features)
            chunks.append(torch.nn.functional.normalize(features, dim=-1))
        return torch.cat(chunks)

    def cosines(self, images: Sequence[Image.Image], prompts: Sequence[str]) -> torch.Tensor:
        """The cosine of each image's embedding with its prompt's (one prompt per image)."""
        if len(images) != len(prompts):
            raise ConfigError(f"need one prompt per image, got {len(images)} images and {len(prompts)} prompts")
        if not images:
            return torch.empty(0)
        return (self.image_embeddings(images) * self.text_embeddings(prompts)).sum(dim=-1)

    def score(self, images: Sequence[Image.Image], prompts: Sequence[str]) -> ClipScores:
        """The CLIP score of each image against its prompt (see the module docstring)."""
        cosine = self.cosines(images, prompts)
        if not len(cosine):
            return ClipScores([], [], self.model_id)
        scores = (100 * cosine.clamp(min=0)).cpu().tolist()
        return ClipScores(scores, [self.is_truncated(p) for p in prompts], self.model_id)

    def score_columns(self, images: Sequence[Image.Image], prompts: Sequence[str]) -> dict[str, list]:
        """The rows' columns: clip_score, clip_model and clip_truncated (``ImageScorer``)."""
        scores = self.score(images, prompts)
        return {
            "clip_score": scores.scores,
            "clip_model": [scores.clip_model] * len(scores.scores),
            "clip_truncated": scores.truncated,
        }


def fidelity(reference: Image.Image, candidate: Image.Image, scorer: CLIPScorer | None = None) -> dict[str, float]:
    """How close ``candidate`` is to ``reference`` (same seed, other settings): PSNR in dB, SSIM
    (scikit-image), and, given a scorer, the cosine of their CLIP image embeddings."""
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    a = np.asarray(reference.convert("RGB"))
    b = np.asarray(candidate.convert("RGB"))
    if a.shape != b.shape:
        raise ConfigError(f"images must have the same size, got {reference.size} and {candidate.size}")
    result = {
        "psnr": float("inf") if np.array_equal(a, b) else float(peak_signal_noise_ratio(a, b, data_range=255)),
        "ssim": float(structural_similarity(a, b, channel_axis=2, data_range=255)),
    }
    if scorer is not None:
        embeddings = scorer.image_embeddings([reference, candidate])
        result["clip_cosine"] = float(embeddings[0] @ embeddings[1])
    return result
