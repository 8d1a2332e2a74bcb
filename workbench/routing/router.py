"""The router: a route table with a classifier; it routes and explains prompts, and generates each through
its route's model and settings."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from workbench.config import ROUTED, GenerationConfig, RouteSpec
from workbench.errors import ConfigError, EmbeddingUnavailableError
from workbench.routing.classifiers import Classifier, classifier_names, make_classifier
from workbench.routing.decision import RoutingDecision, check_prompts, check_threshold
from workbench.routing.tables import RouteTable

__all__ = ["Router", "model_targets"]


class Router:
    """A route table with a classifier: ``route`` and ``explain`` a prompt, ``generate`` through its route.

    ``classifier`` is a registered name (``classifier_names()``: "embedding", fitted on the labelled
    prompts' training split plus the table's examples; "keyword") or a ``Classifier``. ``embedding_model``
    is a sentence-transformers model folder (all-MiniLM-L6-v2 by default, run in numpy; the fitted classifier
    is cached on disk, see ``workbench.routing.cache``). When it cannot be loaded (the "routing" extra is
    not installed), "embedding" falls back to the keyword classifier with a warning that says how to install
    it.
    """

    def __init__(
        self,
        table: RouteTable | str | Path = "toyworld",
        classifier: str | Classifier = "embedding",
        *,
        threshold: float | None = None,
        embedding_model: str | None = None,
        device: str | None = None,
        cache=None,
        name: str = ROUTED,
    ):
        self.name = name  # how its images' rows name the model: "routed"
        self.table = table if isinstance(table, RouteTable) else RouteTable.load(table)
        self.threshold = self.table.threshold if threshold is None else check_threshold(threshold)
        self.device = device
        self._cache = cache
        self.notice = ""
        if isinstance(classifier, str):
            try:
                self.classifier = make_classifier(
                    classifier, self.table, threshold=self.threshold, embedding_model=embedding_model
                )
            except EmbeddingUnavailableError as error:
                self.notice = f"{error}. Routing with the keyword classifier instead."
                warnings.warn(self.notice, stacklevel=2)
                self.classifier = make_classifier("keyword", self.table, threshold=self.threshold)
        elif isinstance(classifier, Classifier):
            self.classifier = classifier
        else:
            raise ConfigError(
                f"classifier must be one of {classifier_names()} or a Classifier, got {classifier!r}", "classifier"
            )

    @property
    def cache(self):
        """The pipeline cache its generations load models through (the package's default unless given)."""
        if self._cache is None:
            from workbench.models import default_cache

            self._cache = default_cache
        return self._cache

    @cache.setter
    def cache(self, cache) -> None:
        self._cache = cache

    def route(self, prompt: str, *, preview: bool = False) -> RoutingDecision:
        return self.route_many([prompt], preview=preview)[0]

    def route_many(self, prompts: Sequence[str], *, preview: bool = False) -> list[RoutingDecision]:
        """One decision per prompt; with ``preview=True`` every prompt takes the table's preview route."""
        if preview:
            if self.table.preview is None:
                raise ConfigError(f"{self.table.source} has no preview route; its routes are {list(self.table.routes)}")
            return [
                RoutingDecision(p, self.table.preview, None, {}, 1.0, self.threshold, False, "preview")
                for p in check_prompts(prompts)
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
        from workbench.plan import resolve, run_plan

        records = []
        for decision in self.route_many(check_prompts(prompts), preview=preview):
            plan = resolve(self.table[decision.route], decision.prompt, GenerationConfig(batch_size=batch_size))
            plan = replace(plan, context=decision.to_context())
            records += run_plan(
                plan, decision.prompt, seeds, device=self.device, cache=self.cache, progress=progress, cancel=cancel
            )
        return records


def model_targets(names: Sequence[str], *, classifier: str = "embedding", device: str | None = None) -> list:
    """Model choices written as text (study parameters, the command line) as targets for the evaluator and
    the A/B tester: "routed" becomes a Router on the toy world's table, "routed:<table>" one on that table
    (each made once); any other name is a model id."""
    if isinstance(names, str):
        raise ConfigError(f"model choices must be a list of names, got the string {names!r}", "models")
    routers: dict[str, Router] = {}
    targets: list = []
    for name in names:
        if name != ROUTED and not str(name).startswith(f"{ROUTED}:"):
            targets.append(name)
            continue
        table = str(name).partition(":")[2] or "toyworld"
        if name not in routers:
            routers[name] = Router(table, classifier, device=device, name=name)
        targets.append(routers[name])
    return targets
