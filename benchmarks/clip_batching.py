"""Batched CLIP scoring against one image at a time (a processor and model call per image, text
encoded every time), on the same 64 images, interleaved over several rounds.

    python benchmarks/clip_batching.py [--clip toyworld/clip] [--images 64] [--rounds 3]

Prints the figures and writes benchmarks/results/clip_batching.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from workbench.metrics import CLIPScorer
from workbench.toyworld import scenes

RESULTS = Path(__file__).parent / "results" / "clip_batching.json"


@torch.no_grad()
def one_at_a_time(scorer: CLIPScorer, images, prompts) -> list[float]:
    scores = []
    for image, prompt in zip(images, prompts, strict=True):
        inputs = scorer.processor(text=[prompt], images=[image], return_tensors="pt", padding=True)
        output = scorer.model(**inputs)
        cosine = torch.nn.functional.cosine_similarity(output.image_embeds, output.text_embeds)
        scores.append(float(100 * cosine.clamp(min=0)))
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clip", default="toyworld/clip")
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    truth = scenes.sample_scenes(args.images, seed=5)
    rng = np.random.default_rng(5)
    images = [scenes.render(s, rng) for s in truth]
    prompts = [scenes.caption(s) for s in truth]
    timings = {"one_at_a_time_s": [], "batched_s": []}
    for _ in range(args.rounds):
        scorer = CLIPScorer(args.clip)  # fresh: no remembered text embeddings
        start = time.perf_counter()
        single = one_at_a_time(scorer, images, prompts)
        timings["one_at_a_time_s"].append(time.perf_counter() - start)
        start = time.perf_counter()
        batched = scorer.score(images, prompts).scores
        timings["batched_s"].append(time.perf_counter() - start)
    medians = {k: float(np.median(v)) for k, v in timings.items()}
    result = {
        "clip": args.clip,
        "images": args.images,
        "distinct_prompts": len(set(prompts)),
        **medians,
        "speedup": medians["one_at_a_time_s"] / medians["batched_s"],
        "max_score_difference": float(np.max(np.abs(np.array(single) - np.array(batched)))),
        "rounds": timings,
        "torch_threads": torch.get_num_threads(),
    }
    print(
        f"{args.images} images, CLIP {args.clip}: one at a time {medians['one_at_a_time_s']:.3f} s, "
        f"batched {medians['batched_s']:.3f} s -> {result['speedup']:.1f}x faster "
        f"(scores agree within {result['max_score_difference']:.2e})"
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2))
    print(f"written: {RESULTS}")


if __name__ == "__main__":
    main()
