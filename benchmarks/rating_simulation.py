"""Do the ratings' intervals cover the truth? Simulated studies with known strengths, analysed as real votes are.

    python benchmarks/rating_simulation.py [--studies 1000] [--votes 2000] [--draws 200]

The simulated studies, fixed before any tuning: 6 targets whose true Bradley–Terry strengths make each adjacent
pair's win probability 0.60 among votes that are not ties (a gap of ln 1.5); ties by Davidson's model, about 15%
between equals (nu = 0.353); 100 prompts; 5 raters; each vote a random pair of targets on a random prompt by a
random rater, 2,000 votes a study (a fixed budget: no early stop, which would bias the intervals). A study with a
careless rater has one of the five answer at random (left, right, tie alike).

Coverage: how often the 95% interval of each adjacent strength difference (``ratings.analysis.strength_draws``:
percentile intervals over resampled prompts and raters) contains the true difference, over the studies; without a
careless rater, with one kept, and with one removed (as the analysis shows once it is flagged). Prints the figures
and writes benchmarks/results/rating_simulation.json.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd

from workbench.ratings.analysis import strength_draws

RESULTS = Path(__file__).parent / "results" / "rating_simulation.json"
TARGETS = [f"t{i}" for i in range(6)]
GAP = math.log(1.5)  # adjacent targets: P(win | no tie) = 0.6
TIE = 0.353  # P(tie) between equals = nu / (2 + nu) = 0.15
TRUE = np.array([-GAP * i for i in range(6)])
PROMPTS, RATERS = 100, 5


def simulate(votes: int, careless: bool, rng: np.random.Generator) -> pd.DataFrame:
    """One study's votes as ``pairwise_outcomes`` gives them (outcome for a: 1, 0.5, 0)."""
    pairs = np.array([(i, j) for i in range(6) for j in range(i + 1, 6)])
    chosen = pairs[rng.integers(len(pairs), size=votes)]
    a, b = TRUE[chosen[:, 0]], TRUE[chosen[:, 1]]
    weights = np.stack([np.exp(a), TIE * np.exp((a + b) / 2), np.exp(b)], axis=1)
    weights /= weights.sum(axis=1, keepdims=True)
    draw = (rng.random(votes)[:, None] > np.cumsum(weights, axis=1)).sum(axis=1)  # 0: a wins, 1: tie, 2: b wins
    raters = rng.integers(RATERS, size=votes)
    if careless:
        random = raters == 0
        draw[random] = rng.integers(3, size=random.sum())
    return pd.DataFrame({
        "prompt_id": rng.integers(PROMPTS, size=votes).astype(str), "rater": raters.astype(str),
        "a": [TARGETS[i] for i in chosen[:, 0]], "b": [TARGETS[j] for j in chosen[:, 1]],
        "outcome": np.array([1.0, 0.5, 0.0])[draw],
    })  # fmt: skip


def covered(outcomes: pd.DataFrame, draws: int, seed: int) -> np.ndarray:
    """Whether each adjacent difference's 95% interval holds the true difference."""
    _, samples, _ = strength_draws(outcomes, TARGETS, draws=draws, seed=seed)
    differences = samples[:, :-1] - samples[:, 1:]
    low, high = np.quantile(differences, [0.025, 0.975], axis=0)
    truth = TRUE[:-1] - TRUE[1:]
    return (low <= truth) & (truth <= high)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=1000)
    parser.add_argument("--votes", type=int, default=2000)
    parser.add_argument("--draws", type=int, default=200)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    hits: dict[str, list] = {"careful raters": [], "a careless rater kept": [], "a careless rater removed": []}
    for study in range(args.studies):
        careful = simulate(args.votes, False, rng)
        hits["careful raters"].append(covered(careful, args.draws, study))
        careless = simulate(args.votes, True, rng)
        hits["a careless rater kept"].append(covered(careless, args.draws, study))
        kept = careless[careless["rater"] != "0"].reset_index(drop=True)
        hits["a careless rater removed"].append(covered(kept, args.draws, study))
    result = {
        "studies": args.studies, "votes": args.votes, "draws": args.draws, "targets": len(TARGETS),
        "prompts": PROMPTS, "raters": RATERS, "adjacent_win_probability": 0.6, "tie_between_equals": 0.15,
        "coverage": {name: round(float(np.mean(found)), 4) for name, found in hits.items()},
        "coverage_per_difference": {name: np.mean(found, axis=0).round(4).tolist() for name, found in hits.items()},
        "seconds": round(time.perf_counter() - start, 1),
    }  # fmt: skip
    print(json.dumps(result, indent=2))
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
