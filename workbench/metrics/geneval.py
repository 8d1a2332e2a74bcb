"""GenEval's rules (Ghosh et al. 2023), as the authors' ``evaluation/evaluate_images.py`` applies them, on any
detector's detections: which are kept, how ``include`` and ``exclude`` clauses pass or fail and with what reason
text, and how the per-tag and overall scores are summed up (``evaluation/summary_scores.py``). The rules in words
are in ``data/prompts/geneval/SOURCE.md``.

The detector and the colour reader are the caller's: ``Detection`` is a class name, a confidence and a box (and
whatever the colour reader needs, such as a mask); ``colours`` names the colour of each of a list of detections.
``GenevalScorer`` scores images with them (``ImageScorer``: ``geneval`` 1/0 and GenEval's reason), finding each
prompt's metadata by its text: the 553 GenEval prompts are unique, and other metadata can be given.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from workbench.errors import ConfigError

__all__ = [
    "COLOURS",
    "GENEVAL_CLIP",
    "GENEVAL_DETECTOR",
    "TAGS",
    "Detection",
    "Detector",
    "GenevalResult",
    "GenevalScorer",
    "evaluate",
    "geneval_checklist",
    "geneval_metadata",
    "kept_detections",
    "relative_position",
    "summary_scores",
]

GENEVAL_DETECTOR = "facebook/mask2former-swin-small-coco-instance"  # Swin-S, as in GenEval's paper
GENEVAL_CLIP = "openai/clip-vit-large-patch14"
COLOURS = ("red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white")
TAGS = ("single_object", "two_object", "counting", "colors", "position", "color_attr")
THRESHOLD, COUNTING_THRESHOLD = 0.3, 0.9  # the confidence a detection needs to be kept
MAX_OBJECTS = 16  # kept per class, the most confident first
POSITION_THRESHOLD = 0.1  # the share of the two boxes' sizes taken off their centres' offset
Colours = Callable[[Sequence["Detection"], str], list[str]]
Detector = Callable[[Sequence[Image.Image]], list[list["Detection"]]]  # images -> each image's detections
ImageColours = Callable[[Image.Image, Sequence["Detection"], str], list[str]]  # colours of detections in an image


@dataclass(frozen=True)
class Detection:
    """One detected object: its class name, confidence and box (x0, y0, x1, y1, in pixels, y down); ``mask``
    (optional) is for the colour reader."""

    label: str
    score: float
    box: tuple[float, float, float, float]
    mask: Any = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class GenevalResult:
    """An image against its GenEval metadata: correct or not, and GenEval's reasons (newline-joined)."""

    correct: bool
    reason: str


def kept_detections(detections: Sequence[Detection], tag: str) -> dict[str, list[Detection]]:
    """Per class, the detections above the confidence threshold (0.9 for the ``counting`` tag, else 0.3), most
    confident first, at most 16 (GenEval's overlap removal is off by default: none here)."""
    threshold = COUNTING_THRESHOLD if tag == "counting" else THRESHOLD
    kept: dict[str, list[Detection]] = {}
    for detection in sorted(detections, key=lambda d: -d.score):
        if detection.score > threshold and len(kept.setdefault(detection.label, [])) < MAX_OBJECTS:
            kept[detection.label].append(detection)
    return {label: found for label, found in kept.items() if found}


def relative_position(a: Detection, b: Detection) -> set[str]:
    """Where ``a`` is relative to ``b``: the centres' offset less 0.1 x the two boxes' sizes per axis, over the
    offset's length; "left of" / "right of" / "above" / "below" where that exceeds 0.5 (more than one may hold;
    none when both reduced components are under 1e-3)."""
    boxes = np.array([a.box, b.box], dtype=np.float64).reshape(2, 2, 2)
    centre_a, centre_b = boxes.mean(axis=1)
    size_a, size_b = np.abs(boxes[:, 1] - boxes[:, 0])
    offset = centre_a - centre_b
    reduced = np.maximum(np.abs(offset) - POSITION_THRESHOLD * (size_a + size_b), 0) * np.sign(offset)
    if np.all(np.abs(reduced) < 1e-3):
        return set()
    dx, dy = reduced / np.linalg.norm(offset)
    return {name for name, holds in (("left of", dx < -0.5), ("right of", dx > 0.5), ("above", dy < -0.5),
                                      ("below", dy > 0.5)) if holds}  # fmt: skip


def _relations(relations: set[str]) -> str:
    """GenEval joins a set (in no set order); here in a fixed one, so a reason reads the same every run."""
    return " and ".join(name for name in ("left of", "right of", "above", "below") if name in relations)


def evaluate(detections: Sequence[Detection], metadata: Mapping[str, Any], colours: Colours) -> GenevalResult:
    """GenEval's verdict on an image from its detections and its prompt's metadata (``tag``, ``include``, optional
    ``exclude``). ``colours(found, class)`` names the colour of each detection in ``found``; it is asked only for
    the most confident ``count`` detections of a clause with a colour, after its count passed."""
    kept = kept_detections(detections, metadata["tag"])
    reasons: list[str] = []
    matched: list[list[Detection] | None] = []
    for clause in metadata.get("include", []):
        name, count = clause["class"], clause["count"]
        found = kept.get(name, [])[:count]
        ok = len(found) >= count
        if not ok:
            reasons.append(f"expected {name}>={count}, found {len(found)}")
        else:
            if "color" in clause:
                named = colours(found, name)
                if named.count(clause["color"]) < count:
                    ok = False
                    seen = ", ".join(f"{named.count(c)} {c}" for c in COLOURS if c in named)
                    reasons.append(f"expected {clause['color']} {name}>={count}, found "
                                   f"{named.count(clause['color'])} {clause['color']}; and {seen}")  # fmt: skip
            if "position" in clause and ok:
                relation, target = clause["position"]
                if matched[target] is None:
                    ok = False
                    reasons.append(f"no target for {name} to be {relation}")
                else:
                    ok = _placed(found, matched[target], name, relation, reasons)
        matched.append(found if ok else None)
    for clause in metadata.get("exclude", []):
        name, count = clause["class"], clause["count"]
        if len(kept.get(name, [])) >= count:
            reasons.append(f"expected {name}<{count}, found {len(kept[name])}")
    return GenevalResult(not reasons, "\n".join(reasons))


