"""The pixel judge on rendered and degraded scenes: correct captions accepted, one-attribute changes caught, each
attribute read right, and its time per image.

    python benchmarks/judge_robustness.py [--scenes 1000] [--seed 0]

Scenes are drawn with ``scenes.sample_scenes`` and rendered with jitter, once clean and once through
``toyworld.degrade`` (a shape off its template, blur, colour drift, noise, JPEG). For each image the judge reads
its own caption (accepted: ``composition_all`` 1) and the caption with one attribute changed, the attribute and
its new value drawn at random (caught: ``composition_all`` 0), and each attribute is read against the truth. Step
16's goals: at least 97% accepted, 97% caught, and every attribute 95%. Prints the figures and writes
benchmarks/results/judge_robustness.json.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from workbench.toyworld import scenes
from workbench.toyworld.degrade import LIMITS, degrade
from workbench.toyworld.judge import judge_image, read_image

RESULTS = Path(__file__).parent / "results" / "judge_robustness.json"
VALUES = {
    "shape": scenes.SHAPES, "colour": tuple(scenes.COLOURS), "background": tuple(scenes.BACKGROUNDS),
    "size": tuple(scenes.SIZES), "position": tuple(scenes.POSITIONS), "style": scenes.STYLES,
}  # fmt: skip


def measure(images, truth, rng) -> dict:
    """Accepted, caught and per-attribute accuracy of the judge on ``images`` of the scenes ``truth``."""
    accepted, caught, right = [], [], {a: [] for a in scenes.ATTRIBUTES}
    for image, scene in zip(images, truth, strict=True):
        accepted.append(judge_image(image, scenes.caption(scene)).composition_all == 1.0)
        attribute = scenes.ATTRIBUTES[rng.integers(len(scenes.ATTRIBUTES))]
        other = [v for v in VALUES[attribute] if v != getattr(scene, attribute)]
        changed = replace(scene, **{attribute: other[rng.integers(len(other))]})
        caught.append(judge_image(image, scenes.caption(changed)).composition_all == 0.0)
        read = read_image(image)
        for name in scenes.ATTRIBUTES:
            right[name].append(read[name] == getattr(scene, name))
    return {"accepted": round(float(np.mean(accepted)), 4), "caught": round(float(np.mean(caught)), 4),
            "attributes": {a: round(float(np.mean(v)), 4) for a, v in right.items()}}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    truth = scenes.sample_scenes(args.scenes, seed=args.seed)
    clean = [scenes.render(scene, rng) for scene in truth]
    degraded = [degrade(image, rng) for image in clean]
    start = time.perf_counter()
    for image in degraded:
        read_image(image)
    per_image_ms = 1000 * (time.perf_counter() - start) / len(degraded)
    result = {
        "scenes": args.scenes, "seed": args.seed, "limits": LIMITS,
        "rendered": measure(clean, truth, rng), "degraded": measure(degraded, truth, rng),
        "judge_ms_per_image": round(per_image_ms, 3),
    }  # fmt: skip
    print(json.dumps(result, indent=2))
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
