"""Procedurally drawn scenes and their captions: the data the toy world is trained and judged on.

A scene is one coloured shape on a plain background, described by six attributes::

    shape       circle, square, triangle, cross
    colour      red, orange, yellow, green, blue, purple
    background  white, black, grey
    size        small, large
    position    left, right, top, bottom, centre
    style       plain (flat fill), photo (shaded, soft shadow), sketch (outline only)

Every attribute is named in the caption ("a photo of a large red circle on the left, on a white
background"), with synonyms when asked, so the caption alone determines the picture up to a small
jitter. Scenes are drawn at 4x and downsampled, so edges are anti-aliased. Everything is seeded.
"""

from __future__ import annotations

import colorsys
import itertools
from dataclasses import asdict, dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

__all__ = [
    "ATTRIBUTES",
    "BACKGROUNDS",
    "COLOURS",
    "HELD_OUT",
    "IMAGE_SIZE",
    "POSITIONS",
    "SHAPES",
    "SIZES",
    "STYLES",
    "VALUES",
    "Scene",
    "all_scenes",
    "caption",
    "nearest_colour",
    "pixel_attributes",
    "render",
    "sample_scenes",
    "vocabulary",
]

IMAGE_SIZE = 32
_SUPERSAMPLE = 4

SHAPES = ("circle", "square", "triangle", "cross")
COLOURS = {
    "red": (215, 35, 35),
    "orange": (245, 135, 20),
    "yellow": (240, 215, 30),
    "green": (40, 170, 60),
    "blue": (40, 80, 225),
    "purple": (145, 55, 200),
}
BACKGROUNDS = {"white": (245, 245, 245), "black": (15, 15, 15), "grey": (128, 128, 128)}
SIZES = {"small": 5.0, "large": 9.0}  # radius in pixels at IMAGE_SIZE
POSITIONS = {
    "centre": (16.0, 16.0),
    "left": (9.5, 16.0),
    "right": (22.5, 16.0),
    "top": (16.0, 9.5),
    "bottom": (16.0, 22.5),
}
STYLES = ("plain", "photo", "sketch")
ATTRIBUTES = ("shape", "colour", "background", "size", "position", "style")
# Every attribute's values, in order.
VALUES = {
    "shape": SHAPES, "colour": tuple(COLOURS), "background": tuple(BACKGROUNDS), "size": tuple(SIZES),
    "position": tuple(POSITIONS), "style": STYLES,
}  # fmt: skip

# Shape/colour pairs the generators never see in training (the CLIP sees everything): a probe of
# compositional generalisation.
HELD_OUT = frozenset({("circle", "yellow"), ("square", "purple"), ("triangle", "red"), ("cross", "blue")})

_STYLE_PREFIX = {
    "plain": ("a", "a"),
    "photo": ("a photo of a", "a photograph of a"),
    "sketch": ("a sketch of a", "a drawing of a"),
}
_SIZE_WORDS = {"small": ("small", "tiny"), "large": ("large", "big")}
_POSITION_WORDS = {
    "centre": ("in the centre", "in the center"),
    "left": ("on the left", "on the left side"),
    "right": ("on the right", "on the right side"),
    "top": ("at the top", "at the top"),
    "bottom": ("at the bottom", "at the bottom"),
}
_BACKGROUND_WORDS = {"white": ("white", "white"), "black": ("black", "dark"), "grey": ("grey", "gray")}


@dataclass(frozen=True)
class Scene:
    """One scene: a value for each attribute in ATTRIBUTES."""

    shape: str
    colour: str
    background: str
    size: str
    position: str
    style: str

    def attributes(self) -> dict[str, str]:
        return asdict(self)

    @property
    def held_out(self) -> bool:
        return (self.shape, self.colour) in HELD_OUT


def all_scenes() -> list[Scene]:
    """Every scene of the world, in a fixed order (one caption each)."""
    return [Scene(*values) for values in itertools.product(SHAPES, COLOURS, BACKGROUNDS, SIZES, POSITIONS, STYLES)]


def caption(scene: Scene, synonym: int = 0) -> str:
    """The caption of a scene; ``synonym=1`` swaps in the alternative words."""
    return (
        f"{_STYLE_PREFIX[scene.style][synonym]} {_SIZE_WORDS[scene.size][synonym]} {scene.colour} "
        f"{scene.shape} {_POSITION_WORDS[scene.position][synonym]}, on a "
        f"{_BACKGROUND_WORDS[scene.background][synonym]} background"
    )


def vocabulary() -> list[str]:
    """Every word that captions use: the toy tokenizer gives each its own token."""
    phrases = [
        *itertools.chain(
            _STYLE_PREFIX.values(), _SIZE_WORDS.values(), _POSITION_WORDS.values(), _BACKGROUND_WORDS.values()
        ),
        SHAPES,
        tuple(COLOURS),
        ("on", "background"),
    ]
    words = {word for group in phrases for phrase in group for word in phrase.split()}
    return sorted(words)


def sample_scenes(n: int, seed: int, *, exclude_held_out: bool = False) -> list[Scene]:
    """``n`` scenes drawn uniformly (seeded); optionally without the HELD_OUT shape/colour pairs."""
    scenes = all_scenes()
    if exclude_held_out:
        scenes = [s for s in scenes if not s.held_out]
    rng = np.random.default_rng(seed)
    return [scenes[i] for i in rng.integers(0, len(scenes), size=n)]


