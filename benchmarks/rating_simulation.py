"""The ratings' analysis against a known truth: interval coverage, careless raters found, votes saved by adaptive
choice. Simulated studies, analysed as real votes are.

    python benchmarks/rating_simulation.py [--studies 1000] [--sequential-studies 200] [--draws 200]

The simulated studies, fixed before any tuning: 6 targets whose true Bradley–Terry strengths make each adjacent
pair's win probability 0.60 among votes that are not ties (a gap of ln 1.5); ties by Davidson's model, about 15%
between equals (nu = 0.353); 100 prompts; 5 raters, of whom one in the studies that have one is careless (answers
left, right or tie at random); 5% of votes are gold items (a careful rater answers them right) and 10% repeats of
one of the rater's earlier items; checks are left out of the fit, as in the analysis.

- **Coverage**: 2,000 votes a study (a fixed budget: no early stop, which would bias the intervals), each a
  random pair of targets on a random prompt by a random rater. How often the 95% interval of each adjacent
  strength difference (``ratings.analysis.strength_draws``: prompts resampled, the spread widened by the raters'
  dispersion) holds the true difference: without a careless rater; with one, kept; and with the raters the
  analysis flags removed.
- **Careless raters**: in those same studies, the share where the careless rater is flagged
  (``ratings.raters.rater_scores``), and the share of careful raters flagged.
- **Adaptive**: votes arrive in rounds of 50 and a study stops when every adjacent pair is ordered with a
  Holm-adjusted anytime-valid 95% p-value (``ratings.adaptive.sequential_order``), or at 20,000 votes. Uniform
  asks random pairs; adaptive asks the pairs ``ratings.adaptive.next_pairs`` chooses at the start of each round.
  The votes each needed (median) and the share of studies that end in a wrong order.

Prints the figures and writes benchmarks/results/rating_simulation.json.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd

from workbench.ratings.adaptive import next_pairs, sequential_order
from workbench.ratings.analysis import strength_draws
from workbench.ratings.raters import rater_scores

RESULTS = Path(__file__).parent / "results" / "rating_simulation.json"
TARGETS = [f"t{i}" for i in range(6)]
GAP = math.log(1.5)  # adjacent targets: P(win | no tie) = 0.6
TIE = 0.353  # P(tie) between equals = nu / (2 + nu) = 0.15
TRUE = np.array([-GAP * i for i in range(6)])
PROMPTS, RATERS, GOLD, REPEATS = 100, 5, 0.05, 0.10
ROUND, MOST = 50, 20_000
PAIRS = [(i, j) for i in range(6) for j in range(i + 1, 6)]


def answers(pairs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Careful answers to votes on ``pairs`` (rows of two target indices): 1 the first won, 0.5 tie, 0 lost."""
    a, b = TRUE[pairs[:, 0]], TRUE[pairs[:, 1]]
    weights = np.stack([np.exp(a), TIE * np.exp((a + b) / 2), np.exp(b)], axis=1)
    weights /= weights.sum(axis=1, keepdims=True)
    draw = (rng.random(len(pairs))[:, None] > np.cumsum(weights, axis=1)).sum(axis=1)
    return np.array([1.0, 0.5, 0.0])[draw]


def study(votes: int, careless: bool, rng: np.random.Generator) -> pd.DataFrame:
    """One study's votes with their checks, shaped as ``rater_scores`` reads them; rater
    "0" is the careless one when there is one."""
    rows, earlier, seen = [], {str(r): [] for r in range(RATERS)}, {str(r): set() for r in range(RATERS)}
    kinds = rng.choice(["gold", "repeat", "plain"], size=votes, p=[GOLD, REPEATS, 1 - GOLD - REPEATS])
    for number, kind in enumerate(kinds):
        rater = str(rng.integers(RATERS))
        if kind == "repeat" and not earlier[rater]:
            kind = "plain"
        if kind == "repeat":
            original = earlier[rater].pop(rng.integers(len(earlier[rater])))  # an item is repeated once
            row = {**original, "item_id": f"repeat-{number}", "check": "repeat", "repeat_of": original["item_id"]}
        else:
            i, j = PAIRS[rng.integers(len(PAIRS))]
            prompt = str(rng.integers(PROMPTS))
            item_id = f"gold-{number}" if kind == "gold" else f"{prompt}-{i}-{j}"
            if item_id in seen[rater]:  # a rater answers an item once
                item_id = f"{item_id}-{number}"
            seen[rater].add(item_id)
            row = {"item_id": item_id, "prompt_id": prompt, "a": TARGETS[i], "b": TARGETS[j],
                   "check": "gold" if kind == "gold" else None, "repeat_of": None}  # fmt: skip
        pair = np.array([[TARGETS.index(row["a"]), TARGETS.index(row["b"])]])
        if careless and rater == "0":
            outcome = float(rng.choice([1.0, 0.5, 0.0]))
        else:
            outcome = 1.0 if kind == "gold" else float(answers(pair, rng)[0])  # gold: the first image is right
        row = {**row, "rater": rater, "outcome": outcome, "chosen": {1.0: "a", 0.0: "b"}.get(outcome)}
        rows.append(row)
        if kind == "plain":
            earlier[rater].append(row)
    return pd.DataFrame(rows)


