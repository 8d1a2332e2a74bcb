"""Measuring routing: the labelled prompts (their files are named in ``tables``), accuracy and per-route
precision/recall/F1 against labels, latency, and ``evaluate_classifiers``, which does all of it for several
classifiers at once."""

from __future__ import annotations

import csv
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from workbench.errors import ConfigError
from workbench.routing.decision import RoutingDecision
from workbench.routing.tables import LABELLED_PROMPTS, PARAPHRASED_PROMPTS

if TYPE_CHECKING:
    import pandas as pd

    from workbench.routing.classifiers import Classifier

__all__ = [
    "LABELLED_PROMPTS",
    "PARAPHRASED_PROMPTS",
    "ClassifierEvaluation",
    "RoutingScores",
    "evaluate_classifiers",
    "labelled_prompts",
    "read_prompt_file",
    "routing_latency",
    "score_routing",
]


def labelled_prompts(split: str | None = None, path: str | Path = LABELLED_PROMPTS) -> pd.DataFrame:
    """The labelled routing prompts (prompt, label, split, source_category) as a DataFrame."""
    import pandas as pd

    frame = pd.read_csv(path)
    if split is not None:
        if split not in set(frame["split"]):
            raise ConfigError(f"split must be one of {sorted(set(frame['split']))}, got {split!r}", "split")
        frame = frame[frame["split"] == split].reset_index(drop=True)
    return frame


def read_prompt_file(path: str | Path) -> list[str]:
    """Prompts from a text file (one per line; blank lines and #-comments skipped) or a CSV with a prompt column."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"prompt file {str(path)!r} does not exist")
    if path.suffix == ".csv":
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh))
        if not rows or "prompt" not in rows[0]:
            raise ConfigError(f"{path} needs a 'prompt' column")
        return [row["prompt"] for row in rows]
    return [line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]


@dataclass(frozen=True)
class RoutingScores:
    """How well decisions match labels: accuracy, per-route precision/recall/F1, and the confusion matrix."""

    accuracy: float
    per_route: Any  # DataFrame: route -> precision, recall, f1, support
    confusion: Any  # DataFrame: true route (rows) x chosen route (columns), counts
    n: int

    def to_dict(self) -> dict[str, Any]:
        return {"accuracy": self.accuracy, "n": self.n, "per_route": self.per_route.to_dict(orient="index")}


def score_routing(decisions: Sequence[RoutingDecision], labels: Sequence[str], *, use: str = "route") -> RoutingScores:
    """Compare decisions with true labels; ``use="predicted"`` scores the classifier without the fallback
    (a prompt it found no evidence for then counts as "(no evidence)")."""
    import pandas as pd
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    if len(decisions) != len(labels) or not labels:
        raise ConfigError(f"need one label per decision, got {len(decisions)} decisions and {len(labels)} labels")
    chosen = [getattr(d, use) or "(no evidence)" for d in decisions]
    labels = [str(label) for label in labels]
    routes = list(dict.fromkeys([*labels, *chosen]))
    precision, recall, f1, support = precision_recall_fscore_support(labels, chosen, labels=routes, zero_division=0)
    per_route = pd.DataFrame(
        {"precision": precision, "recall": recall, "f1": f1, "support": support}, index=pd.Index(routes, name="route")
    )
    confusion = pd.DataFrame(
        confusion_matrix(labels, chosen, labels=routes),
        index=pd.Index(routes, name="true route"),
        columns=pd.Index(routes, name="chosen route"),
    )
    accuracy = float(np.mean([c == t for c, t in zip(chosen, labels, strict=True)]))
    return RoutingScores(accuracy, per_route, confusion, len(labels))


def routing_latency(classify, prompts: Sequence[str], *, single: bool = True, repeats: int = 3) -> float:
    """Seconds per prompt of ``classify`` (a ``classify_many``), best of ``repeats``: one prompt per call
    when ``single``, else all prompts in one call."""
    classify(list(prompts[:2]))  # warm up
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        if single:
            for prompt in prompts:
                classify([prompt])
        else:
            classify(list(prompts))
        best = min(best, time.perf_counter() - start)
    return best / len(prompts)


@dataclass(frozen=True)
class ClassifierEvaluation:
    """Classifiers measured on labelled prompts: an overview row each, and the scores behind it."""

    overview: pd.DataFrame  # per classifier: accuracy before and with the fallback, prompts, ms per prompt
    scores: dict[str, RoutingScores]  # what each classifier predicts (before the fallback route)
    with_fallback: dict[str, RoutingScores]  # the route taken
    written: dict[str, RoutingScores]  # on the hand-written prompts, route taken (empty when none were given)

    def to_dict(self) -> dict[str, Any]:
        """The overview's rows and each classifier's scores (before the fallback), for JSON."""
        return {"overview": self.overview.to_dict(orient="records"), **{k: v.to_dict() for k, v in self.scores.items()}}


def evaluate_classifiers(
    classifiers: Mapping[str, Classifier],
    labelled: pd.DataFrame,
    written: pd.DataFrame | None = None,
    *,
    latency_prompts: int = 50,
    repeats: int = 3,
) -> ClassifierEvaluation:
    """Accuracy, per-route precision/recall/F1 and confusion matrices of each classifier on ``labelled``
    (prompt and label columns), before and with the fallback route; the same, with the fallback, on
    ``written`` (e.g. ``pd.read_csv(PARAPHRASED_PROMPTS)``); and milliseconds per prompt, one prompt per
    call (the first ``latency_prompts``) and all in one call."""
    import pandas as pd

    prompts, labels = list(labelled["prompt"]), list(labelled["label"])
    rows, scores, with_fallback, hand_written = [], {}, {}, {}
    for name, classifier in classifiers.items():
        decisions = classifier.classify_many(prompts)
        scores[name] = score_routing(decisions, labels, use="predicted")
        with_fallback[name] = score_routing(decisions, labels)
        row = {
            "classifier": name,
            "accuracy": scores[name].accuracy,
            "accuracy with fallback": with_fallback[name].accuracy,
            "prompts": scores[name].n,
        }
        if written is not None:
            found = classifier.classify_many(list(written["prompt"]))
            hand_written[name] = score_routing(found, list(written["label"]))
            row |= {"hand-written accuracy": hand_written[name].accuracy, "hand-written prompts": len(written)}
        single = routing_latency(classifier.classify_many, prompts[:latency_prompts], repeats=repeats)
        batched = routing_latency(classifier.classify_many, prompts, single=False, repeats=repeats)
        rows.append(row | {"ms per prompt (one per call)": 1000 * single, "ms per prompt (batched)": 1000 * batched})
    return ClassifierEvaluation(pd.DataFrame(rows), scores, with_fallback, hand_written)