def _shape_polygon(shape: str, cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    if shape == "square":
        s = r * 0.85
        return [(cx - s, cy - s), (cx + s, cy - s), (cx + s, cy + s), (cx - s, cy + s)]
    if shape == "triangle":
        return [(cx, cy - r), (cx + r * 0.95, cy + r * 0.8), (cx - r * 0.95, cy + r * 0.8)]
    if shape == "cross":
        a, b = r * 0.95, r * 0.35
        return [
            (cx - b, cy - a),
            (cx + b, cy - a),
            (cx + b, cy - b),
            (cx + a, cy - b),
            (cx + a, cy + b),
            (cx + b, cy + b),
            (cx + b, cy + a),
            (cx - b, cy + a),
            (cx - b, cy + b),
            (cx - a, cy + b),
            (cx - a, cy - b),
            (cx - b, cy - b),
        ]
    raise ValueError(f"not a polygon shape: {shape!r}")


def _draw_shape(
    draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, r: float, *, fill=None, outline=None, width: int = 0
) -> None:
    if shape == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill, outline=outline, width=width)
    else:
        draw.polygon(_shape_polygon(shape, cx, cy, r), fill=fill, outline=outline, width=width)


def render(scene: Scene, rng: np.random.Generator | None = None) -> Image.Image:
    """Draw ``scene`` as an IMAGE_SIZE x IMAGE_SIZE RGB image; ``rng`` adds colour/place jitter."""
    k = _SUPERSAMPLE
    size = IMAGE_SIZE * k
    jitter = (lambda scale: float(rng.uniform(-scale, scale))) if rng is not None else (lambda scale: 0.0)
    colour = np.clip(np.array(COLOURS[scene.colour]) + [jitter(12) for _ in range(3)], 0, 255)
    background = np.array(BACKGROUNDS[scene.background], dtype=np.float64)
    cx, cy = POSITIONS[scene.position]
    cx, cy = (cx + jitter(1.0)) * k, (cy + jitter(1.0)) * k
    r = (SIZES[scene.size] + jitter(0.5)) * k

    mask = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(mask)
    if scene.style == "sketch":
        _draw_shape(draw, scene.shape, cx, cy, r, outline=255, width=int(1.6 * k))
    else:
        _draw_shape(draw, scene.shape, cx, cy, r, fill=255)
    alpha = np.asarray(mask, dtype=np.float64)[..., None] / 255.0

    canvas = np.broadcast_to(background, (size, size, 3)).copy()
    fill = np.broadcast_to(colour, (size, size, 3)).astype(np.float64)
    if scene.style == "photo":
        shadow = mask.transform(mask.size, Image.AFFINE, (1, 0, -2.5 * k, 0, 1, -2.5 * k))
        shadow = np.asarray(shadow.filter(ImageFilter.GaussianBlur(1.5 * k)), dtype=np.float64)[..., None]
        canvas *= 1.0 - 0.55 * shadow / 255.0
        # Light from the top left: brighter there, darker towards the bottom right.
        ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
        light = 1.2 - 0.45 * (((xs - cx) + (ys - cy)) / (2 * r) + 0.5)
        fill = np.clip(fill * np.clip(light, 0.7, 1.25)[..., None], 0, 255)
    canvas = canvas * (1 - alpha) + fill * alpha
    image = Image.fromarray(canvas.round().astype(np.uint8))
    return image.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BOX)


def _nearest(value: np.ndarray, table: dict[str, tuple[int, int, int]]) -> str:
    names = list(table)
    distances = [np.linalg.norm(value - np.array(table[n], dtype=np.float64)) for n in names]
    return names[int(np.argmin(distances))]


def _hue(rgb: np.ndarray) -> float:
    return colorsys.rgb_to_hsv(*(rgb / 255.0))[0]


_LARGE_EXTENT = 12.5  # pixels: small shapes span 8.5-10, large ones 15-18
_COLOUR_HUES = {name: _hue(np.array(rgb, dtype=np.float64)) for name, rgb in COLOURS.items()}


def nearest_colour(rgb: np.ndarray) -> str:
    """The palette colour whose hue is nearest ``rgb``'s (0-255), round the hue circle."""
    hue = _hue(np.asarray(rgb, dtype=np.float64))
    return min(_COLOUR_HUES, key=lambda n: min(abs(hue - _COLOUR_HUES[n]), 1 - abs(hue - _COLOUR_HUES[n])))


def pixel_attributes(image: Image.Image) -> dict[str, str | None]:
    """Read colour, background, size and position straight off the pixels (no model involved).

    The background is the median border colour; the foreground is the saturated pixels (shapes are
    saturated, backgrounds and shadows are neutral); colour is the nearest palette hue of the
    foreground's median, size and position come from the foreground's bounding box. Attributes are
    ``None`` when no foreground is found.
    """
    pixels = np.asarray(image.convert("RGB").resize((IMAGE_SIZE, IMAGE_SIZE)), dtype=np.float64)
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    result: dict[str, str | None] = {"background": _nearest(np.median(border, axis=0), BACKGROUNDS)}
    hi, lo = pixels.max(axis=2), pixels.min(axis=2)
    saturation = (hi - lo) / np.maximum(hi, 1.0)
    foreground = (saturation > 0.45) & (hi > 60)
    if foreground.sum() < 4:
        return {**result, "colour": None, "size": None, "position": None}
    median = np.median(pixels[foreground], axis=0)
    result["colour"] = nearest_colour(median)
    ys, xs = np.nonzero(foreground)
    extent = max(xs.max() - xs.min(), ys.max() - ys.min()) + 1
    result["size"] = "large" if extent >= _LARGE_EXTENT else "small"
    centre = np.array([(xs.max() + xs.min()) / 2 + 0.5, (ys.max() + ys.min()) / 2 + 0.5])
    result["position"] = min(POSITIONS, key=lambda p: np.linalg.norm(centre - np.array(POSITIONS[p])))
    return result
