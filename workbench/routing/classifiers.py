"""Classifiers: score a prompt against the routes and decide, with a confidence threshold and a fallback route.

- ``Classifier``: the protocol a router needs (the extension point); ``ScoringClassifier`` is a base that
  turns per-route scores into decisions;
- ``KeywordClassifier``: weighted whole-word and phrase matches ("art" never matches "party");
- ``EmbeddingClassifier``: sentence embeddings (all-MiniLM-L6-v2) fitted on labelled prompts;
- ``CLASSIFIERS``: the registry of classifiers by name ("embedding", "keyword"), each a factory of a table.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from workbench.errors import ConfigError
from workbench.routing.cache import cache_key, load_entry, save_entry
from workbench.routing.decision import RoutingDecision, check_prompts, check_threshold
from workbench.routing.embeddings import EMBEDDING_EXTRA, SentenceEncoder, sentence_encoder
from workbench.routing.keywords import check_keywords, phrase_words, plural_forms
from workbench.routing.tables import LABELLED_PROMPTS, RouteTable

__all__ = [
    "CLASSIFIERS",
    "EMBEDDING_EXTRA",
    "Classifier",
    "ClassifierFactory",
    "EmbeddingClassifier",
    "KeywordClassifier",
    "ScoringClassifier",
    "classifier_factory",
    "classifier_names",
    "make_classifier",
]

_Scored = list[tuple[dict[str, float], tuple[str, ...]]]  # per prompt: the score per route, and the evidence


@runtime_checkable
class Classifier(Protocol):
    """What a ``Router`` needs of a classifier: its name, the routes it chooses among, its threshold, and
    one decision per prompt. Any object with these works; ``ScoringClassifier`` supplies the decisions."""

    name: str
    routes: list[str]
    threshold: float

    def classify(self, prompt: str) -> RoutingDecision: ...

    def classify_many(self, prompts: Sequence[str]) -> list[RoutingDecision]: ...


class ScoringClassifier:
    """A classifier built on ``score(prompts)`` (per-route scores and evidence): the best route is taken
    when its score reaches the threshold, else the fallback route (the first route unless named)."""

    name = ""

    def __init__(self, routes: Sequence[str], threshold: float, fallback: str | None):
        if not routes:
            raise ConfigError("a classifier needs at least one route")
        self.routes = list(routes)
        self.threshold = check_threshold(threshold)
        self.fallback = fallback if fallback is not None else self.routes[0]
        if self.fallback not in self.routes:
            raise ConfigError(f"fallback route {self.fallback!r} is not one of the routes {self.routes}", "fallback")

    def classify(self, prompt: str) -> RoutingDecision:
        return self.classify_many([prompt])[0]

    def classify_many(self, prompts: Sequence[str]) -> list[RoutingDecision]:
        prompts = check_prompts(prompts)
        return [
            RoutingDecision.from_scores(
                prompt, scores, threshold=self.threshold, fallback=self.fallback, classifier=self.name, evidence=found
            )
            for prompt, (scores, found) in zip(prompts, self.score(prompts), strict=True)
        ]

    def score(self, prompts: list[str]) -> _Scored:
        """Per prompt: a score per route (summing to 1, or all 0 without evidence) and the evidence."""
        raise NotImplementedError


# --- keyword classifier ---------------------------------------------------------------------------


class KeywordClassifier(ScoringClassifier):
    """Scores routes by the weighted words and phrases of each that a prompt contains (whole words only;
    the last word of a phrase may be plural; a hyphen counts as a space and accents are ignored). A word
    counts once, for the longest phrase it is part of: "art deco" (a building style) hides its "art", and
    "oil painting" its "painting". Scores are each route's share of the matched weight."""

    name = "keyword"

    def __init__(
        self,
        keywords: Mapping[str, Mapping[str, float] | Iterable[str]],
        *,
        threshold: float = 0.0,
        fallback: str | None = None,
    ):
        super().__init__(list(keywords), threshold, fallback)
        self._phrases: dict[str, list[tuple[tuple[str, ...], frozenset[str], float, str]]] = {}
        # first word -> (route, words before the last, forms of the last, weight, phrase)
        self._by_first: dict[str, list[tuple[str, tuple[str, ...], frozenset[str], float, str]]] = {}
        for route, listed in keywords.items():
            entries, covered = [], set()
            for tokens, weight in check_keywords(route, listed):
                if tuple(tokens) in covered:  # "windows" after "window": one word, counted once
                    continue
                forms = frozenset(plural_forms(tokens[-1]))
                covered |= {(*tokens[:-1], form) for form in forms}
                entry = (tuple(tokens[:-1]), forms, weight, " ".join(tokens))
                entries.append(entry)
                for first in (tokens[0],) if len(tokens) > 1 else forms:
                    self._by_first.setdefault(first, []).append((route, *entry))
            self._phrases[route] = entries

    @classmethod
    def from_table(cls, table: RouteTable, threshold: float | None = None) -> KeywordClassifier:
        """The table's keywords for its content routes, its fallback, and its threshold unless given."""
        routes = table.content_routes
        return cls(
            {route: table.keywords.get(route, {}) for route in routes},
            threshold=table.threshold if threshold is None else threshold,
            fallback=table.fallback,
        )

    def score(self, prompts: list[str]) -> _Scored:
        return [self._score_one(prompt) for prompt in prompts]

    def _score_one(self, prompt: str) -> tuple[dict[str, float], tuple[str, ...]]:
        words = phrase_words(prompt)
        found = []  # (start, length, route, weight, phrase) of every occurrence
        for i, word in enumerate(words):
            for route, head, last, weight, phrase in self._by_first.get(word, ()):
                n = len(head)
                if i + n < len(words) and tuple(words[i : i + n]) == head and words[i + n] in last:
                    found.append((i, n + 1, route, weight, phrase))
        found.sort(key=lambda m: (-m[1], m[0]))  # longest first: they take their words
        taken: set[int] = set()
        spans: set[tuple[int, int]] = set()
        counted: dict[tuple[str, str], tuple[int, float]] = {}  # a phrase counts once, however often it occurs
        for start, length, route, weight, phrase in found:
            if (start, length) not in spans and taken.intersection(range(start, start + length)):
                continue
            spans.add((start, length))  # the same words may be a phrase of another route too
            taken.update(range(start, start + length))
            if counted.get((route, phrase), (len(words),))[0] > start:
                counted[(route, phrase)] = (start, weight)
        raw = dict.fromkeys(self._phrases, 0.0)
        evidence = []
        for (route, phrase), (_, weight) in sorted(counted.items(), key=lambda item: item[1][0]):
            raw[route] += weight
            evidence.append(f"'{phrase}' +{weight:g} {route}")
        matched = sum(raw.values())
        scores = {route: (value / matched if matched else 0.0) for route, value in raw.items()}
        return scores, tuple(evidence)


