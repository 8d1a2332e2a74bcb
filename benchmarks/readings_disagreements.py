"""Where the judge and the readers of ``data/readings`` disagree, and what the pixels say there.

    python benchmarks/readings_disagreements.py

For every attribute, the images both readers read alike (and not ``unreadable``) where the judge is sure and
reads otherwise, counted by (readers' value, judge's value, background). For style, plain against photo: the
photo's cue that does not depend on the background, the shading, measured as the relative drop in brightness
from the figure's top left to its bottom right (a least-squares slope along the diagonal over the figure's
eroded saturated pixels, times its diameter, over its mean brightness), by group, beside the same measure on
the scene renderer's photos and plain fills. And ``composition_all``'s disagreements with the readings, by
whether the style is among the attributes it got wrong. Prints the figures, with
``readings.judge_against_readings()`` (the judge's accuracy against the readings, as in the validity study's
judge.json); writes benchmarks/results/readings_disagreements.json.
"""

from __future__ import annotations

import collections
import json
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from workbench import readings
from workbench.toyworld import scenes
from workbench.toyworld.captions import parse_prompt
from workbench.toyworld.judge import judge_images, read_images

RESULTS = Path(__file__).parent / "results" / "readings_disagreements.json"


def shading(pixels: np.ndarray) -> float:
    """The figure's relative brightness drop from top left to bottom right (NaN without a figure)."""
    pixels = pixels.astype(np.float64)
    hi, lo = pixels.max(axis=2), pixels.min(axis=2)
    figure = ndimage.binary_erosion(((hi - lo) / np.maximum(hi, 1.0) > 0.45) & (hi > 60))
    if figure.sum() < 6:
        return float("nan")
    ys, xs = np.nonzero(figure)
    brightness = pixels.sum(axis=2)[figure]
    slope = np.polyfit((xs + ys).astype(np.float64), brightness, 1)[0]
    return float(-slope * 2 * np.sqrt(figure.sum() / np.pi) / brightness.mean())


def main() -> None:
    table = readings.readings_table()
    pixels = [np.asarray(Image.open(path).convert("RGB")) for path in table["image"]]
    judged = read_images(pixels)
    disagreements = {}
    for attribute in scenes.ATTRIBUTES:
        counts = collections.Counter()
        for i, row in table.iterrows():
            read = judged[i][attribute]
            seen = row[f"{attribute}_agreed"] and row[attribute] != readings.UNREADABLE
            if seen and read.sure and read.value != row[attribute]:
                counts[f"{row[attribute]} -> {read.value} on {row['background']}"] += 1
        disagreements[attribute] = dict(counts.most_common())
    groups = collections.defaultdict(list)
    for i, row in table.iterrows():
        read = judged[i]["style"]
        if row["style_agreed"] and row["style"] in ("plain", "photo") and read.sure and read.value != "sketch":
            background = "black" if row["background"] == "black" else "white or grey"
            groups[f"readers {row['style']}, judge {read.value}, on {background}"].append(shading(pixels[i]))
    rng = np.random.default_rng(0)
    for style in ("photo", "plain"):
        drawn = [scene for scene in scenes.sample_scenes(400, seed=0) if scene.style == style]
        groups[f"scene renderer's {style}"] = [shading(np.asarray(scenes.render(scene, rng))) for scene in drawn]
    drop = {name: {"images": len(v), "median": round(float(np.nanmedian(v)), 3),
                   "p10": round(float(np.nanpercentile(v, 10)), 3), "p90": round(float(np.nanpercentile(v, 90)), 3)}
            for name, v in groups.items()}  # fmt: skip
    verdicts = judge_images(pixels, list(table["prompt"]))
    wrong_all = collections.Counter()
    for (_, row), verdict in zip(table.iterrows(), verdicts, strict=True):
        named = parse_prompt(row["prompt"]).attributes
        if verdict.composition_all is None or any(row[a] == readings.UNREADABLE for a in named):
            continue
        if verdict.composition_all != float(all(row[a] == v for a, v in named.items())):
            differs = [a for a in named if row[a] != verdict.attributes[a].read]
            wrong_all["style among them" if "style" in differs else "style not among them"] += 1
    result = {"judge_against_readings": readings.judge_against_readings(), "disagreements": disagreements,
              "style_shading": drop, "composition_all_disagreements": wrong_all}  # fmt: skip
    print(json.dumps(result, indent=2))
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
