"""GenEval's default detector and colour reader, through transformers alone (no mmdet, no mmcv, any device).

``Mask2FormerDetector``: a Mask2Former with COCO instance weights (Swin-S, as in GenEval's paper, by default),
instance post-processing at a near-zero score threshold with a binary map per instance and no overlap filtering,
so that GenEval's own thresholds decide; each box is the tight box around its mask (one past the last pixel, as
mmdet's); labels are the checkpoint's ``id2label`` names, which must cover GenEval's 80 ``object_names.txt``.
``CLIPColours``: CLIP ViT-L/14 zero-shot over GenEval's 10 colours and 3 templates (each template's text embedding
normalised, averaged over templates and normalised again), on each object composited over #999 outside its mask
and cropped to its box, through CLIP's own preprocessing.

This detector's outputs differ from mmdet's Mask2Former (other post-processing code, other resizing), so scores
may differ by a few points from the paper's. Weights load from a folder, or the hub's cache (from the hub when
online); offline without them, building either is refused at once, naming the download.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from workbench.errors import ConfigError
from workbench.metrics.geneval import COLOURS, GENEVAL_CLIP, GENEVAL_DETECTOR, Detection
from workbench.resources import data_path

__all__ = ["CLIPColours", "Mask2FormerDetector", "geneval_scorer", "object_names"]

TEMPLATES = ("a photo of a {colour} {name}", "a photo of a {colour}-colored {name}", "a photo of a {colour} object")
TOY_DETECTOR = "toyworld"  # geneval_detector for the toy world's detector and palette colours
SCORE_FLOOR = 1e-4  # instance scores kept by the post-processing; GenEval's thresholds (0.3, 0.9) decide
BACKGROUND = "#999999"


@functools.cache
def object_names() -> tuple[str, ...]:
    """GenEval's 80 COCO class names (``data/prompts/geneval/object_names.txt``)."""
    lines = data_path("prompts", "geneval", "object_names.txt").read_text().splitlines()
    return tuple(line.strip() for line in lines if line.strip())


def _load(loader, model_id: str, what: str):
    """``loader.from_pretrained`` from a folder or the hub (its cache only, offline); refused, naming the
    download, when the weights are not there."""
    from workbench.models import is_offline

    folder = Path(model_id).expanduser()
    source, local_only = (str(folder), True) if folder.is_dir() else (model_id, is_offline())
    try:
        return loader.from_pretrained(source, local_files_only=local_only)
    except (OSError, ValueError) as error:
        hint = "" if folder.is_dir() else f"; download it on a machine with internet: hf download {model_id}"
        raise ConfigError(f"cannot load {what} from {model_id!r} ({error}){hint}", "geneval") from None


def _device(device: str | None) -> torch.device:
    from workbench.models import pick_device

    return pick_device(device)


class Mask2FormerDetector:
    """Detections (``geneval.Detection``, with the instance mask) of each image, by a Mask2Former checkpoint."""

    def __init__(self, model_id: str = GENEVAL_DETECTOR, device: str | None = None):
        from transformers import Mask2FormerForUniversalSegmentation, Mask2FormerImageProcessorPil

        self.model_id, self.device = model_id, _device(device)
        self.model = _load(Mask2FormerForUniversalSegmentation, model_id, "a Mask2Former").eval().to(self.device)
        self.processor = _load(Mask2FormerImageProcessorPil, model_id, "a Mask2Former image processor")
        wanted = set(object_names())
        names = {
            int(i): str(label).strip().lower().replace("-", " ") for i, label in self.model.config.id2label.items()
        }
        missing = sorted(wanted - set(names.values()))
        if missing:
            raise ConfigError(
                f"{model_id!r} does not label {len(missing)} of GenEval's 80 classes (e.g. {', '.join(missing[:5])}): "
                "use a COCO instance checkpoint",
                "geneval_detector",
            )
        self.labels = {i: name for i, name in names.items() if name in wanted}

    @torch.no_grad()
    def __call__(self, images: Sequence[Image.Image]) -> list[list[Detection]]:
        return [self._detect(image.convert("RGB")) for image in images]

    def _detect(self, image: Image.Image) -> list[Detection]:
        inputs = self.processor(images=[image], return_tensors="pt").to(self.device)
        outputs = self.model(**inputs)
        (result,) = self.processor.post_process_instance_segmentation(
            outputs, threshold=SCORE_FLOOR, return_binary_maps=True, target_sizes=[(image.height, image.width)]
        )
        detections = []
        for info, mask in zip(result["segments_info"], result["segmentation"] if result["segments_info"] else [],
                              strict=True):  # fmt: skip
            name, mask = self.labels.get(info["label_id"]), (mask == 1).cpu().numpy()
            ys, xs = np.nonzero(mask)
            if name is None or not len(xs):
                continue
            box = (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))
            detections.append(Detection(name, float(info["score"]), box, mask))
        return detections


