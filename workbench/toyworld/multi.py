"""Toy world scenes with one to four objects, for GenEval's rules: scenes, captions in GenEval's forms with their
metadata in GenEval's schema, a renderer, and a toy detector that reads objects from the pixels alone.

Multi-object scenes are drawn at 64 x 64 (four objects do not fit at 32), plain fills on a plain background, the
objects apart from each other. The six tags, as GenEval words them::

    single_object  a photo of a circle
    two_object     a photo of a circle and a square
    counting       a photo of three triangles              (exactly three: an exclude clause of four)
    colors         a photo of a red circle
    position       a photo of a green cross left of a yellow circle
    color_attr     a photo of a red circle and a blue square

``ToyDetector`` finds objects as connected regions that stand out from the background, names each region's shape
from its outline (how much of its box it fills, how far its centre of mass sits below its box's centre) and gives
a confidence: the region's area over the smallest object the renderer draws, capped at 1. So every drawn object
scores about 1 and a speck of noise far less; GenEval's 0.9 counting threshold was set for Mask2Former's scores
and here only drops regions under 90% of the smallest object. ``palette_colours`` names an object's colour by
the toy palette hue nearest its pixels' median (in place of CLIP). ``data/prompts/toyworld-geneval.jsonl`` is
``toy_geneval_prompts(20, seed=0)`` without its scenes (a test checks).
"""

from __future__ import annotations

import colorsys
import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from workbench.errors import ConfigError
from workbench.metrics.geneval import Detection
from workbench.toyworld import scenes

__all__ = ["MULTI_SIZE", "RADII", "TAGS", "MultiScene", "Thing", "ToyDetector", "palette_colours", "render_multi",
           "toy_geneval_prompts"]  # fmt: skip

MULTI_SIZE = 64
RADII = {"small": 6.0, "large": 9.0}  # pixels at MULTI_SIZE
TAGS = ("single_object", "two_object", "counting", "colors", "position", "color_attr")
NUMBERS = {2: "two", 3: "three", 4: "four"}
_MARGIN = 3.0  # pixels between two objects' outlines, at the least
_K = 4  # supersampling
_STANDS_OUT = 30.0  # a pixel this far (RGB distance) from the background belongs to an object's region
_REACH = 1.25  # how far a shape reaches from its centre, in radii (a square's and a triangle's corners: ~1.2)


@dataclass(frozen=True)
class Thing:
    """One object: its shape, colour and size, and where its centre is (pixels at MULTI_SIZE)."""

    shape: str
    colour: str
    size: str
    x: float
    y: float


@dataclass(frozen=True)
class MultiScene:
    """Objects on one plain background."""

    things: tuple[Thing, ...]
    background: str = "white"


def render_multi(scene: MultiScene, rng: np.random.Generator | None = None) -> Image.Image:
    """``scene`` drawn at MULTI_SIZE, anti-aliased; ``rng`` jitters each object's colour a little."""
    size = MULTI_SIZE * _K
    canvas = Image.new("RGB", (size, size), scenes.BACKGROUNDS[scene.background])
    draw = ImageDraw.Draw(canvas)
    for thing in scene.things:
        colour = np.array(scenes.COLOURS[thing.colour], dtype=np.float64)
        if rng is not None:
            colour = np.clip(colour + rng.uniform(-12, 12, 3), 0, 255)
        fill = tuple(int(v) for v in colour.round())
        scenes._draw_shape(draw, thing.shape, thing.x * _K, thing.y * _K, RADII[thing.size] * _K, fill=fill)
    return canvas.resize((MULTI_SIZE, MULTI_SIZE), Image.Resampling.BOX)


def _place(things: list[dict], rng: np.random.Generator, relation: str | None = None) -> tuple[Thing, ...]:
    """Centres for ``things`` (shape, colour, size), apart from each other; with ``relation``, the second stands
    in it to the first by a clear margin."""
    for _ in range(2000):
        placed: list[Thing] = []
        for thing in things:
            r = _REACH * RADII[thing["size"]]
            x, y = rng.uniform(r + 1, MULTI_SIZE - r - 1, size=2)
            placed.append(Thing(x=float(x), y=float(y), **thing))
        apart = all(np.hypot(a.x - b.x, a.y - b.y) >= _REACH * (RADII[a.size] + RADII[b.size]) + _MARGIN
                    for a, b in itertools.combinations(placed, 2))  # fmt: skip
        if apart and (relation is None or _clearly(placed[1], placed[0], relation)):
            return tuple(placed)
    raise ConfigError(f"cannot place {len(things)} objects apart at {MULTI_SIZE} pixels")