def covered(outcomes: pd.DataFrame, draws: int, seed: int) -> np.ndarray:
    """Whether each adjacent difference's 95% interval holds the true difference (checks left out)."""
    plain = outcomes[outcomes["check"].isna()].reset_index(drop=True)
    _, samples, _ = strength_draws(plain, TARGETS, draws=draws, seed=seed)
    differences = samples[:, :-1] - samples[:, 1:]
    low, high = np.quantile(differences, [0.025, 0.975], axis=0)
    truth = TRUE[:-1] - TRUE[1:]
    return (low <= truth) & (truth <= high)


def flagged(outcomes: pd.DataFrame) -> set[str]:
    gold = {item_id: "a" for item_id in outcomes.loc[outcomes["check"] == "gold", "item_id"]}
    table = rater_scores(outcomes, gold)
    return set(table.loc[table["flagged"], "rater"])


def sequential(strategy: str, rng: np.random.Generator) -> tuple[int, bool | None]:
    """Votes until the stopping rule holds (or ``MOST``), and whether the order found is wrong (None: undecided)."""
    wins, ties = np.zeros((6, 6)), np.zeros((6, 6))
    total = 0
    while total < MOST:
        informative = int((rng.random(ROUND) >= GOLD + REPEATS).sum())  # checks are votes the fit does not use
        if strategy == "adaptive":
            pairs = np.array(next_pairs(wins, ties, informative))
        else:
            pairs = np.array(PAIRS)[rng.integers(len(PAIRS), size=informative)]
        outcome = answers(pairs, rng)
        np.add.at(wins, (pairs[outcome == 1.0, 0], pairs[outcome == 1.0, 1]), 1)
        np.add.at(wins, (pairs[outcome == 0.0, 1], pairs[outcome == 0.0, 0]), 1)
        np.add.at(ties, (pairs[outcome == 0.5, 0], pairs[outcome == 0.5, 1]), 1)
        np.add.at(ties, (pairs[outcome == 0.5, 1], pairs[outcome == 0.5, 0]), 1)
        total += ROUND
        if (wins + ties).sum(axis=1).min() == 0 or (wins + wins.T + ties).sum() < 2 * len(PAIRS):
            continue
        found = sequential_order(wins, ties, TARGETS)
        if found["decided"]:
            return total, found["order"] != TARGETS
    return total, None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=1000, help="studies a coverage figure")
    parser.add_argument("--sequential-studies", type=int, default=200, help="studies a strategy")
    parser.add_argument("--votes", type=int, default=2000)
    parser.add_argument("--draws", type=int, default=200)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    hits: dict[str, list] = {"careful raters": [], "a careless rater kept": [], "flagged raters removed": []}
    careless_found, careful_flagged, careful_raters = 0, 0, 0
    for number in range(args.studies):
        careful = study(args.votes, False, rng)
        hits["careful raters"].append(covered(careful, args.draws, number))
        careful_flagged += len(flagged(careful))
        careless = study(args.votes, True, rng)
        hits["a careless rater kept"].append(covered(careless, args.draws, number))
        doubted = flagged(careless)
        careless_found += "0" in doubted
        careful_flagged += len(doubted - {"0"})
        careful_raters += 2 * RATERS - 1
        kept = careless[~careless["rater"].isin(doubted)].reset_index(drop=True)
        hits["flagged raters removed"].append(covered(kept, args.draws, number))
    coverage_seconds = time.perf_counter() - start
    strategies = {}
    for strategy in ("uniform", "adaptive"):
        runs = [sequential(strategy, rng) for _ in range(args.sequential_studies)]
        needed = np.array([votes for votes, _ in runs])
        strategies[strategy] = {
            "median_votes": float(np.median(needed)), "quartiles": np.quantile(needed, [0.25, 0.75]).tolist(),
            "wrong_order": float(np.mean([wrong is True for _, wrong in runs])),
            "undecided": float(np.mean([wrong is None for _, wrong in runs])),
        }  # fmt: skip
    saved = 1 - strategies["adaptive"]["median_votes"] / strategies["uniform"]["median_votes"]
    result = {
        "studies": args.studies, "sequential_studies": args.sequential_studies, "votes": args.votes,
        "draws": args.draws, "targets": len(TARGETS), "prompts": PROMPTS, "raters": RATERS,
        "adjacent_win_probability": 0.6, "tie_between_equals": 0.15, "gold": GOLD, "repeats": REPEATS,
        "coverage": {name: round(float(np.mean(found)), 4) for name, found in hits.items()},
        "coverage_per_difference": {name: np.mean(found, axis=0).round(4).tolist() for name, found in hits.items()},
        "careless_rater_flagged": round(careless_found / args.studies, 4),
        "careful_raters_flagged": round(careful_flagged / careful_raters, 4),
        "sequential": strategies, "adaptive_saves": round(saved, 4),
        "seconds": {"coverage": round(coverage_seconds, 1), "total": round(time.perf_counter() - start, 1)},
    }  # fmt: skip
    print(json.dumps(result, indent=2))
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