def _placed(found: list[Detection], targets: list[Detection], name: str, relation: str, reasons: list[str]) -> bool:
    """Whether every object of ``found`` stands in ``relation`` to every target; at the first pair that does not,
    its reason is added."""
    for detection in found:
        for target in targets:
            relations = relative_position(detection, target)
            if relation not in relations:
                reasons.append(f"expected {name} {relation} target, found {_relations(relations)} target")
                return False
    return True


@functools.cache
def geneval_metadata() -> dict[str, dict[str, Any]]:
    """GenEval's metadata (``tag``, ``include``, ``exclude``) by prompt text, from the shipped prompt sets: GenEval's
    553 and the toy world's (``toyworld-geneval``)."""
    from workbench.prompts import load_prompts

    table = pd.concat([load_prompts("geneval"), load_prompts("toyworld-geneval")])
    return {row.prompt: {"tag": row.category, "include": json.loads(row.include), "exclude": json.loads(row.exclude)}
            for row in table.itertuples()}  # fmt: skip


_NUMBERS = {2: "two", 3: "three", 4: "four", 5: "five", 6: "six"}


def _plural(name: str) -> str:
    return name + ("es" if name.endswith(("s", "x", "ch", "sh")) else "s")


def _objects(count: int, name: str, colour: str | None = None) -> str:
    words = f"{colour} {name}" if colour else name
    if count > 1:
        return f"{_NUMBERS.get(count, count)} {_plural(words)}"
    return f"{'an' if words[0] in 'aeiou' else 'a'} {words}"


def geneval_checklist(metadata: Mapping[str, Any]) -> list[str]:
    """What GenEval checks of a prompt, as parts people can be asked about one by one (step 15's alignment
    checklist; a part's name before its colon): "object: a bench", "count: two clocks", "colour: a purple wine
    glass", "position: the dog is right of the teddy bear", and an exclude clause "count: fewer than three
    clocks"."""
    include = list(metadata.get("include", []))
    parts = []
    for clause in include:
        name, count, colour = clause["class"], clause["count"], clause.get("color")
        kind = "colour" if colour else ("count" if count > 1 else "object")
        parts.append(f"{kind}: {_objects(count, name, colour)}")
        if "position" in clause:
            relation, target = clause["position"]
            parts.append(f"position: the {name} is {relation} the {include[target]['class']}")
    for clause in metadata.get("exclude", []):
        parts.append(f"count: fewer than {_NUMBERS.get(clause['count'], clause['count'])} {_plural(clause['class'])}")
    return parts


class GenevalScorer:
    """``geneval`` per image (1.0 correct, 0.0 not; ``ImageScorer``) with ``geneval_reason`` (GenEval's reasons,
    or why an image has no value) and ``geneval_tag`` (the prompt's GenEval tag, whatever its category), from a
    ``detector`` and a ``colours`` reader. A prompt's metadata is found by its text in ``metadata`` (default: the
    GenEval prompts'); a prompt without any gets no value."""

    metrics: tuple[str, ...] = ("geneval",)

    def __init__(self, detector: Detector, colours: ImageColours, metadata: Mapping[str, Mapping] | None = None):
        self.detector, self.colours = detector, colours
        self.metadata = geneval_metadata() if metadata is None else metadata

    def score_columns(self, images: Sequence[Image.Image], prompts: Sequence[str]) -> dict[str, list[Any]]:
        known = [i for i, prompt in enumerate(prompts) if prompt in self.metadata]
        found = self.detector([images[i] for i in known]) if known else []
        if len(found) != len(known):
            raise ConfigError(f"the detector returned {len(found)} lists of detections for {len(known)} images")
        values: list[float | None] = [None] * len(images)
        reasons = ["no GenEval metadata for this prompt (not one of GenEval's prompts, nor given)"] * len(images)
        for i, detections in zip(known, found, strict=True):
            image = images[i]
            result = evaluate(detections, self.metadata[prompts[i]],
                              lambda objects, name, image=image: self.colours(image, objects, name))  # fmt: skip
            values[i], reasons[i] = float(result.correct), result.reason
        tags = [self.metadata[p].get("tag") if p in self.metadata else None for p in prompts]
        return {"geneval": values, "geneval_reason": reasons, "geneval_tag": tags}


def summary_scores(rows: pd.DataFrame, column: str = "geneval", tag: str = "category") -> dict[str, float]:
    """Per tag, the share of correct images; ``overall``, the mean of the tags' shares (GenEval's summary).
    Images without a value are left out."""
    scored = rows[rows[column].notna()]
    if scored.empty:
        raise ConfigError(f"no image has a {column} value to sum up", column)
    per_tag = scored.groupby(tag)[column].mean().astype(float)
    return {**per_tag.to_dict(), "overall": float(per_tag.mean())}