def _clearly(a: Thing, b: Thing, relation: str) -> bool:
    """``a`` stands in ``relation`` to ``b`` with its offset mostly along that axis (as GenEval reads it)."""
    dx, dy = a.x - b.x, a.y - b.y
    along = {"left of": -dx, "right of": dx, "above": -dy, "below": dy}[relation]
    return along > 0.8 * np.hypot(dx, dy) and along > RADII[a.size] + RADII[b.size]


def _a(words: str) -> str:
    """``words`` with its article, as GenEval writes it ("an orange circle")."""
    return f"{'an' if words[0] in 'aeiou' else 'a'} {words}"


def _name(shape: str, count: int = 1) -> str:
    return f"{NUMBERS[count]} {shape}{'es' if shape == 'cross' else 's'}" if count > 1 else f"a {shape}"


def toy_geneval_prompts(per_tag: int = 20, seed: int = 0) -> list[dict]:
    """Up to ``per_tag`` distinct prompts of each tag (seeded; single_object has only 4) in GenEval's schema
    (``tag``, ``include``, ``exclude``, ``prompt``), each with the ``scene`` it was drawn from (a ``MultiScene``
    that is right for it)."""
    rng = np.random.default_rng(seed)
    made: dict[str, dict] = {}
    for tag in TAGS:
        count = 0
        for _ in range(50 * per_tag):
            entry = _draw(tag, rng)
            if entry["prompt"] not in made:
                made[entry["prompt"]] = entry
                count += 1
                if count == per_tag:
                    break
    return list(made.values())


def _draw(tag: str, rng: np.random.Generator) -> dict:
    shapes, colours = list(scenes.SHAPES), list(scenes.COLOURS)
    background = str(rng.choice(list(scenes.BACKGROUNDS)))
    pick = lambda options: str(rng.choice(options))
    size = lambda: pick(list(RADII))
    relation = None
    if tag in ("single_object", "colors"):
        thing = {"shape": pick(shapes), "colour": pick(colours), "size": size()}
        coloured = tag == "colors"
        prompt = f"a photo of {_a(thing['colour'] + ' ' + thing['shape'] if coloured else thing['shape'])}"
        include = [{"class": thing["shape"], "count": 1} | ({"color": thing["colour"]} if coloured else {})]
        things, exclude = [thing], []
    elif tag == "counting":
        shape, count = pick(shapes), int(rng.integers(2, 5))
        things = [{"shape": shape, "colour": pick(colours), "size": "small"} for _ in range(count)]
        prompt = f"a photo of {_name(shape, count)}"
        include, exclude = [{"class": shape, "count": count}], [{"class": shape, "count": count + 1}]
    else:  # two objects of different shapes
        first, second = (str(s) for s in rng.choice(shapes, 2, replace=False))
        hues = (str(c) for c in rng.choice(colours, 2, replace=False))
        a, b = ({"shape": s, "colour": c, "size": size()} for s, c in zip((first, second), hues, strict=True))
        things, exclude = [a, b], []
        if tag == "two_object":
            prompt = f"a photo of a {first} and a {second}"
            include = [{"class": first, "count": 1}, {"class": second, "count": 1}]
        elif tag == "color_attr":
            prompt = f"a photo of {_a(a['colour'] + ' ' + first)} and {_a(b['colour'] + ' ' + second)}"
            include = [{"class": first, "count": 1, "color": a["colour"]},
                       {"class": second, "count": 1, "color": b["colour"]}]  # fmt: skip
        else:  # position: "a photo of a B left of an A"; B related to A
            relation = pick(["left of", "right of", "above", "below"])
            prompt = f"a photo of a {second} {relation} a {first}"
            include = [{"class": first, "count": 1}, {"class": second, "count": 1, "position": [relation, 0]}]
    scene = MultiScene(_place(things, rng, relation), background)
    return {"tag": tag, "include": include, "exclude": exclude, "prompt": prompt, "scene": scene}


def _hue(rgb: np.ndarray) -> float:
    return colorsys.rgb_to_hsv(*(np.clip(rgb, 0, 255) / 255.0))[0]


_PALETTE_HUES = {name: _hue(np.array(rgb, dtype=np.float64)) for name, rgb in scenes.COLOURS.items()}


def _distance(pixels: np.ndarray) -> np.ndarray:
    """Each pixel's RGB distance from the background (the median border colour)."""
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    return np.linalg.norm(pixels - np.median(border, axis=0), axis=2)


class ToyDetector:
    """Objects of toy world images, from the pixels alone (module docstring): ``geneval.Detection`` per object,
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
        hue = _hue(np.median(pixels[np.asarray(detection.mask, bool)], axis=0))
        gaps = {n: min(abs(hue - h), 1 - abs(hue - h)) for n, h in _PALETTE_HUES.items()}
        named.append(min(gaps, key=gaps.get))
    return named
