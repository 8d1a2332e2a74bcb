"""What each metric costs per image on this machine, so a user knows what ``metrics=[...]`` adds to a study.

    python benchmarks/metric_cost.py [--images 256] [--repeats 3]

Per-image metrics: the scorer's time over ``--images`` toy images in the engine's batches (best of
``--repeats``, after a warm-up; loading the weights is reported apart); ``geneval`` twice: with its default
detector (not measured where its weights are not on this machine) and with the toy detector on 64-pixel
multi-object renders of the toy GenEval prompts. Per-set metrics: extracting the
features of the images and of as many reference images, then the value with its interval (50 half-samples),
over the images. Prints the table; writes benchmarks/results/metric_cost.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from dataclasses import replace
from pathlib import Path

import torch

from workbench.errors import ConfigError
from workbench.metrics import METRICS, MetricOptions, image_scorers
from workbench.metrics.reference import ground_truth_image
from workbench.metrics.sets import feature_extractor, set_metric
from workbench.toyworld import scenes
from workbench.toyworld.multi import render_multi, toy_geneval_prompts

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
    toy = [e for e in toy_geneval_prompts(20, seed=0)]  # geneval with the toy detector: multi-object renders
    toy = (toy * (args.images // len(toy) + 1))[: args.images]
    toy_images, toy_prompts = [render_multi(e["scene"]) for e in toy], [e["prompt"] for e in toy]
    cases = [(name, name, entry, options, images, prompts) for name, entry in METRICS.items()]
    cases.insert([c[0] for c in cases].index("geneval") + 1, ("geneval (toy detector)", "geneval", METRICS["geneval"],
                 replace(options, geneval_detector="toyworld"), toy_images, toy_prompts))  # fmt: skip
    rows = []
    for label, name, entry, chosen, scored, said in cases:
        if entry.kind == "image":
            started = time.perf_counter()
            try:
                (scorer,) = image_scorers([name], chosen)
            except ConfigError as error:  # weights that are not on this machine (geneval's detector offline)
                print(f"{label}: not measured: {error}")
                rows.append({"metric": label, "kind": entry.kind, "not_measured": str(error)})
                continue
            load = time.perf_counter() - started
            scorer.score_columns(scored[:BATCH], said[:BATCH])  # warm-up
            best = float("inf")
            for _ in range(args.repeats):
                started = time.perf_counter()
                for i in range(0, len(scored), BATCH):
                    scorer.score_columns(scored[i : i + BATCH], said[i : i + BATCH])
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
        rows.append({"metric": label, "kind": entry.kind, "ms_per_image": 1000 * best / len(scored),
                     "load_s": load})  # fmt: skip
    sizes = "32 x 32; 64 x 64 for the toy GenEval"
    print(f"{args.images} toy images ({sizes}), {torch.get_num_threads()} CPU threads, {platform.processor()}")
    print(f"{'metric':<24}{'per':<7}{'ms / image':>12}{'load (s)':>10}")
    for row in (r for r in rows if "ms_per_image" in r):
        print(f"{row['metric']:<24}{row['kind']:<7}{row['ms_per_image']:>12.2f}{row['load_s']:>10.2f}")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(
        json.dumps({"images": args.images, "threads": torch.get_num_threads(), "metrics": rows}, indent=2)
    )
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
