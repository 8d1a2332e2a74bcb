"""A routing decision: the route a prompt takes, the score per route, and why; and the checks on its inputs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from workbench.errors import ConfigError

__all__ = ["RoutingDecision", "check_prompts", "check_threshold"]


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
    classifier: str  # keyword | embedding | preview | a registered classifier's name
    evidence: tuple[str, ...] = ()  # matched words (keyword) or nearest labelled prompts (embedding)

    @classmethod
    def from_scores(
        cls,
        prompt: str,
        scores: Mapping[str, float],
        *,
        threshold: float,
        fallback: str,
        classifier: str,
        evidence: Sequence[str] = (),
    ) -> RoutingDecision:
        """The best-scoring route, or ``fallback`` when no route scored or the best is below ``threshold``."""
        scores = dict(scores)
        predicted = max(scores, key=scores.get) if any(scores.values()) else None
        confidence = scores[predicted] if predicted else 0.0
        below = predicted is None or confidence < threshold
        return cls(
            prompt=prompt,
            route=fallback if below else predicted,
            predicted=predicted,
            scores=scores,
            confidence=confidence,
            threshold=threshold,
            fallback=below,
            classifier=classifier,
            evidence=tuple(evidence),
        )

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


def check_threshold(value: Any) -> float:
    """A confidence threshold: a number from 0 to 1."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ConfigError(f"threshold must be a number from 0 to 1, got {value!r}", "threshold")
    return float(value)


def check_prompts(prompts: str | Sequence[str]) -> list[str]:
    """Prompts to route as a list (one string is one prompt); each must be a non-empty string."""
    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    for prompt in prompts:
        if not isinstance(prompt, str) or not prompt.strip():
            raise ConfigError(f"a prompt to route must be a non-empty string, got {prompt!r}")
    return prompts
