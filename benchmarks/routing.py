"""Routing accuracy and latency: the keyword and embedding classifiers on the held-out split of
data/prompts/routing_labelled.csv (grouped so that held-out prompts are unlike the training ones) and
on data/prompts/routing_paraphrased.csv (hand-written prompts that mostly avoid the keyword lists), and the
router as shipped on data/prompts/routing_handwritten.csv (240 prompts written apart from all training data),
plus seconds per prompt, one prompt per call and all in one call.

    python benchmarks/routing.py [--table toyworld]

Held-out accuracy is given for what the classifier predicts (before the fallback route) and for the
route taken (a prompt without evidence goes to the fallback, photorealistic, which is often right).
Prints the figures and writes benchmarks/results/routing.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from workbench.resources import data_path
from workbench.routing import (
    PARAPHRASED_PROMPTS,
    EmbeddingClassifier,
    Router,
    evaluate_classifiers,
    labelled_prompts,
    score_routing,
)

RESULTS = Path(__file__).parent / "results" / "routing.json"
HANDWRITTEN = data_path("prompts", "routing_handwritten.csv")  # never used for fitting or for choosing settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", default="toyworld")
    args = parser.parse_args()
    train, test, paraphrased = labelled_prompts("train"), labelled_prompts("test"), pd.read_csv(PARAPHRASED_PROMPTS)
    train_prompts, train_labels = list(train["prompt"]), list(train["label"])
    classifiers = {
        "keyword": Router(args.table, "keyword").classifier,
        "embedding (router default: logistic on embedding + keyword scores)": Router(
            args.table, "embedding"
        ).classifier,
        "embedding, logistic on the embedding alone": EmbeddingClassifier(method="logistic").fit(
            train_prompts, train_labels
        ),
        "embedding, nearest centroid": EmbeddingClassifier(method="centroid").fit(train_prompts, train_labels),
    }
    evaluation = evaluate_classifiers(classifiers, test, paraphrased)

    result = {"table": args.table, "train_prompts": len(train), "test_prompts": len(test), "classifiers": {}}
    for (name, held_out), row in zip(evaluation.scores.items(), evaluation.overview.to_dict("records"), strict=True):
        latency = {"single_ms": row["ms per prompt (one per call)"], "batched_ms": row["ms per prompt (batched)"]}
        result["classifiers"][name] = {
            "held_out_accuracy": held_out.accuracy,
            "held_out_accuracy_with_fallback": row["accuracy with fallback"],
            "held_out_per_route": held_out.per_route.round(3).to_dict(orient="index"),
            "paraphrased_accuracy (with fallback)": row["hand-written accuracy"],
            "latency_per_prompt": latency,
        }
        print(f"\n{name}")
        print(
            f"  held-out accuracy {held_out.accuracy:.1%} (n={held_out.n}), {row['accuracy with fallback']:.1%} "
            f"with the fallback route;  hand-written {row['hand-written accuracy']:.1%} "
            f"(n={row['hand-written prompts']}, with the fallback)"
        )
        print("  " + held_out.per_route.round(3).to_string().replace("\n", "\n  "))
        print("  latency per prompt: " + ", ".join(f"{k} {v:.2f}" for k, v in latency.items()))
    # The test set written apart from all training data: the router as shipped (route decisions, fallback included).
    handwritten = pd.read_csv(HANDWRITTEN)
    result["handwritten_test"] = {"prompts": len(handwritten)}
    for name in ("embedding", "keyword"):
        decisions = Router(args.table, name).route_many(list(handwritten["prompt"]))
        scores = score_routing(decisions, list(handwritten["label"]))
        result["handwritten_test"][name] = {
            "accuracy": scores.accuracy, "per_route": scores.per_route.round(3).to_dict(orient="index")
        }  # fmt: skip
        print(f"\nhand-written test set ({len(handwritten)} prompts), {name} router: {scores.accuracy:.1%} right")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwritten to {RESULTS}")


if __name__ == "__main__":
    main()
