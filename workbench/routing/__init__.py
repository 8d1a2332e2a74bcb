"""Routing prompts: classify a prompt's content type and send it to the model and settings of that route.

A ``RouteTable`` (YAML under ``data/routes/``) names the routes, each a ``RouteSpec`` (model id,
``GenerationConfig``, description, examples), plus a fallback route, a confidence threshold and the
route used for previews. A ``Classifier`` scores a prompt against the routes; two are registered by name
in ``CLASSIFIERS``:

- ``KeywordClassifier`` ("keyword"): weighted whole-word and phrase matches ("art" never matches "party");
- ``EmbeddingClassifier`` ("embedding"): sentence embeddings (all-MiniLM-L6-v2) fitted on labelled prompts.

Both return a ``RoutingDecision`` (route, scores, confidence, reason). ``Router`` puts a table and a
classifier together, and generates through the model cache, recording the decision in every image.
``evaluate_classifiers`` measures classifiers on labelled prompts.

Modules: ``decision``, ``keywords``, ``tables``, ``classifiers``, ``router``, ``scoring``, ``embeddings``
(all-MiniLM-L6-v2 in numpy, no torch), ``cache`` (fitted classifiers kept on disk).
"""

from workbench.routing.classifiers import (
    CLASSIFIERS,
    Classifier,
    ClassifierFactory,
    EmbeddingClassifier,
    KeywordClassifier,
    ScoringClassifier,
    classifier_factory,
    classifier_names,
    make_classifier,
)
from workbench.routing.decision import RoutingDecision
from workbench.routing.router import Router, model_targets
from workbench.routing.scoring import (
    ClassifierEvaluation,
    RoutingScores,
    evaluate_classifiers,
    labelled_prompts,
    read_prompt_file,
    routing_latency,
    score_routing,
)
from workbench.routing.tables import LABELLED_PROMPTS, PARAPHRASED_PROMPTS, ROUTE_DIR, RouteTable

__all__ = [
    "CLASSIFIERS",
    "LABELLED_PROMPTS",
    "PARAPHRASED_PROMPTS",
    "ROUTE_DIR",
    "Classifier",
    "ClassifierEvaluation",
    "ClassifierFactory",
    "EmbeddingClassifier",
    "KeywordClassifier",
    "RouteTable",
    "Router",
    "RoutingDecision",
    "RoutingScores",
    "ScoringClassifier",
    "classifier_factory",
    "classifier_names",
    "evaluate_classifiers",
    "labelled_prompts",
    "make_classifier",
    "model_targets",
    "read_prompt_file",
    "routing_latency",
    "score_routing",
]
