"""The evaluator's overhead: ModelEvaluator (no scoring) against a bare diffusers loop over the same
prompts and seeds, same batching, interleaved over several rounds after a common warm-up.

    python benchmarks/evaluator_overhead.py [--model toyworld/sd-small] [--prompts 16] [--seeds 2] [--rounds 3]

Checks that the images are identical and prints the wall-time ratio; writes
benchmarks/results/evaluator_overhead.json.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from workbench import GenerationConfig, ModelEvaluator, load, load_prompts

RESULTS = Path(__file__).parent / "results" / "evaluator_overhead.json"


def bare_loop(pipe, prompts: list[str], seeds: list[int], config: GenerationConfig) -> list[np.ndarray]:
    images = []
    for prompt in prompts:
        generators = [torch.Generator("cpu").manual_seed(s) for s in seeds]
        out = pipe(
            prompt=[prompt] * len(seeds),
            num_inference_steps=config.steps,
            guidance_scale=config.guidance,
            generator=generators,
            output_type="np",
        )
        images += [(np.clip(i, 0, 1) * 255).round().astype(np.uint8) for i in out.images]
    return images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="toyworld/sd-small")
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    prompts = load_prompts("toyworld", n=args.prompts)
    seeds = list(range(args.seeds))
    config = GenerationConfig(batch_size=len(seeds))
    pipe = load(args.model, device="cpu")
    bare_loop(pipe, prompts["prompt"].tolist()[:1], seeds, config)  # common warm-up
    timings = {"bare_s": [], "evaluator_s": []}
    for _ in range(args.rounds):
        start = time.perf_counter()
        bare = bare_loop(pipe, prompts["prompt"].tolist(), seeds, config)
        timings["bare_s"].append(time.perf_counter() - start)
        with tempfile.TemporaryDirectory() as folder:
            evaluator = ModelEvaluator(
                prompts, [args.model], seeds, config, output_dir=folder, device="cpu", warmup=False
            )
            start = time.perf_counter()
            rows = evaluator.run()
            timings["evaluator_s"].append(time.perf_counter() - start)
            ours = [np.asarray(Image.open(Path(folder) / p)) for p in rows["image_path"]]
        identical = all(np.array_equal(a, b) for a, b in zip(bare, ours, strict=True))
    medians = {k: float(np.median(v)) for k, v in timings.items()}
    ratio = medians["evaluator_s"] / medians["bare_s"]
    result = {
        "model": args.model,
        "images": len(bare),
        **medians,
        "overhead": ratio - 1,
        "images_identical": identical,
        "rounds": timings,
        "torch_threads": torch.get_num_threads(),
    }
    print(
        f"{len(bare)} images of {args.model}: bare loop {medians['bare_s']:.2f} s, evaluator "
        f"{medians['evaluator_s']:.2f} s -> overhead {100 * (ratio - 1):+.1f}% (target <= 5%); "
        f"images identical: {identical}"
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2))
    print(f"written: {RESULTS}")


if __name__ == "__main__":
    main()
