"""GenEval's default detector and colour reader, through transformers alone (no mmdet, no mmcv, any device).

``Mask2FormerDetector``: a Mask2Former with COCO instance weights (Swin-S, as in GenEval's paper, by default),
instance post-processing at a near-zero score threshold with a binary map per instance and no overlap filtering,
so that GenEval's own thresholds decide; each box is the tight box around its mask (one past the last pixel, as
mmdet's); labels are the checkpoint's ``id2label`` names, which must cover GenEval's 80 ``object_names.txt``.
``CLIPColours``: CLIP ViT-L/14 zero-shot over GenEval's 10 colours and 3 templates (each template's text embedding
normalised, averaged over templates and normalised again), on each object composited over #999 outside its mask
and cropped to its box, through CLIP's own preprocessing.

This detector's outputs differ from mmdet's Mask2Former (transformers' post-processing thresholds the masks at
384 x 384 and the checkpoint's processor sets the input size, where mmdet works at 1333 x 800), so scores may
differ from the paper's; by how much has not been measured here (no weights offline). Weights load from a
folder, or the hub's cache (from the hub when online); offline without them, building either is refused at once,
naming the download.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from scipy import ndimage

from workbench.errors import ConfigError
from workbench.metrics.geneval import COLOURS, GENEVAL_CLIP, GENEVAL_DETECTOR, Detection
from workbench.resources import data_path
from workbench.toyworld import scenes
from workbench.toyworld.multi import MULTI_SIZE, MultiScene, Thing, render_multi

__all__ = [
    "CLIPColours",
    "Mask2FormerDetector",
    "ToyDetector",
    "geneval_scorer",
    "object_names",
    "palette_colours",
]

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


_ALIASES = {"mouse": "computer mouse", "remote": "tv remote", "keyboard": "computer keyboard"}  # COCO -> GenEval


def _geneval_name(label: str) -> str:
    """A checkpoint's class name as GenEval's ``object_names.txt`` spells it (it renames three COCO classes)."""
    name = str(label).strip().lower().replace("-", " ")
    return _ALIASES.get(name, name)


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
        names = {int(i): _geneval_name(label) for i, label in self.model.config.id2label.items()}
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


# --- the toy world's detector and colours (toyworld.multi's scenes) ----------------------------------------------
#
# ToyDetector finds objects as connected regions that stand out from the background, names each region's shape
# from its box's corners and gives a confidence: the region's area over the smallest object the renderer draws,
# capped at 1. So every drawn object scores about 1 and a speck far less; GenEval's 0.9 counting threshold was
# set for Mask2Former's scores and here only drops regions under 90% of the smallest object. palette_colours
# names an object's colour by the toy palette hue nearest its pixels' median (in place of CLIP).


_STANDS_OUT = 30.0  # a pixel this far (RGB distance) from the background belongs to an object's region


def _distance(pixels: np.ndarray) -> np.ndarray:
    """Each pixel's RGB distance from the background (the median border colour)."""
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    return np.linalg.norm(pixels - np.median(border, axis=0), axis=2)


class ToyDetector:
    """Objects of toy world images, from the pixels alone (above): ``geneval.Detection`` per object,
    its class the shape's name, with its mask."""

    def __init__(self):  # the smallest object's area, as this detector sees it: each shape small, on each background
        every = itertools.product(scenes.SHAPES, scenes.COLOURS, scenes.BACKGROUNDS)
        drawn = [render_multi(MultiScene((Thing(shape, colour, "small", 32.0, 32.0),), background))
                 for shape, colour, background in every]  # fmt: skip
        self.smallest = min(mask.sum() for image in drawn for mask in _masks(np.asarray(image, dtype=np.float64)))

    def __call__(self, images: Sequence[Image.Image]) -> list[list[Detection]]:
        return [self._detect(np.asarray(image.convert("RGB"), dtype=np.float64)) for image in images]

    def _detect(self, pixels: np.ndarray) -> list[Detection]:
        scale = (pixels.shape[0] * pixels.shape[1]) / MULTI_SIZE**2  # areas are measured at MULTI_SIZE
        detections = []
        for mask in _masks(pixels):
            ys, xs = np.nonzero(mask)
            box = (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))
            confidence = min(1.0, len(xs) / scale / self.smallest)
            detections.append(Detection(_shape(mask, box), float(confidence), box, mask))
        return detections


def _masks(pixels: np.ndarray) -> list[np.ndarray]:
    """Each object's mask: a connected region that stands out from the background, narrowed to where it stands
    out by half its contrast or more (so a faint object's outline is read as a bold one's); specks of under 4
    pixels left out."""
    distance = _distance(ndimage.uniform_filter(pixels, size=(3, 3, 1)))
    regions, count = ndimage.label(distance > _STANDS_OUT, structure=np.ones((3, 3)))
    masks = []
    for index in range(1, count + 1):
        region = regions == index
        mask = region & (distance > 0.5 * np.percentile(distance[region], 90))
        if mask.sum() >= 4:
            masks.append(mask)
    return masks


def _shape(mask: np.ndarray, box: tuple[float, float, float, float]) -> str:
    """A region's shape from how much of each corner of its box it fills (a quarter of the box's width and
    height): a triangle fills its bottom corners and not its top ones, a cross none, a square all of them, a
    circle a little of each; between square and circle, how much of its box it fills decides too."""
    x0, y0, x1, y1 = (int(v) for v in box)
    inside = mask[y0:y1, x0:x1]
    h, w = max(1, round(inside.shape[0] / 4)), max(1, round(inside.shape[1] / 4))
    top = (inside[:h, :w].mean() + inside[:h, -w:].mean()) / 2
    bottom = (inside[-h:, :w].mean() + inside[-h:, -w:].mean()) / 2
    if bottom - top > _TRIANGLE_BOTTOM:
        return "triangle"
    corners = (top + bottom) / 2
    if corners < _CROSS_CORNERS:
        return "cross"
    return "square" if corners + inside.mean() > _SQUARE_SUM else "circle"


_TRIANGLE_BOTTOM, _CROSS_CORNERS, _SQUARE_SUM = 0.4, 0.18, 1.35  # measured on clean and degraded renders


def palette_colours(image: Image.Image, found: Sequence[Detection], name: str) -> list[str]:
    """Each object's colour: the toy palette name whose hue is nearest the hue of its pixels' median."""
    pixels = np.asarray(image.convert("RGB"), dtype=np.float64)
    named = []
    for detection in found:
        if detection.mask is None or not np.asarray(detection.mask, bool).any():
            raise ConfigError(f"palette_colours reads an object's pixels through its mask; {detection} has none")
        named.append(scenes.nearest_colour(np.median(pixels[np.asarray(detection.mask, bool)], axis=0)))
    return named
