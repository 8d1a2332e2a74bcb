"""Choosing the embedding classifier's settings by cross-validation, never by a test set.

5-fold cross-validation on the `train` split of data/prompts/routing_labelled.csv (PartiPrompts labelled by
rules plus the hand-written routing_written.csv), stratified by label and grouped by subject with the
``group()`` that made the train/test split (data/prompts/routing_labelled.py: "a painting of a house" and
"a photo of a house" share a group, so a fold never holds out a prompt whose twin it trained on). The
route table's examples join every training fold, as in ``EmbeddingClassifier.from_table``. Each setting
of the logistic regression is scored on the folds, on the PartiPrompts `test` split and on
data/prompts/routing_paraphrased.csv; the setting kept is the one with the best cross-validated accuracy
(the test sets only report). The keyword classifier alone is scored too.

    python benchmarks/routing_cv.py [--table default] [--label after]

Accuracy is of the route predicted (the most probable); "routed" is of the route taken, where a prompt whose
best score is under the table's threshold goes to the fallback route. The grid refits the regression on
precomputed embeddings, exactly as ``EmbeddingClassifier`` does; the row of the classifier's own settings
is checked against a real ``EmbeddingClassifier.from_table`` fit on the PartiPrompts test split. Prints a
table and writes benchmarks/results/routing_cv.json (one entry per --label, others kept).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import itertools
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

from workbench.routing import PARAPHRASED_PROMPTS, EmbeddingClassifier, KeywordClassifier, RouteTable
from workbench.routing import classifiers as classifiers_module
from workbench.routing.embeddings import sentence_encoder
from workbench.routing.scoring import LABELLED_PROMPTS, labelled_prompts

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results" / "routing_cv.json"
FOLDS = 5
SEED = 0
# The grid: a few principled values of each setting, around the classifier's own.
GRID = {
    "C": [1.0, 10.0, 100.0],
    "class_weight": ["balanced", None],
    "keyword_scale": [0.5, 1.0, 2.0],
    "keyword_dropout": [True, False],  # every prompt also seen without its keyword scores
}


def _split_groups(prompts: list[str]) -> list[str]:
    """The subject groups of data/prompts/routing_labelled.py, which made the train/test split."""
    spec = importlib.util.spec_from_file_location("routing_labelled", ROOT / "data" / "prompts" / "routing_labelled.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return [module.group(p) for p in prompts]


def current_setting() -> dict:
    """The settings ``EmbeddingClassifier`` uses now."""
    logistic = classifiers_module._LOGISTIC
    return {
        "C": float(logistic["C"]),
        "class_weight": logistic.get("class_weight"),
        "keyword_scale": float(classifiers_module._KEYWORD_SCALE),
        "keyword_dropout": bool(getattr(classifiers_module, "_KEYWORD_DROPOUT", True)),
    }


def keyword_shares(keywords: KeywordClassifier, prompts: list[str]) -> np.ndarray:
    shares = [scores for scores, _ in keywords.score(prompts)]
    return np.array([[s[r] for r in keywords.routes] for s in shares])


def fit_predict(train: tuple, test: tuple, setting: dict) -> tuple[np.ndarray, list[str]]:
    """Probabilities per test prompt (columns named by the list), fitted as ``EmbeddingClassifier`` fits."""
    from sklearn.linear_model import LogisticRegression

    (vectors, shares, labels), (test_vectors, test_shares) = train, test
    features = np.hstack([vectors, setting["keyword_scale"] * shares])
    targets = np.asarray(labels)
    if setting["keyword_dropout"]:
        blind = features.copy()
        blind[:, vectors.shape[1] :] = 0
        features, targets = np.vstack([features, blind]), np.concatenate([targets, targets])
    model = LogisticRegression(C=setting["C"], class_weight=setting["class_weight"], max_iter=5000)
    model.fit(features, targets)
    probs = model.predict_proba(np.hstack([test_vectors, setting["keyword_scale"] * test_shares]))
    return probs, [str(c) for c in model.classes_]


def accuracies(probs: np.ndarray, columns: list[str], labels, threshold: float, fallback: str) -> tuple[float, float]:
    """Accuracy of the predicted route, and of the route taken (the fallback under the threshold)."""
    labels = np.asarray(labels)
    predicted = np.array(columns)[probs.argmax(axis=1)]
    routed = np.where(probs.max(axis=1) >= threshold, predicted, fallback)
    return float((predicted == labels).mean()), float((routed == labels).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", default="default")
    parser.add_argument("--label", default="current", help="the entry of the JSON to (over)write")
    args = parser.parse_args()
    from sklearn.model_selection import StratifiedGroupKFold

    started = time.perf_counter()
    table = RouteTable.load(args.table)
    routes = table.content_routes
    keywords = KeywordClassifier.from_table(table)
    threshold, fallback = table.threshold, table.fallback

    train = labelled_prompts("train")
    train = train[train["label"].isin(routes)].reset_index(drop=True)
    test = labelled_prompts("test")
    paraphrased = pd.read_csv(PARAPHRASED_PROMPTS)
    examples = [e for r in routes for e in table[r].examples]
    example_labels = [r for r in routes for _ in table[r].examples]

    encoder = sentence_encoder(None)
    sets = {
        "train": (list(train["prompt"]), list(train["label"])),
        "examples": (examples, example_labels),
        "test": (list(test["prompt"]), list(test["label"])),
        "paraphrased": (list(paraphrased["prompt"]), list(paraphrased["label"])),
    }
    data = {
        name: (encoder.encode(prompts), keyword_shares(keywords, prompts), labels)
        for name, (prompts, labels) in sets.items()
    }
    groups = _split_groups(sets["train"][0])
    folds = list(
        StratifiedGroupKFold(n_splits=FOLDS, shuffle=True, random_state=SEED).split(
            data["train"][0], sets["train"][1], groups
        )
    )

    def subset(part: tuple, index: np.ndarray) -> tuple:
        return part[0][index], part[1][index], [part[2][i] for i in index]

    def join(a: tuple, b: tuple) -> tuple:
        return np.vstack([a[0], b[0]]), np.vstack([a[1], b[1]]), list(a[2]) + list(b[2])

    def evaluate(setting: dict) -> dict:
        fold_acc, fold_routed = [], []
        for train_index, held_index in folds:
            fit_on = join(subset(data["train"], train_index), data["examples"])
            held = subset(data["train"], held_index)
            probs, columns = fit_predict(fit_on, held[:2], setting)
            acc, routed = accuracies(probs, columns, held[2], threshold, fallback)
            fold_acc.append(acc)
            fold_routed.append(routed)
        full = join(data["train"], data["examples"])
        row = {
            "setting": setting,
            "cv_accuracy": float(np.mean(fold_acc)),
            "cv_accuracy_sd": float(np.std(fold_acc)),
            "cv_routed": float(np.mean(fold_routed)),
        }
        for name in ("test", "paraphrased"):
            probs, columns = fit_predict(full, data[name][:2], setting)
            row[f"{name}_accuracy"], row[f"{name}_routed"] = accuracies(
                probs, columns, data[name][2], threshold, fallback
            )
        return row

    keys = list(GRID)
    settings = [dict(zip(keys, values, strict=True)) for values in itertools.product(*GRID.values())]
    current = current_setting()
    if current not in settings:
        settings.insert(0, current)
    rows = [evaluate(s) for s in settings]
    best = max(rows, key=lambda r: (round(r["cv_accuracy"], 6), r["cv_routed"]))
    now = next(r for r in rows if r["setting"] == current)

    # The keyword classifier alone (nothing fitted: its accuracy on the whole train split is its CV accuracy).
    keyword_only = {}
    for name in ("train", "test", "paraphrased"):
        shares, labels = data[name][1], data[name][2]
        probs = np.where(shares.sum(axis=1, keepdims=True) > 0, shares, 0.0)
        keyword_only[f"{name}_accuracy"], keyword_only[f"{name}_routed"] = accuracies(
            probs, list(keywords.routes), labels, threshold, fallback
        )
        keyword_only[f"{name}_without_keywords"] = float((shares.sum(axis=1) == 0).mean())

    # The classifier's own fit, to check that the grid's row of its settings is what it does.
    real = EmbeddingClassifier.from_table(table, cache=False)
    decisions = real.classify_many(sets["test"][0])
    real_acc = float(np.mean([d.predicted == label for d, label in zip(decisions, sets["test"][1], strict=True)]))
    real_routed = float(np.mean([d.route == label for d, label in zip(decisions, sets["test"][1], strict=True)]))
    if abs(real_acc - now["test_accuracy"]) > 0.01:
        raise SystemExit(f"the grid's fit ({now['test_accuracy']:.3f}) is not the classifier's ({real_acc:.3f})")

    def describe(s: dict) -> str:
        return (
            f"C={s['C']:g} cw={'bal' if s['class_weight'] else 'none'} kw={s['keyword_scale']:g} "
            f"dropout={'yes' if s['keyword_dropout'] else 'no'}"
        )

    print(
        f"table {args.table}: {len(train)} training prompts in {FOLDS} group folds (+{len(examples)} examples), "
        f"{len(test)} PartiPrompts test, {len(paraphrased)} paraphrased; threshold {threshold}, fallback {fallback}"
    )
    header = f"{'setting':42} {'CV acc':>13} {'CV routed':>9} {'test':>6} {'routed':>6} {'para':>6} {'routed':>6}"
    print(header)
    for row in sorted(rows, key=lambda r: -r["cv_accuracy"]):
        mark = (" <- best" if row is best else "") + (" (current)" if row is now else "")
        print(
            f"{describe(row['setting']):42} {row['cv_accuracy']:6.1%} ±{row['cv_accuracy_sd']:4.1%} "
            f"{row['cv_routed']:9.1%} {row['test_accuracy']:6.1%} {row['test_routed']:6.1%} "
            f"{row['paraphrased_accuracy']:6.1%} {row['paraphrased_routed']:6.1%}{mark}"
        )
    print(
        f"{'keyword classifier alone':42} {keyword_only['train_accuracy']:6.1%} (train) "
        f"{keyword_only['train_routed']:9.1%} {keyword_only['test_accuracy']:6.1%} {keyword_only['test_routed']:6.1%} "
        f"{keyword_only['paraphrased_accuracy']:6.1%} {keyword_only['paraphrased_routed']:6.1%}"
    )
    print(
        "prompts without any keyword: "
        + ", ".join(f"{n} {keyword_only[f'{n}_without_keywords']:.1%}" for n in ("train", "test", "paraphrased"))
    )
    print(f"EmbeddingClassifier.from_table on the test split: {real_acc:.1%} predicted, {real_routed:.1%} routed")

    keyword_file = table.source and Path(table.source).with_name("keywords.yaml")
    result = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    result[args.label] = {
        "table": args.table,
        "folds": FOLDS,
        "grouping": "StratifiedGroupKFold by label and routing_labelled.group(prompt), shuffle seed 0",
        "train_prompts": len(train),
        "table_examples": len(examples),
        "test_prompts": len(test),
        "paraphrased_prompts": len(paraphrased),
        "labelled_sha256": hashlib.sha256(Path(LABELLED_PROMPTS).read_bytes()).hexdigest()[:16],
        "keywords_sha256": (
            hashlib.sha256(keyword_file.read_bytes()).hexdigest()[:16]
            if keyword_file and keyword_file.exists()
            else None
        ),
        "current_setting": current,
        "current": now,
        "best": best,
        "keyword_classifier": keyword_only,
        "classifier_check": {"test_accuracy": real_acc, "test_routed": real_routed},
        "grid": rows,
        "seconds": round(time.perf_counter() - started, 1),
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"written to {RESULTS} under {args.label!r}")


if __name__ == "__main__":
    main()