class CLIPColours:
    """The colour (one of ``geneval.COLOURS``) of each detected object in an image, by CLIP zero-shot."""

    def __init__(self, model_id: str = GENEVAL_CLIP, device: str | None = None):
        from transformers import CLIPModel, CLIPProcessor

        self.model_id, self.device = model_id, _device(device)
        self.model = _load(CLIPModel, model_id, "a CLIP").eval().to(self.device)
        self.processor = _load(CLIPProcessor, model_id, "a CLIP processor")
        self._texts: dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def _classifier(self, name: str) -> torch.Tensor:
        """(colours x features): per colour, its templates' normalised embeddings averaged and normalised."""
        if name not in self._texts:
            texts = [template.format(colour=c, name=name) for c in COLOURS for template in TEMPLATES]
            ids = self.processor(text=texts, padding=True, truncation=True, return_tensors="pt").to(self.device)
            embedded = torch.nn.functional.normalize(self.model.get_text_features(**ids).pooler_output, dim=-1)
            mean = embedded.reshape(len(COLOURS), len(TEMPLATES), -1).mean(dim=1)
            self._texts[name] = torch.nn.functional.normalize(mean, dim=-1)
        return self._texts[name]

    @torch.no_grad()
    def __call__(self, image: Image.Image, found: Sequence[Detection], name: str) -> list[str]:
        image = image.convert("RGB")
        grey = Image.new("RGB", image.size, BACKGROUND)
        crops = []
        for detection in found:
            mask = None if detection.mask is None else Image.fromarray(np.asarray(detection.mask, bool))
            shown = image if mask is None else Image.composite(image, grey, mask)
            crops.append(shown.crop(tuple(round(v) for v in detection.box)))
        pixels = self.processor(images=crops, return_tensors="pt").pixel_values.to(self.device)
        features = torch.nn.functional.normalize(
            self.model.get_image_features(pixel_values=pixels).pooler_output, dim=-1
        )
        return [COLOURS[int(i)] for i in (features @ self._classifier(name).T).argmax(dim=1)]


def geneval_scorer(detector: str = GENEVAL_DETECTOR, clip: str = GENEVAL_CLIP, device: str | None = None):
    """``geneval.GenevalScorer`` with the transformers detector and colour reader (when weights are missing, one
    refusal naming every download), or with ``detector`` "toyworld": the toy world's detector and palette colours
    (``toyworld.multi``), offline."""
    from workbench.metrics.geneval import GenevalScorer

    if detector == TOY_DETECTOR:
        from workbench.toyworld.multi import ToyDetector, palette_colours

        return GenevalScorer(ToyDetector(), palette_colours)
    built, problems = [], []
    for make, model_id in ((Mask2FormerDetector, detector), (CLIPColours, clip)):
        try:
            built.append(make(model_id, device))
        except ConfigError as error:
            problems.append(str(error))
    if problems:
        raise ConfigError("geneval cannot start: " + "; and ".join(problems), "geneval")
    return GenevalScorer(*built)