# --- embedding classifier -------------------------------------------------------------------------


# The logistic regression's settings, chosen by 5-fold group cross-validation on the training split
# (benchmarks/routing_cv.py: C in 1/10/100, balanced or no class weights, keyword scale 0.5/1/2, with or
# without keyword dropout; these scored best, 94.7%, with every C=10 or C=100 setting without dropout within
# half a point).
_LOGISTIC = {"C": 10.0, "class_weight": "balanced", "max_iter": 5000}
_KEYWORD_SCALE = 0.5  # the keyword shares' weight beside the unit-length embedding
# Whether each training prompt is also seen without its keyword scores. It costs 2 points of cross-validated
# accuracy now that the keyword lists cover most prompts (90% of the training split), though it helps
# prompts without any keyword (routing_paraphrased.csv: 87.5% with, 80% without).
_KEYWORD_DROPOUT = False


def _training_prompts(routes: Sequence[str]) -> tuple[list[str], list[str]]:
    """The labelled prompts' training split (read without pandas: this is on every router's start)."""
    with open(LABELLED_PROMPTS, newline="", encoding="utf-8") as fh:
        rows = [row for row in csv.DictReader(fh) if row.get("split") == "train" and row.get("label") in routes]
    return [row["prompt"] for row in rows], [row["label"] for row in rows]


