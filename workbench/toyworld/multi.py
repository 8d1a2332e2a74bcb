"""Toy world scenes with one to four objects, for GenEval's rules: scenes, captions in GenEval's forms with their
metadata in GenEval's schema, and a renderer (the detector that reads them is ``metrics.geneval_detectors``'s
``ToyDetector``).

Multi-object scenes are drawn at 64 x 64 (four objects do not fit at 32), plain fills on a plain background, the
objects apart from each other. The six tags, as GenEval words them::

    single_object  a photo of a circle
    two_object     a photo of a circle and a square
    counting       a photo of three triangles              (exactly three: an exclude clause of four)
    colors         a photo of a red circle
    position       a photo of a green cross left of a yellow circle
    color_attr     a photo of a red circle and a blue square

``data/prompts/toyworld-geneval.jsonl`` is ``toy_geneval_prompts(20, seed=0)`` without its scenes (a test checks).
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, replace

import numpy as np
from PIL import Image, ImageDraw

from workbench.errors import ConfigError
from workbench.toyworld import scenes

__all__ = ["MULTI_SIZE", "RADII", "TAGS", "MultiScene", "Thing", "alterations", "draw_entry", "render_multi",
           "toy_geneval_prompts"]  # fmt: skip

MULTI_SIZE = 64
RADII = {"small": 6.0, "large": 9.0}  # pixels at MULTI_SIZE
TAGS = ("single_object", "two_object", "counting", "colors", "position", "color_attr")
NUMBERS = {2: "two", 3: "three", 4: "four"}
OPPOSITE = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}
_MARGIN = 3.0  # pixels between two objects' outlines, at the least
_K = 4  # supersampling
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
            entry = draw_entry(tag, rng)
            if entry["prompt"] not in made:
                made[entry["prompt"]] = entry
                count += 1
                if count == per_tag:
                    break
    return list(made.values())


def draw_entry(tag: str, rng: np.random.Generator) -> dict:
    """One prompt of ``tag`` drawn at random, in GenEval's schema, with a ``scene`` that is right for it."""
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


def alterations(entry: dict, rng: np.random.Generator) -> list[tuple[str, MultiScene, str]]:
    """Scenes that are wrong for ``entry`` (a ``draw_entry``), each with what was altered and a pattern that the
    first line of GenEval's reason for it matches: an object removed or its shape changed, its colour changed, one
    object too few or too many, two objects' colours swapped, a relation reversed."""
    scene, include = entry["scene"], entry["include"]
    first = include[0]["class"]
    things = [{"shape": t.shape, "colour": t.colour, "size": t.size} for t in scene.things]
    missing = re.escape(f"expected {first}>=1, found 0")
    tag, made = entry["tag"], []
    if tag in ("single_object", "colors"):
        other = str(rng.choice([s for s in scenes.SHAPES if s != first]))
        reshaped = replace(scene, things=(replace(scene.things[0], shape=other),))
        made += [("removed", replace(scene, things=()), missing), ("shape changed", reshaped, missing)]
    if tag == "colors":
        colour = include[0]["color"]
        hue = str(rng.choice([c for c in scenes.COLOURS if c != colour]))
        made.append(("colour changed", replace(scene, things=(replace(scene.things[0], colour=hue),)),
                     re.escape(f"expected {colour} {first}>=1, found 0 {colour}; and 1 {hue}")))  # fmt: skip
    elif tag == "counting":
        count = include[0]["count"]
        made += [("one too few", replace(scene, things=scene.things[:-1]),
                  re.escape(f"expected {first}>={count}, found {count - 1}")),
                 ("one too many", replace(scene, things=_place([*things, things[0]], rng)),
                  re.escape(f"expected {first}<{count + 1}, found {count + 1}"))]  # fmt: skip
    elif tag in ("two_object", "color_attr", "position"):
        second = include[1]["class"]
        made += [("first removed", replace(scene, things=scene.things[1:]), missing),
                 ("second removed", replace(scene, things=scene.things[:1]),
                  re.escape(f"expected {second}>=1, found 0"))]  # fmt: skip
        if tag == "color_attr":
            a, b = scene.things
            swapped = (replace(a, colour=b.colour), replace(b, colour=a.colour))
            reason = f"expected {a.colour} {first}>=1, found 0 {a.colour}; and 1 {b.colour}"
            made.append(("colours swapped", replace(scene, things=swapped), re.escape(reason)))
        if tag == "position":
            relation = include[1]["position"][0]
            reversed_ = replace(scene, things=_place(things, rng, OPPOSITE[relation]))
            found = rf"(.+ and )?{OPPOSITE[relation]}( and .+)?"
            made.append(("relation reversed", reversed_, rf"expected {second} {relation} target, found {found} target"))
    return made
