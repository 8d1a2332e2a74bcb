"""The judge on rendered and degraded scenes: correct captions accepted, one-attribute changes caught, each
attribute read right, how often it is unsure, and its time per image.

    python benchmarks/judge_robustness.py [--scenes 1000] [--seed 12345]

Scenes are drawn with ``scenes.sample_scenes`` and drawn twice: by the scene renderer (with its jitter) and by
``independent_render`` below, a second drawing of the same scenes written apart from the renderer and from the
reader's training, that the reader never saw. It differs in how it draws (signed distances at 8x8 samples a
pixel, an outline centred on the edge, a box-blurred shadow) but shares the world's palette, places, sizes and
the renderer's kind of light, all within the ranges the reader was trained on: it checks another drawing, not
shapes or colours beyond the training's. Each is judged
clean and through ``toyworld.degrade`` at the issue's limits (a shape off its template, blur, colour drift,
noise, JPEG). For each image the judge reads its own caption (accepted: ``composition_all`` 1) and the caption
with one attribute changed, the attribute and its new value drawn at random (caught: ``composition_all`` 0); an
image the judge is unsure of is neither. Each attribute is read against the truth (right: surely right). Step 16's
goals: at least 97% accepted, 97% caught, and every attribute 95%. Prints the figures and writes
benchmarks/results/judge_robustness.json.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image

from workbench.toyworld import scenes
from workbench.toyworld.degrade import LIMITS, degrade
from workbench.toyworld.judge import judge_images, read_images

RESULTS = Path(__file__).parent / "results" / "judge_robustness.json"


def independent_render(scene: scenes.Scene, rng: np.random.Generator) -> Image.Image:
    """``scene`` drawn from signed distances at 8x8 samples a pixel: the scene's sizes and places, its own
    shading (a linear light from the top left over the shape's extent), shadow (a box-blurred offset copy) and
    outline (a 1.5 pixel band about the edge)."""
    k, size = 8, scenes.IMAGE_SIZE
    ys, xs = (np.mgrid[0 : size * k, 0 : size * k] + 0.5) / k
    cx, cy = np.array(scenes.POSITIONS[scene.position]) + rng.uniform(-1, 1, 2)
    r = scenes.SIZES[scene.size] + rng.uniform(-0.5, 0.5)
    u, v = xs - cx, ys - cy
    if scene.shape == "circle":
        distance = np.hypot(u, v) - r
    elif scene.shape == "square":
        distance = np.maximum(abs(u), abs(v)) - 0.85 * r
    elif scene.shape == "cross":
        a, b = 0.95 * r, 0.35 * r
        distance = np.minimum(np.maximum(abs(u) - a, abs(v) - b), np.maximum(abs(u) - b, abs(v) - a))
    else:  # triangle: apex up, the three edges' half-planes
        corners = np.array([[0, -r], [0.95 * r, 0.8 * r], [-0.95 * r, 0.8 * r]])
        distance = np.full(u.shape, -np.inf)
        for p, q in zip(corners, np.roll(corners, -1, axis=0), strict=True):
            normal = np.array([q[1] - p[1], p[0] - q[0]]) / np.hypot(*(q - p))
            distance = np.maximum(distance, (u - p[0]) * normal[0] + (v - p[1]) * normal[1])
    inside = (abs(distance) < 0.75) if scene.style == "sketch" else (distance < 0)

    def pool(values: np.ndarray) -> np.ndarray:
        return values.reshape(size, k, size, k, *values.shape[2:]).mean(axis=(1, 3))

    alpha = pool(inside.astype(np.float64))[..., None]
    colour = np.array(scenes.COLOURS[scene.colour], dtype=np.float64) + rng.uniform(-10, 10, 3)
    canvas = np.broadcast_to(np.array(scenes.BACKGROUNDS[scene.background], dtype=np.float64), (*alpha.shape[:2], 3))
    fill = np.broadcast_to(colour, canvas.shape).astype(np.float64)
    if scene.style == "photo":
        padded = np.pad(alpha[..., 0], 3)  # the shadow: two pixels down and right, then a 3x3 box blur
        shadow = sum(padded[dy : dy + size, dx : dx + size] for dy in range(3) for dx in range(3)) / 9
        canvas = canvas * (1 - 0.5 * shadow[..., None])
        t = np.clip(((pool(u) + pool(v)) / (2 * r) + 1) / 2, 0, 1)  # 0 at the top left, 1 at the bottom right
        fill = fill * (1.2 - 0.45 * t)[..., None]
    pixels = np.clip(canvas * (1 - alpha) + fill * alpha, 0, 255)
    return Image.fromarray(pixels.round().astype(np.uint8))


def measure(images, truth, rng) -> dict:
    """Accepted, caught, unsure and per-attribute accuracy of the judge on ``images`` of the scenes ``truth``."""
    changed = []
    for scene in truth:
        attribute = scenes.ATTRIBUTES[rng.integers(len(scenes.ATTRIBUTES))]
        other = [v for v in scenes.VALUES[attribute] if v != getattr(scene, attribute)]
        changed.append(replace(scene, **{attribute: other[rng.integers(len(other))]}))
    own = judge_images(images, [scenes.caption(s) for s in truth])
    other = judge_images(images, [scenes.caption(s) for s in changed])
    readings = read_images(images)
    right = {a: [r[a].sure and r[a].value == getattr(s, a) for r, s in zip(readings, truth, strict=True)]
             for a in scenes.ATTRIBUTES}  # fmt: skip
    unsure = {a: [not r[a].sure for r in readings] for a in scenes.ATTRIBUTES}
    return {"accepted": round(float(np.mean([j.composition_all == 1.0 for j in own])), 4),
            "caught": round(float(np.mean([j.composition_all == 0.0 for j in other])), 4),
            "unsure_images": round(float(np.mean([j.composition_all is None for j in own])), 4),
            "attributes": {a: round(float(np.mean(v)), 4) for a, v in right.items()},
            "unsure": {a: round(float(np.mean(v)), 4) for a, v in unsure.items()}}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=12345)  # none the reader's training drew scenes from
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    truth = scenes.sample_scenes(args.scenes, seed=args.seed)
    sets = {"rendered": [scenes.render(scene, rng) for scene in truth]}
    sets["degraded"] = [degrade(image, rng) for image in sets["rendered"]]
    sets["independent"] = [independent_render(scene, rng) for scene in truth]
    sets["independent_degraded"] = [degrade(image, rng) for image in sets["independent"]]
    judge_images(sets["degraded"][:16], [scenes.caption(s) for s in truth[:16]])  # loads the reader
    start = time.perf_counter()
    for i in range(0, len(truth), 16):  # in the engine's batches
        judge_images(sets["degraded"][i : i + 16], [scenes.caption(s) for s in truth[i : i + 16]])
    per_image_ms = 1000 * (time.perf_counter() - start) / len(truth)
    result = {"scenes": args.scenes, "seed": args.seed, "limits": LIMITS,
              **{name: measure(images, truth, rng) for name, images in sets.items()},
              "judge_ms_per_image": round(per_image_ms, 3)}  # fmt: skip
    print(json.dumps(result, indent=2))
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
