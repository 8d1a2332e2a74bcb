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

__all__ = ["DavidsonFit", "components", "covariance", "fit_davidson"]


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
    start = np.zeros(n if allow_ties else n - 1)
    result = minimize(_loss, start, args=(wins, ties, allow_ties), jac=True, method="L-BFGS-B")
    s = np.concatenate([[0.0], result.x[: n - 1]])
    return DavidsonFit(tuple(targets), s - s.mean(), float(np.exp(result.x[-1])) if allow_ties else 0.0)


def covariance(fit: DavidsonFit, wins: np.ndarray, ties: np.ndarray) -> np.ndarray:
    """The strengths' covariance matrix at ``fit`` from the observed information (the inverse Hessian of the
    negative log-likelihood, by central differences of its gradient); differences ``s_i - s_j`` have variance
    ``C[i, i] + C[j, j] - 2 C[i, j]``."""
    n = len(fit.targets)
    wins, ties = np.asarray(wins, float), np.asarray(ties, float)
    allow_ties = fit.tie > 0
    theta = fit.strengths[1:] - fit.strengths[0]
    theta = np.concatenate([theta, [np.log(fit.tie)]]) if allow_ties else theta
    step = 1e-4
    hessian = np.empty((len(theta), len(theta)))
    for k in range(len(theta)):
        shift = np.zeros(len(theta))
        shift[k] = step
        hessian[k] = _loss(theta + shift, wins, ties, allow_ties)[1] - _loss(theta - shift, wins, ties, allow_ties)[1]
        hessian[k] /= 2 * step
    inverse = np.linalg.pinv((hessian + hessian.T) / 2)
    result = np.zeros((n, n))  # target 0 is the reference (strength 0): differences do not depend on it
    result[1:, 1:] = inverse[: n - 1, : n - 1]
    return result


def _loss(theta: np.ndarray, wins: np.ndarray, ties: np.ndarray, allow_ties: bool) -> tuple[float, np.ndarray]:
    """The negative log-likelihood of the strengths (target 0's fixed at 0) and log ν, and its gradient."""
    n = len(wins)
    games = wins + wins.T + ties  # symmetric: the votes between i and j
    s = np.concatenate([[0.0], theta[: n - 1]])
    log_nu = theta[-1] if allow_ties else -np.inf
    half = (s[:, None] + s[None, :]) / 2
    log_d = np.logaddexp(np.logaddexp(s[:, None], s[None, :]), log_nu + half)
    win, tie = np.exp(s[:, None] - log_d), np.exp(log_nu + half - log_d)  # P(i beats j), P(tie)
    ll = (wins * (s[:, None] - log_d)).sum()
    if allow_ties:
        ll += 0.5 * (ties * (log_nu + half - log_d)).sum()
    grad_s = (wins + ties / 2 - games * (win + tie / 2)).sum(axis=1)
    grad = np.concatenate([grad_s[1:], [0.5 * (ties - games * tie).sum()]]) if allow_ties else grad_s[1:]
    # a whisper of ridge: a target that never lost stays finite
    return -ll + 1e-6 * float(theta @ theta), -grad + 2e-6 * theta