class EmbeddingClassifier(ScoringClassifier):
    """Nearest-centroid or logistic-regression classification of sentence embeddings.

    ``fit(prompts, labels)`` first; scores are per-route probabilities and the evidence is the labelled
    prompts nearest to the prompt. ``method="centroid"`` is a softmax over cosine similarities to each
    route's mean embedding; ``"logistic"`` (scikit-learn) is a logistic regression, which may also see a
    ``KeywordClassifier``'s scores beside the embedding: sentence embeddings encode the subject far more
    than the medium ("a sketch of a train" sits near photos of trains), and the style words fix that.
    A prompt without any keyword has all-zero keyword scores and is judged by its embedding. The
    settings (``_LOGISTIC``, ``_KEYWORD_SCALE``, and ``_KEYWORD_DROPOUT``: whether every training prompt
    is also seen without its keyword scores, off) were chosen by cross-validation in
    benchmarks/routing_cv.py.

    The embeddings are all-MiniLM-L6-v2's (or ``model``'s, a local sentence-transformers folder), computed
    by ``SentenceEncoder`` without torch. A fit is plain arrays; ``fit(..., cache=True)`` (what
    ``from_table`` does) keeps it on disk (``workbench.routing.cache``), so the next process skips it.
    """

    name = "embedding"

    def __init__(
        self,
        *,
        model: str | None = None,
        method: str = "logistic",
        threshold: float = 0.0,
        fallback: str | None = None,
        keywords: KeywordClassifier | None = None,
        temperature: float = 0.05,
        neighbours: int = 2,
    ):
        if method not in ("centroid", "logistic"):
            raise ConfigError(f"method must be 'centroid' or 'logistic', got {method!r}", "method")
        if keywords is not None and method != "logistic":
            raise ConfigError("keyword features need method='logistic'", "keywords")
        self.model, self.method, self.keywords = model, method, keywords
        self.temperature, self.neighbours = temperature, neighbours
        self.routes: list[str] = []  # the labels' routes, once fitted
        self.threshold = check_threshold(threshold)
        self.fallback = self._fallback = fallback
        self.encoder: SentenceEncoder = sentence_encoder(model)
        self._fitted = False
        self.cached = False  # whether the fit came from the disk cache

    @classmethod
    def from_table(
        cls, table: RouteTable, threshold: float | None = None, *, model: str | None = None, cache: bool = True
    ) -> EmbeddingClassifier:
        """Fitted on the labelled prompts' training split plus the table's examples, with the table's keyword
        scores as features, its fallback, and its threshold unless given. The fit is cached on disk unless
        ``cache=False`` (keyed by all of it, the sentence model and the package versions)."""
        threshold = table.threshold if threshold is None else threshold
        routes = table.content_routes
        prompts, labels = _training_prompts(routes)
        prompts += [e for r in routes for e in table[r].examples]
        labels += [r for r in routes for _ in table[r].examples]
        missing = [r for r in routes if r not in labels]
        if missing:
            raise ConfigError(
                f"{table.source}: route(s) {missing} have no labelled or example prompts to fit the "
                "embedding classifier on; add `examples:` to them, or use classifier='keyword'"
            )
        classifier = cls(
            model=model,
            threshold=threshold,
            fallback=table.fallback,
            keywords=KeywordClassifier.from_table(table, threshold),
        )
        return classifier.fit(prompts, labels, cache=cache)

    @property
    def fitted(self) -> bool:
        return self._fitted

    def embed(self, prompts: Sequence[str]) -> np.ndarray:
        """Unit-length embeddings, one row per prompt."""
        return self.encoder.encode(list(prompts))

    def fit(self, prompts: Sequence[str], labels: Sequence[str], *, cache: bool = False) -> EmbeddingClassifier:
        """Fit on labelled prompts. With ``cache=True`` a fit of the same prompts, labels, settings, keyword
        features, sentence model and package versions is read from disk instead, and a new one is stored."""
        prompts, labels = check_prompts(prompts), [str(label) for label in labels]
        if len(prompts) != len(labels):
            raise ConfigError(f"fit needs one label per prompt, got {len(prompts)} prompts and {len(labels)} labels")
        routes = list(dict.fromkeys(labels))
        if len(routes) < 2:
            raise ConfigError(f"fit needs labelled prompts of at least two routes, got {routes}")
        super().__init__(routes, self.threshold, self._fallback)
        self._examples, self._labels = prompts, np.array(labels)
        key = self._cache_key(prompts, labels) if cache else None
        state = self._read_cache(key, len(prompts)) if key else None
        self.cached = state is not None
        if state is None:
            state = self._fit_state(prompts)
            if key:
                save_entry(key, {"method": self.method, "routes": routes}, state, kind="embedding")
        self._state = state
        self._vectors = state["vectors"]
        self._fitted = True
        return self

    def _cache_key(self, prompts: list[str], labels: list[str]) -> str:
        keywords = None
        if self.keywords is not None:
            keywords = {
                "routes": self.keywords.routes,
                "phrases": {r: [[p, w] for _, _, w, p in e] for r, e in self.keywords._phrases.items()},
                "scale": _KEYWORD_SCALE,
                "dropout": _KEYWORD_DROPOUT,
            }
        return cache_key(
            {
                "classifier": "embedding",
                "method": self.method,
                "logistic": _LOGISTIC,
                "keywords": keywords,
                "encoder": self.encoder.fingerprint,
                "prompts": prompts,
                "labels": labels,
            }
        )

    def _read_cache(self, key: str, n: int) -> dict[str, np.ndarray] | None:
        """A cached fit, if its arrays have the shapes this fit needs (anything else is refitted)."""
        entry = load_entry(key, kind="embedding")
        if entry is None:
            return None
        meta, arrays = entry
        vectors = arrays.get("vectors")
        if meta.get("method") != self.method or meta.get("routes") != self.routes:
            return None
        if vectors is None or vectors.dtype != np.float32 or vectors.shape != (n, self.encoder.dimension):
            return None
        if self.method == "centroid":
            centroids = arrays.get("centroids")
            ok = centroids is not None and centroids.shape == (len(self.routes), vectors.shape[1])
        else:
            coef, intercept, classes = arrays.get("coef"), arrays.get("intercept"), arrays.get("classes")
            width = vectors.shape[1] + (len(self.keywords.routes) if self.keywords is not None else 0)
            rows = 1 if len(self.routes) == 2 else len(self.routes)
            ok = (
                coef is not None
                and intercept is not None
                and classes is not None
                and coef.shape == (rows, width)
                and intercept.shape == (rows,)
                and sorted(classes.tolist()) == sorted(self.routes)
            )
        return arrays if ok else None

    def _fit_state(self, prompts: list[str]) -> dict[str, np.ndarray]:
        """The fit as arrays: the training embeddings, and the centroids or the regression's coefficients."""
        vectors = self.embed(prompts)
        if self.method == "centroid":
            centroids = np.stack([vectors[self._labels == r].mean(axis=0) for r in self.routes])
            return {"vectors": vectors, "centroids": centroids / np.linalg.norm(centroids, axis=1, keepdims=True)}
        from sklearn.linear_model import LogisticRegression

        features = self._features(prompts, vectors)
        if self.keywords is not None and _KEYWORD_DROPOUT:  # also learn from the embedding alone
            blind = features.copy()
            blind[:, vectors.shape[1] :] = 0
            features = np.vstack([features, blind])
        model = LogisticRegression(**_LOGISTIC)
        model.fit(features, np.concatenate([self._labels] * (len(features) // len(prompts))))
        return {
            "vectors": vectors,
            "coef": model.coef_.astype(np.float64),
            "intercept": model.intercept_.astype(np.float64),
            "classes": np.array([str(c) for c in model.classes_]),
        }

    def _features(self, prompts: list[str], vectors: np.ndarray) -> np.ndarray:
        if self.keywords is None:
            return vectors
        shares = [scores for scores, _ in self.keywords.score(prompts)]
        keyword = np.array([[s.get(r, 0.0) for r in self.keywords.routes] for s in shares]).reshape(len(prompts), -1)
        return np.hstack([vectors, _KEYWORD_SCALE * keyword])

    def _probabilities(self, prompts: list[str], vectors: np.ndarray) -> tuple[np.ndarray, list[str]]:
        """Per prompt, a probability per route (columns named by the list): the regression's, as
        scikit-learn's ``predict_proba`` computes them, or the softmax over the centroids."""
        state = self._state
        if self.method == "centroid":
            logits, columns = vectors @ state["centroids"].T / self.temperature, self.routes
        else:
            logits = self._features(prompts, vectors).astype(np.float64) @ state["coef"].T + state["intercept"]
            columns = state["classes"].tolist()
            if logits.shape[1] == 1:  # two routes: one logit, for the second class
                logits = np.hstack([np.zeros_like(logits), logits])
        probs = np.exp(logits - logits.max(axis=1, keepdims=True))
        return probs / probs.sum(axis=1, keepdims=True), columns

    def score(self, prompts: list[str]) -> _Scored:
        if not self._fitted:
            raise ConfigError("the embedding classifier is not fitted yet: call fit(prompts, labels) first")
        vectors = self.embed(prompts)
        probs, columns = self._probabilities(prompts, vectors)
        nearest = np.argsort(-(vectors @ self._vectors.T), axis=1, kind="stable")[:, : self.neighbours]
        results = []
        for row, near in zip(probs, nearest, strict=True):
            scores = {route: float(row[columns.index(route)]) for route in self.routes}
            evidence = tuple(f"near '{self._examples[i]}' ({self._labels[i]})" for i in near)
            results.append((scores, evidence))
        return results


# --- the registry -----------------------------------------------------------------------------------


class ClassifierFactory(Protocol):
    """Makes a classifier for a route table (``threshold`` None: the table's own)."""

    def __call__(
        self, table: RouteTable, *, threshold: float | None = None, embedding_model: str | None = None
    ) -> Classifier: ...


def _embedding(table: RouteTable, *, threshold: float | None = None, embedding_model: str | None = None):
    return EmbeddingClassifier.from_table(table, threshold, model=embedding_model)


def _keyword(table: RouteTable, *, threshold: float | None = None, embedding_model: str | None = None):
    return KeywordClassifier.from_table(table, threshold)


CLASSIFIERS: dict[str, ClassifierFactory] = {"embedding": _embedding, "keyword": _keyword}


def classifier_names() -> list[str]:
    """The registered classifier names (``Router``'s, the CLI's and the server's choices)."""
    return list(CLASSIFIERS)


def classifier_factory(name: str) -> ClassifierFactory:
    """The factory registered as ``name``; an unknown name fails with the known ones."""
    if not isinstance(name, str) or name not in CLASSIFIERS:
        raise ConfigError(f"unknown classifier {name!r}; the classifiers are {classifier_names()}", "classifier")
    return CLASSIFIERS[name]


def make_classifier(
    name: str, table: RouteTable, *, threshold: float | None = None, embedding_model: str | None = None
) -> Classifier:
    """The classifier registered as ``name``, made for ``table``."""
    return classifier_factory(name)(table, threshold=threshold, embedding_model=embedding_model)
