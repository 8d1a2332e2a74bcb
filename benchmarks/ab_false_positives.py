"""A/A tests of the paired statistics: the false-positive rate of the test, and the coverage of each
candidate confidence interval (the share of 95% intervals that contain the true difference).

Both arms of an A/A test are the same prompt, so the true difference is 0: at alpha = 0.05 about 5% of
runs should have p < alpha, and a 95% interval should contain 0 in about 95% of runs. Identical arms
with shared seeds give identical images (a difference of exactly 0 every time), so the A/A arms here get
independent seeds: a pool of real toy-world images (prompts x seeds, CLIP-scored) is made once, and each
A/A run draws, for every prompt, disjoint seed sets for its two arms, then goes through the same
``compare_arms`` as every A/B test. The intervals are also checked on simulated per-prompt differences
with a known mean: normal, skewed (exponential), and symmetric with heavy tails (Student's t, 3 degrees of
freedom), the shape of the A/A differences (whose skewness and excess kurtosis are reported).

    python benchmarks/ab_false_positives.py [--prompts 16] [--pool-seeds 32] [--seeds-per-arm 2] [--runs 1000]
                                            [--simulations 4000]

Prints the figures and writes benchmarks/results/ab_false_positives.json; the default interval,
``workbench.stats.INTERVAL``, is chosen from these figures (its docstring says why).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import binomtest, kurtosis, skew

from workbench import stats
from workbench.abtest import compare_arms
from workbench.config import GenerationConfig
from workbench.generation import generate
from workbench.metrics import CLIPScorer
from workbench.models import load
from workbench.prompts import load_prompts

RESULTS = Path(__file__).parent / "results" / "ab_false_positives.json"
TARGET = (0.93, 0.97)  # 95% ± 2
SIMULATED = {  # name: (draw, true mean); the target applies to the A/A runs, normal and exponential
    "normal": (lambda rng, size: rng.normal(0.5, 1.0, size), 0.5),
    "exponential": (lambda rng, size: rng.exponential(1.0, size), 1.0),  # skewed (skewness 2)
    "student_t3": (lambda rng, size: rng.standard_t(3, size) + 0.5, 0.5),  # symmetric, heavy tails
}


def rate(hits: int, runs: int) -> dict[str, float | list[float]]:
    """A share with its exact (Clopper-Pearson) 95% interval."""
    interval = binomtest(hits, runs).proportion_ci(0.95)
    return {"rate": hits / runs, "ci95": [round(interval.low, 4), round(interval.high, 4)]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="toyworld/sd-small")
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--pool-seeds", type=int, default=32)
    parser.add_argument("--seeds-per-arm", type=int, default=2)
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--simulations", type=int, default=4000)
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

    # 2. A/A runs: disjoint seed sets per arm, per prompt; the test at alpha and every interval on the same runs.
    start = time.perf_counter()
    rng = np.random.default_rng(0)
    p_values, differences = [], []
    contains_zero, widths = {method: [] for method in stats.INTERVALS}, {method: [] for method in stats.INTERVALS}
    for _ in range(args.runs):
        rows = []
        for prompt_id in prompts["prompt_id"]:
            drawn = rng.choice(seeds, size=2 * args.seeds_per_arm, replace=False)
            for arm, arm_seeds in (("A", drawn[: args.seeds_per_arm]), ("A'", drawn[args.seeds_per_arm :])):
                rows += [{"arm": arm, "prompt_id": prompt_id, "clip_score": pool[(prompt_id, s)]} for s in arm_seeds]
        rows, seed = pd.DataFrame(rows), int(rng.integers(1 << 31))
        p_values.append(compare_arms(rows, control="A", seed=seed).iloc[0]["p_value"])
        table = stats.per_prompt(rows, by="arm", metric="clip_score")
        diff = (table["A'"] - table["A"]).to_numpy()
        differences.append(diff)
        for method, hits in contains_zero.items():
            low, high = stats.mean_ci(diff, method=method, seed=seed)
            hits.append(low <= 0 <= high)
            widths[method].append(high - low)
    significant = np.array(p_values) < args.alpha
    a_a = {
        method: {
            "coverage": rate(int(np.sum(hits)), args.runs),
            "significant_verdict_rate": float(np.mean(significant & ~np.array(hits))),
            "median_width": float(np.median(widths[method])),
        }
        for method, hits in contains_zero.items()
    }
    differences = np.concatenate(differences)
    shape = {"skewness": float(skew(differences)), "excess_kurtosis": float(kurtosis(differences))}
    a_a_seconds = time.perf_counter() - start

    # 3. Simulated per-prompt differences with a known mean.
    start = time.perf_counter()
    simulated = {}
    for name, (draw, true_mean) in SIMULATED.items():
        data = draw(np.random.default_rng(1), (args.simulations, args.prompts))
        simulated[name] = {}
        for method in stats.INTERVALS:
            cis = [stats.mean_ci(values, method=method, seed=i) for i, values in enumerate(data)]
            hits = sum(low <= true_mean <= high for low, high in cis)
            simulated[name][method] = {
                "coverage": rate(hits, args.simulations),
                "median_width": float(np.median([high - low for low, high in cis])),
            }
    simulated_seconds = time.perf_counter() - start

    within = {
        method: all(
            TARGET[0] <= figures[method]["coverage"]["rate"] <= TARGET[1]
            for figures in (a_a, simulated["normal"], simulated["exponential"])  # the heavy tails explain, not judge
        )
        for method in stats.INTERVALS
    }
    false_positives = int(significant.sum())
    result = {
        "model": args.model,
        "prompts": args.prompts,
        "seeds_per_arm": args.seeds_per_arm,
        "runs": args.runs,
        "simulations": args.simulations,
        "alpha": args.alpha,
        "interval_in_use": stats.INTERVAL,
        "false_positive_rate": false_positives / args.runs,
        "false_positive_rate_95ci": rate(false_positives, args.runs)["ci95"],
        "a_a_differences": shape,
        "a_a": a_a,
        "simulated": simulated,
        "within_95_pm_2_on_a_a_normal_exponential": within,
        "pool_images": len(pool),
        "pool_seconds": round(pool_seconds, 1),
        "a_a_seconds": round(a_a_seconds, 1),
        "simulated_seconds": round(simulated_seconds, 1),
    }
    print(
        f"A/A false-positive rate of the signed-rank test at alpha {args.alpha}: {false_positives / args.runs:.1%} "
        f"(95% CI {result['false_positive_rate_95ci'][0]:.1%}-{result['false_positive_rate_95ci'][1]:.1%}) over "
        f"{args.runs} runs of {args.prompts} prompts x {args.seeds_per_arm} seeds per arm"
    )
    print(
        f"the A/A per-prompt differences: skewness {shape['skewness']:.2f}, "
        f"excess kurtosis {shape['excess_kurtosis']:.2f}"
    )
    print(f"coverage of 95% intervals at {args.prompts} prompts (95% CI of the coverage):")
    print(f"  {'method':<12} {'A/A (true 0)':<22} " + " ".join(f"{name:<22}" for name in SIMULATED) + " 'beats' (A/A)")
    for method in stats.INTERVALS:
        cells = [
            f"{c['rate']:.1%} [{c['ci95'][0]:.1%}, {c['ci95'][1]:.1%}]"
            for c in (a_a[method]["coverage"], *(simulated[name][method]["coverage"] for name in SIMULATED))
        ]
        mark = "  within 95 ± 2 on A/A, normal and exponential" if within[method] else ""
        print(
            f"  {method:<12} "
            + " ".join(f"{c:<22}" for c in cells)
            + f" {a_a[method]['significant_verdict_rate']:.1%}{mark}"
        )
    print(
        f"pool: {len(pool)} images in {pool_seconds:.0f} s; A/A runs {a_a_seconds:.0f} s; "
        f"simulations {simulated_seconds:.0f} s"
    )
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {RESULTS}")


if __name__ == "__main__":
    main()
