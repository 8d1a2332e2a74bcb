"""False-positive rate of the A/B statistics on A/A tests: both arms are the same prompt, so any
"significant" verdict is a false positive; at alpha = 0.05 about 5% of runs should be one.

Identical arms with shared seeds give identical images (a difference of exactly 0 every time), so the
A/A arms here get independent seeds: a pool of real toy-world images (prompts x seeds, CLIP-scored)
is made once, and each A/A run draws, for every prompt, disjoint seed sets for its two arms, then goes
through the same ``compare_arms`` as every A/B test.

    python benchmarks/ab_false_positives.py [--prompts 16] [--pool-seeds 32] [--seeds-per-arm 2] [--runs 1000]

Prints the figures and writes benchmarks/results/ab_false_positives.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import binomtest

from workbench.abtest import compare_arms
from workbench.config import GenerationConfig
from workbench.generation import generate
from workbench.metrics import CLIPScorer
from workbench.models import load
from workbench.prompts import load_prompts

RESULTS = Path(__file__).parent / "results" / "ab_false_positives.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="toyworld/sd-small")
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--pool-seeds", type=int, default=32)
    parser.add_argument("--seeds-per-arm", type=int, default=2)
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--alpha", type=float, default=0.05)
    args = parser.parse_args()

    # 1. The pool: every prompt with every seed, scored against its prompt.
    start = time.perf_counter()
    prompts = load_prompts("toyworld", n=args.prompts, seed=0)
    pipe, scorer = load(args.model, device="cpu"), CLIPScorer("toyworld/clip")
    seeds = list(range(args.pool_seeds))
    pool = []
    for prompt in prompts.itertuples():
        records = generate(pipe, prompt.prompt, GenerationConfig(batch_size=8), seeds)
        scores = scorer.score([r.image for r in records], [prompt.prompt] * len(records)).scores
        pool += [
            {"prompt_id": prompt.prompt_id, "seed": s, "clip_score": c} for s, c in zip(seeds, scores, strict=True)
        ]
    pool = pd.DataFrame(pool).set_index(["prompt_id", "seed"])["clip_score"]
    pool_seconds = time.perf_counter() - start

    # 2. A/A runs: disjoint seed sets per arm, per prompt; the verdict's test at alpha.
    rng = np.random.default_rng(0)
    p_values, ci_excludes_zero = [], []
    for _ in range(args.runs):
        rows = []
        for prompt_id in prompts["prompt_id"]:
            drawn = rng.choice(seeds, size=2 * args.seeds_per_arm, replace=False)
            for arm, arm_seeds in (("A", drawn[: args.seeds_per_arm]), ("A'", drawn[args.seeds_per_arm :])):
                rows += [{"arm": arm, "prompt_id": prompt_id, "clip_score": pool[(prompt_id, s)]} for s in arm_seeds]
        row = compare_arms(pd.DataFrame(rows), control="A", seed=int(rng.integers(1 << 31))).iloc[0]
        p_values.append(row["p_value"])
        ci_excludes_zero.append(row["ci_low"] > 0 or row["ci_high"] < 0)
    p_values = np.array(p_values)
    false_positives = int((p_values < args.alpha).sum())
    interval = binomtest(false_positives, args.runs).proportion_ci(0.95)
    result = {
        "model": args.model,
        "prompts": args.prompts,
        "seeds_per_arm": args.seeds_per_arm,
        "runs": args.runs,
        "alpha": args.alpha,
        "false_positive_rate": false_positives / args.runs,
        "false_positive_rate_95ci": [interval.low, interval.high],
        "ci_excludes_zero_rate": float(np.mean(ci_excludes_zero)),
        "significant_verdict_rate": float(np.mean((p_values < args.alpha) & np.array(ci_excludes_zero))),
        "pool_images": len(pool),
        "pool_seconds": round(pool_seconds, 1),
    }
    print(
        f"A/A false-positive rate at alpha {args.alpha}: {result['false_positive_rate']:.1%} "
        f"(95% CI {interval.low:.1%}-{interval.high:.1%}) over {args.runs} runs of {args.prompts} prompts x "
        f"{args.seeds_per_arm} seeds per arm"
    )
    print(
        f"the percentile bootstrap CI excluded 0 in {result['ci_excludes_zero_rate']:.1%} of runs; a verdict "
        f"said 'beats' (p < alpha and CI excluding 0) in {result['significant_verdict_rate']:.1%}"
    )
    print(f"pool: {len(pool)} images in {pool_seconds:.0f} s")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {RESULTS}")


if __name__ == "__main__":
    main()
