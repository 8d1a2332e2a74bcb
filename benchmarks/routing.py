"""Routing accuracy and latency: the keyword and embedding classifiers on the held-out split of
data/prompts/routing_labelled.csv (grouped so that held-out prompts are unlike the training ones) and
on data/prompts/routing_paraphrased.csv (hand-written prompts that mostly avoid the keyword lists),
plus seconds per prompt: keyword, embedding one prompt per call, embedding batched.

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

from workbench.routing import EmbeddingClassifier, KeywordClassifier, Router, labelled_prompts, routing_latency
from workbench.routing import score_routing as score

RESULTS = Path(__file__).parent / "results" / "routing.json"
PARAPHRASED = Path(__file__).resolve().parent.parent / "data" / "prompts" / "routing_paraphrased.csv"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", default="toyworld")
    args = parser.parse_args()
    train, test, paraphrased = labelled_prompts("train"), labelled_prompts("test"), pd.read_csv(PARAPHRASED)
    keyword = Router(args.table, "keyword").classifier
    classifiers = {
        "keyword": keyword,
        "embedding (router default: logistic on embedding + keyword scores)": Router(
            args.table, "embedding"
        ).classifier,
        "embedding, logistic on the embedding alone": EmbeddingClassifier(method="logistic"),
        "embedding, nearest centroid": EmbeddingClassifier(method="centroid"),
    }
    for classifier in classifiers.values():
        if isinstance(classifier, EmbeddingClassifier) and not classifier._fitted:
            classifier.fit(list(train["prompt"]), list(train["label"]))

    result = {"table": args.table, "train_prompts": len(train), "test_prompts": len(test), "classifiers": {}}
    for name, classifier in classifiers.items():
        decisions = classifier.classify_many(list(test["prompt"]))
        held_out = score(decisions, list(test["label"]), use="predicted")
        with_fallback = score(decisions, list(test["label"]))
        written = score(classifier.classify_many(list(paraphrased["prompt"])), list(paraphrased["label"]))
        prompts = list(test["prompt"])
        latency = {"single_ms": 1000 * routing_latency(classifier.classify_many, prompts[:50])}
        if not isinstance(classifier, KeywordClassifier):
            latency["batched_ms"] = 1000 * routing_latency(classifier.classify_many, prompts, single=False)
        result["classifiers"][name] = {
            "held_out_accuracy": held_out.accuracy,
            "held_out_accuracy_with_fallback": with_fallback.accuracy,
            "held_out_per_route": held_out.per_route.round(3).to_dict(orient="index"),
            "paraphrased_accuracy (with fallback)": written.accuracy,
            "latency_per_prompt": latency,
        }
        print(f"\n{name}")
        print(
            f"  held-out accuracy {held_out.accuracy:.1%} (n={held_out.n}), {with_fallback.accuracy:.1%} with the "
            f"fallback route;  hand-written {written.accuracy:.1%} (n={written.n}, with the fallback)"
        )
        print("  " + held_out.per_route.round(3).to_string().replace("\n", "\n  "))
        print("  latency per prompt: " + ", ".join(f"{k} {v:.2f}" for k, v in latency.items()))
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwritten to {RESULTS}")


if __name__ == "__main__":
    main()
