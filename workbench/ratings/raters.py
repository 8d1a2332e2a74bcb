"""How far raters agree, and which of them to doubt, for any kind of task.

Per rater: agreement with the majority of the others on the same items (leave-one-out; items where the others
split evenly left out), gold accuracy, and self-consistency on repeats; a rater failing ``RATER_THRESHOLDS`` is
flagged. Over all raters: Krippendorff's alpha (the ``krippendorff`` package) with a 95% interval over resampled
items. Answers come coded as numbers (a pairwise vote oriented by target: 1 won, 0.5 tie, 0 lost; yes / partly /
no as 1, 0.5, 0; a choice by its position).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

__all__ = ["RATER_THRESHOLDS", "agreement_alpha", "majority", "rater_scores"]

# A rater is flagged below this gold accuracy (one answering at random scores about a third), or when their
# agreement with the others or with themselves (repeats) is this far below the raters' median: on close pairs
# careful raters disagree too, with others and with themselves, so those are judged against the raters' own.
RATER_THRESHOLDS = {"gold_accuracy": 0.7, "below_median": 0.25, "min_checks": 3}  # fewer checks: not judged


def majority(values: pd.Series) -> Any:
    """The most common value, or None where the two most common are as common."""
    counts = values.value_counts()
    return counts.index[0] if len(counts) == 1 or counts.iloc[0] > counts.iloc[1] else None


def rater_scores(answers: pd.DataFrame, gold: dict[str, str | None]) -> pd.DataFrame:
    """Per rater: answers, ``agreement``, ``gold_accuracy``, ``self_consistency`` and ``flagged``, from one row
    per answer with ``item_id``, ``rater``, ``outcome`` (the coded answer), ``check`` (None, "gold", "repeat"),
    ``repeat_of`` and ``chosen`` (what a gold item's answer is compared with); ``gold``: the right ``chosen``
    per gold item id. Fewer than ``min_checks`` gold items or repeats: that score is not judged (NaN)."""
    rows = []
    plain = answers[answers["check"].isna()]
    for rater, mine in answers.groupby("rater"):
        others = plain[plain["rater"] != rater].groupby("item_id")["outcome"].agg(majority).dropna()
        own = mine[mine["check"].isna()].set_index("item_id")["outcome"]
        shared = own.index.intersection(others.index)
        agreement = float((own[shared] == others[shared]).mean()) if len(shared) else np.nan
        golden = mine[mine["check"] == "gold"]
        judged = [(c, gold[i]) for c, i in zip(golden["chosen"], golden["item_id"], strict=True) if gold.get(i)]
        enough = len(judged) >= RATER_THRESHOLDS["min_checks"]
        gold_accuracy = float(np.mean([c == r for c, r in judged])) if enough else np.nan
        repeats = mine[mine["check"] == "repeat"].set_index("repeat_of")["outcome"]
        same = repeats.index.intersection(own.index)
        enough = len(same) >= RATER_THRESHOLDS["min_checks"]
        consistency = float((repeats[same] == own[same]).mean()) if enough else np.nan
        rows.append({"rater": rater, "votes": len(mine), "agreement": agreement, "gold_accuracy": gold_accuracy,
                     "self_consistency": consistency})  # fmt: skip
    table = pd.DataFrame(rows, columns=["rater", "votes", "agreement", "gold_accuracy", "self_consistency"])
    margin = RATER_THRESHOLDS["below_median"]
    apart = [table[k] < table[k].median() - margin for k in ("agreement", "self_consistency")]
    table["flagged"] = (table["gold_accuracy"] < RATER_THRESHOLDS["gold_accuracy"]) | apart[0] | apart[1]
    return table


def agreement_alpha(
    answers: pd.DataFrame, level: str = "nominal", *, draws: int = 200, seed: int = 0
) -> dict[str, Any]:
    """Krippendorff's alpha of coded ``answers`` (``rater``, ``item_id``, ``outcome``) at ``level`` ("nominal",
    "ordinal"), with a 95% interval over resampled items; None where it is not defined (fewer than two raters,
    no item two raters answered, or one answer only)."""
    import krippendorff

    table = answers.pivot_table(index="rater", columns="item_id", values="outcome", aggfunc="first")
    undefined = {"alpha": None, "ci_low": None, "ci_high": None, "raters": int(table.shape[0])}
    data = table.to_numpy()
    if table.shape[0] < 2 or not table.count().gt(1).any() or answers["outcome"].nunique() < 2:
        return undefined
    value = float(krippendorff.alpha(reliability_data=data, level_of_measurement=level))
    rng = np.random.default_rng(seed)
    resampled = []
    for _ in range(draws):
        columns = data[:, rng.integers(data.shape[1], size=data.shape[1])]
        try:
            resampled.append(krippendorff.alpha(reliability_data=columns, level_of_measurement=level))
        except ValueError:  # a resample with one value only
            continue
    low, high = np.nanquantile(resampled, [0.025, 0.975]) if resampled else (np.nan, np.nan)
    return {**undefined, "alpha": value, "ci_low": float(low), "ci_high": float(high)}
