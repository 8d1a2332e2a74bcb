"""What each metric costs per image on this machine, so a user knows what ``metrics=[...]`` adds to a study.

    python benchmarks/metric_cost.py [--images 256] [--repeats 3]

Per-image metrics: the scorer's time over ``--images`` toy images in the engine's batches (best of
``--repeats``, after a warm-up; loading the weights is reported apart). Per-set metrics: extracting the
features of the images and of as many reference images, then the value with its interval (50 half-samples),
over the images. Prints the table; writes benchmarks/results/metric_cost.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from workbench.errors import ConfigError
from workbench.metrics import METRICS, MetricOptions, image_scorers
from workbench.metrics.reference import ground_truth_image
from workbench.metrics.sets import feature_extractor, set_metric
from workbench.toyworld import scenes

RESULTS = Path(__file__).parent / "results" / "metric_cost.json"
BATCH = 16  # the engine scores a batch of images at a time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    prompts = [scenes.caption(s) for s in scenes.sample_scenes(args.images, seed=1)]
    images = [ground_truth_image(p, 0) for p in prompts]
    reference = [ground_truth_image(p, 1) for p in prompts]
    options = MetricOptions()
    rows = []
    for name, entry in METRICS.items():
        if entry.kind == "image":
            started = time.perf_counter()
            try:
                (scorer,) = image_scorers([name], options)
            except ConfigError as error:  # weights that are not on this machine (geneval's detector offline)
                print(f"{name}: not measured: {error}")
                rows.append({"metric": name, "kind": entry.kind, "not_measured": str(error)})
                continue
            load = time.perf_counter() - started
            scorer.score_columns(images[:BATCH], prompts[:BATCH])  # warm-up
            best = float("inf")
            for _ in range(args.repeats):
                started = time.perf_counter()
                for i in range(0, len(images), BATCH):
                    scorer.score_columns(images[i : i + BATCH], prompts[i : i + BATCH])
                best = min(best, time.perf_counter() - started)
        else:
            started = time.perf_counter()
            extract = feature_extractor(options.clip_model if name == "cmmd" else options.features)
            load = time.perf_counter() - started
            best = float("inf")
            for _ in range(args.repeats):
                started = time.perf_counter()
                set_metric(name, images, reference, extractor=extract, subsets=options.subsets)
                best = min(best, time.perf_counter() - started)
        rows.append({"metric": name, "kind": entry.kind, "ms_per_image": 1000 * best / len(images),
                     "load_s": load})  # fmt: skip
    print(f"{args.images} toy images (32 x 32), {torch.get_num_threads()} CPU threads, {platform.processor()}")
    print(f"{'metric':<16}{'per':<7}{'ms / image':>12}{'load (s)':>10}")
    for row in (r for r in rows if "ms_per_image" in r):
        print(f"{row['metric']:<16}{row['kind']:<7}{row['ms_per_image']:>12.2f}{row['load_s']:>10.2f}")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(
        json.dumps({"images": args.images, "threads": torch.get_num_threads(), "metrics": rows}, indent=2)
    )
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
