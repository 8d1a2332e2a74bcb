"""Fewer votes for the same answer: which pair of targets to ask about next, and when a study may stop.

**Next pair** (``strategy="adaptive"``): once every target has ``WARMUP`` votes and all have met, an adjacent
pair of the current fit's order, where the stopping rule (below) is furthest from holding: each adjacent pair is
given the votes it would still need, were the fit right, for its p-value to meet its Holm threshold (the least
certain pair alpha, the most certain alpha / m), and the next votes go to the pairs that need most. Before that,
the pair with the fewest votes. The caller spreads a pair's items over prompts. Deterministic given the votes, so
a task's choices are reproducible from its seed.

**Stopping**: looking at the intervals after every round is a sequential test, so fixed-sample intervals looked at
400 times do not hold their level. Each adjacent difference gets an anytime-valid p-value instead: Robbins' normal
mixture (a confidence sequence, here on the fit's normal approximation; Howard et al. 2021), valid at whatever time
the study stops, with ``MIXTURE_SD`` the spread of the mixture over true differences (log scale, fixed in advance).
The order is decided when every adjacent pair's p-value, Holm-adjusted over the adjacent pairs, is below 1 - level.
The adjacent pairs are those of the current fit's order, so the family Holm adjusts over is chosen by the data:
its error control is approximate (in ``benchmarks/rating_simulation.py`` no study ended in a wrong order).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from itertools import pairwise
from typing import Any

import numpy as np

from workbench.errors import ConfigError
from workbench.ratings.davidson import DavidsonFit, components, covariance, fit_davidson
from workbench.stats import holm

__all__ = ["MIXTURE_SD", "WARMUP", "anytime_p", "next_pairs", "sequential_order"]

WARMUP = 10  # votes every target has before the fit chooses
MIXTURE_SD = 0.5  # the normal mixture's spread of true strength differences (log scale)


def anytime_p(difference: float, variance: float, mixture_sd: float = MIXTURE_SD) -> float:
    """The anytime-valid p-value of "no difference" for an estimate ``difference`` with ``variance``: 1 over
    the normal-mixture likelihood ratio (Ville's inequality makes it valid at any stopping time)."""
    if not variance > 0 or not np.isfinite(variance):
        return 1.0
    prior = mixture_sd**2
    spread = variance + prior
    log_ratio = 0.5 * np.log(variance / spread) + difference**2 * prior / (2 * variance * spread)
    return float(min(1.0, np.exp(-log_ratio)))


def sequential_order(
    wins: np.ndarray, ties: np.ndarray, targets: Sequence[str], *, level: float = 0.95, dispersion: float = 1.0
) -> dict[str, Any]:
    """The fitted order (strongest first) and, per adjacent pair, the difference, its standard error (times the
    square root of ``dispersion``, e.g. ``analysis.rater_dispersion``) and its anytime-valid p-value,
    Holm-adjusted; ``decided``: every adjacent pair is ordered at ``level``."""
    fit = fit_davidson(targets, wins, ties)
    spread = dispersion * covariance(fit, wins, ties)
    order = [int(i) for i in np.argsort(-fit.strengths)]
    pairs = []
    for i, j in pairwise(order):
        variance = spread[i, i] + spread[j, j] - 2 * spread[i, j]
        difference = float(fit.strengths[i] - fit.strengths[j])
        se = float(np.sqrt(max(variance, 0.0)))
        pairs.append({"above": targets[i], "below": targets[j], "difference": difference, "se": se,
                      "p_anytime": anytime_p(difference, variance)})  # fmt: skip
    adjusted = holm([pair["p_anytime"] for pair in pairs]) if pairs else []
    for pair, p in zip(pairs, adjusted, strict=True):
        pair["p_holm"] = float(p)
    return {"order": [targets[i] for i in order], "adjacent": pairs,
            "decided": all(pair["p_holm"] < 1 - level for pair in pairs)}  # fmt: skip


def next_pairs(
    wins: np.ndarray, ties: np.ndarray, count: int = 1, *, allowed: Iterable[tuple[int, int]] | None = None,
    level: float = 0.95,
) -> list[tuple[int, int]]:  # fmt: skip
    """The next ``count`` pairs of target indices to ask about (``i < j``), planned together; ``allowed``: the
    pairs that may be chosen (e.g. those a rater has items of left)."""
    n = len(wins)
    every = [(i, j) for i in range(n) for j in range(i + 1, n)]
    allowed = sorted(set(allowed)) if allowed is not None else every
    if not allowed:
        raise ConfigError("no pair of targets is left to ask about", "allowed")
    games = np.asarray(wins, float) + np.asarray(wins, float).T + np.asarray(ties, float)
    met = [(i, j) for i, j in every if games[i, j] > 0]
    if len(components(range(n), met)) > 1 or games.sum(axis=1).min() < WARMUP:
        planned = np.zeros((n, n))
        return [_fewest(games, planned, allowed) for _ in range(count)]
    fit = fit_davidson([str(i) for i in range(n)], wins, ties)
    spread = covariance(fit, wins, ties)
    order = np.argsort(-fit.strengths)
    adjacent = [tuple(sorted((int(i), int(j)))) for i, j in pairwise(order)]
    candidates = [pair for pair in adjacent if pair in allowed] or allowed
    needs = _votes_needed(fit, spread, candidates, 1 - level)
    planned = np.zeros(len(candidates))
    chosen = []
    for _ in range(count):
        k = int(np.argmax(needs - planned))
        planned[k] += 1
        chosen.append(candidates[k])
    return chosen


def _votes_needed(fit: DavidsonFit, spread: np.ndarray, pairs: list[tuple[int, int]], alpha: float) -> np.ndarray:
    """Votes each pair still needs before its anytime p-value meets its Holm threshold, were its difference what
    the fit says: the most certain pair must reach alpha / m, the next alpha / (m - 1), ..., the least alpha."""
    difference = np.array([abs(fit.strengths[i] - fit.strengths[j]) for i, j in pairs])
    precision = np.array([1 / max(spread[i, i] + spread[j, j] - 2 * spread[i, j], 1e-12) for i, j in pairs])
    per_vote = np.array([_vote_information(fit, i, j) for i, j in pairs])
    rank = np.empty(len(pairs), int)
    rank[np.argsort(-difference * np.sqrt(precision))] = np.arange(len(pairs))  # 0: the most certain
    threshold = alpha / (len(pairs) - rank)
    low, high = precision.copy(), np.maximum(precision, 1.0) * 2.0**40  # p falls as precision grows: bisect
    for _ in range(60):
        middle = np.sqrt(low * high)
        met = np.array([anytime_p(d, 1 / m) <= t for d, m, t in zip(difference, middle, threshold, strict=True)])
        high, low = np.where(met, middle, high), np.where(met, low, middle)
    return (high - precision) / np.maximum(per_vote, 1e-12)


def _fewest(games: np.ndarray, planned: np.ndarray, allowed: list[tuple[int, int]]) -> tuple[int, int]:
    """The allowed pair whose targets have the fewest votes (then the pair itself), counting planned votes."""
    total = games + planned + planned.T
    per_target = total.sum(axis=1)
    pair = min(allowed, key=lambda p: (per_target[p[0]] + per_target[p[1]], total[p]))
    planned[pair] += 1
    return pair


def _vote_information(fit: DavidsonFit, i: int, j: int, step: float = 1e-4) -> float:
    """Fisher information about ``s_i - s_j`` in one vote between i and j (tie parameter held)."""
    base = fit.strengths.copy()
    shares = []
    for shift in (step, -step):
        moved = base.copy()
        moved[i] += shift / 2
        moved[j] -= shift / 2
        shares.append(np.array(DavidsonFit(fit.targets, moved, fit.tie).probabilities(i, j)))
    slope = (shares[0] - shares[1]) / (2 * step)
    return float((slope**2 / np.array(fit.probabilities(i, j))).sum())
