"""Bradley–Terry strengths from paired votes with ties: Davidson's (1970) model, fitted by maximum likelihood.

For targets i and j with strengths s (log scale) and tie parameter ν >= 0::

    P(i beats j) = e^s_i / D,   P(tie) = ν e^((s_i + s_j) / 2) / D,   D = e^s_i + e^s_j + ν e^((s_i + s_j) / 2)

(ν = 0 is Bradley–Terry). Strengths are identified up to a constant: they are reported centred (mean 0).
``choix`` fits Bradley–Terry and Luce models but has no tie model, so this is written by hand on scipy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize

from workbench.errors import ConfigError

__all__ = ["DavidsonFit", "components", "fit_davidson"]


@dataclass(frozen=True)
class DavidsonFit:
    """Fitted strengths (centred log scale, one per target, in ``targets`` order) and the tie parameter ν."""

    targets: tuple[str, ...]
    strengths: np.ndarray
    tie: float

    def probabilities(self, i: int, j: int) -> tuple[float, float, float]:
        """P(i wins), P(tie), P(j wins) under the fit."""
        a, b = np.exp(self.strengths[i]), np.exp(self.strengths[j])
        t = self.tie * np.sqrt(a * b)
        total = a + b + t
        return a / total, t / total, b / total


def components(targets: Sequence[str], pairs: Sequence[tuple[int, int]]) -> list[list[str]]:
    """The groups of targets connected by compared pairs (one group: every target can be ranked against every
    other)."""
    parent = list(range(len(targets)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in pairs:
        parent[root(i)] = root(j)
    groups: dict[int, list[str]] = {}
    for index, name in enumerate(targets):
        groups.setdefault(root(index), []).append(name)
    return list(groups.values())


def fit_davidson(targets: Sequence[str], wins: np.ndarray, ties: np.ndarray, *, allow_ties: bool = True) -> DavidsonFit:
    """The maximum-likelihood fit to ``wins[i, j]`` (times i beat j) and ``ties[i, j]`` (symmetric). A comparison
    graph in more than one piece cannot be ranked: refused, naming the groups that never met."""
    n = len(targets)
    wins, ties = np.asarray(wins, float), np.asarray(ties, float)
    met = [(i, j) for i in range(n) for j in range(i + 1, n) if wins[i, j] + wins[j, i] + ties[i, j] > 0]
    groups = components(targets, met)
    if len(groups) > 1:
        raise ConfigError(f"the targets were not all compared with each other: groups that never met {groups}")
    upper = np.triu(ties, 1)

    def loss(theta: np.ndarray) -> float:
        s = np.concatenate([[0.0], theta[: n - 1]])
        log_nu = theta[-1] if allow_ties else -np.inf
        half = (s[:, None] + s[None, :]) / 2
        log_d = np.logaddexp(np.logaddexp(s[:, None], s[None, :]), log_nu + half)
        ll = (
            (wins * (s[:, None] - log_d)).sum() + (upper * (log_nu + half - log_d)).sum()
            if allow_ties
            else (wins * (s[:, None] - log_d)).sum()
        )
        return -ll + 1e-6 * float(theta @ theta)  # a whisper of ridge: a target that never lost stays finite

    start = np.zeros(n if allow_ties else n - 1)
    result = minimize(loss, start, method="L-BFGS-B")
    s = np.concatenate([[0.0], result.x[: n - 1]])
    return DavidsonFit(tuple(targets), s - s.mean(), float(np.exp(result.x[-1])) if allow_ties else 0.0)
