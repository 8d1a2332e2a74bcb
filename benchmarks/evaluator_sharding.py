"""A sharded study against one worker: the same two-model study with one worker (here, every core) and with
two local worker processes (the cores shared out), interleaved over rounds; plus the check that two workers
make the rows and images of one worker at the same thread count.

    python benchmarks/evaluator_sharding.py [--prompts 24] [--steps 20] [--batch-size 4] [--rounds 2]

Prints the wall-clock times and their ratio; writes benchmarks/results/evaluator_sharding.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from workbench import CLIPScorer, GenerationConfig, ModelEvaluator, load_prompts
from workbench.row import TIMING_COLUMNS

RESULTS = Path(__file__).parent / "results" / "evaluator_sharding.json"
MODELS = ["toyworld/sd-small", "toyworld/sd-base"]


def study(prompts, config, folder: Path, **options) -> tuple[float, pd.DataFrame]:
    start = time.perf_counter()
    rows = ModelEvaluator(prompts, MODELS, [0], config, output_dir=folder, scorer=CLIPScorer(), **options).run()
    return time.perf_counter() - start, rows


def comparable(rows: pd.DataFrame) -> pd.DataFrame:
    keep = [c for c in rows.columns if c not in TIMING_COLUMNS]
    return rows[keep].sort_values(["model_id", "prompt_id", "seed"]).reset_index(drop=True)


def max_pixel_difference(rows: pd.DataFrame, a: Path, b: Path) -> int:
    worst = 0
    for path in rows["image_path"]:
        with Image.open(a / path) as x, Image.open(b / path) as y:
            worst = max(worst, int(np.abs(np.asarray(x, np.int16) - np.asarray(y, np.int16)).max()))
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=24)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    prompts = load_prompts("toyworld", n=args.prompts)
    config = GenerationConfig(steps=args.steps, batch_size=args.batch_size)
    cores = os.cpu_count() or 1
    seconds: dict[str, list[float]] = {"one worker": [], "two workers": []}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for round_ in range(args.rounds):  # the order alternates, so drift hits both
            order = ["one worker", "two workers"] if round_ % 2 == 0 else ["two workers", "one worker"]
            for name in order:
                options = {"workers": 2, "threads": max(1, cores // 2)} if name == "two workers" else {}
                elapsed, _ = study(prompts, config, tmp / f"{name}-{round_}", **options)
                seconds[name].append(elapsed)
                print(f"round {round_}: {name} {elapsed:.1f} s", flush=True)
        # Same thread count in every worker: two workers must give one worker's rows and images exactly.
        threads = torch.get_num_threads()
        torch.set_num_threads(max(1, cores // 2))
        _, single = study(prompts, config, tmp / "single-same-threads")
        torch.set_num_threads(threads)
        _, sharded = study(prompts, config, tmp / "sharded-same-threads", workers=2, threads=max(1, cores // 2))
        identical = comparable(single).equals(comparable(sharded))
        same_threads = max_pixel_difference(single, tmp / "single-same-threads", tmp / "sharded-same-threads")
        across_threads = max_pixel_difference(single, tmp / "one worker-0", tmp / "sharded-same-threads")
    result = {
        "models": MODELS,
        "images": len(MODELS) * len(prompts),
        "steps": args.steps,
        "batch_size": args.batch_size,
        "cores": cores,
        "seconds": seconds,
        "two_over_one_wall_clock": statistics.median(
            b / a for a, b in zip(seconds["one worker"], seconds["two workers"], strict=True)
        ),
        "rows_identical_at_same_threads": identical,
        "max_pixel_difference_same_threads": same_threads,
        "max_pixel_difference_one_worker_all_cores_vs_two_workers": across_threads,
    }
    print(json.dumps({k: v for k, v in result.items() if k != "seconds"}, indent=2))
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
