"""GenEval's rules (Ghosh et al. 2023), as the authors' ``evaluation/evaluate_images.py`` applies them, on any
detector's detections: which are kept, how ``include`` and ``exclude`` clauses pass or fail and with what reason
text, and how the per-tag and overall scores are summed up (``evaluation/summary_scores.py``). The rules in words
are in ``data/prompts/geneval/SOURCE.md``.

The detector and the colour reader are the caller's: ``Detection`` is a class name, a confidence and a box (and
whatever the colour reader needs, such as a mask); ``colours`` names the colour of each of a list of detections.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from workbench.errors import ConfigError

__all__ = [
    "COLOURS",
    "TAGS",
    "Detection",
    "GenevalResult",
    "evaluate",
    "kept_detections",
    "relative_position",
    "summary_scores",
]

COLOURS = ("red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white")
TAGS = ("single_object", "two_object", "counting", "colors", "position", "color_attr")
THRESHOLD, COUNTING_THRESHOLD = 0.3, 0.9  # the confidence a detection needs to be kept
MAX_OBJECTS = 16  # kept per class, the most confident first
POSITION_THRESHOLD = 0.1  # the share of the two boxes' sizes taken off their centres' offset
Colours = Callable[[Sequence["Detection"], str], list[str]]


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


def summary_scores(rows: pd.DataFrame, column: str = "geneval", tag: str = "category") -> dict[str, float]:
    """Per tag, the share of correct images; ``overall``, the mean of the tags' shares (GenEval's summary).
    Images without a value are left out."""
    scored = rows[rows[column].notna()]
    if scored.empty:
        raise ConfigError(f"no image has a {column} value to sum up", column)
    per_tag = scored.groupby(tag)[column].mean().astype(float)
    return {**per_tag.to_dict(), "overall": float(per_tag.mean())}
