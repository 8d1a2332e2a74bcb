"""What people's votes on pairs say: each target's strength with an interval, its rank and win rates; how far
raters agree (and which of them to doubt); and how far each metric agrees with people. (One-image tasks:
``single_images``.)

Strengths are Davidson's Bradley–Terry model with ties (``davidson``). Intervals are percentile intervals over
``draws`` resamples of the prompts (a prompt's votes move together: the same images), their spread widened by the
raters' dispersion: raters who disagree beyond chance (taste) widen them, and raters who agree do not (resampling
a handful of raters as well doubled the variance where they agree: 99.6% coverage for a 95% interval, in 200
simulated studies of an earlier ``benchmarks/rating_simulation.py``). Two targets share a rank unless the
interval of their difference excludes 0 after Holm's adjustment over the pairs of adjacent targets. Checks (gold
items, repeats) are left out of the fit.

Raters (``raters``): Krippendorff's alpha over every rater's votes on the same item and question, nominal, with
pairwise votes oriented by target (never by side); each rater's agreement with the majority of the others
(leave-one-out), gold accuracy and self-consistency on repeats. A rater failing ``RATER_THRESHOLDS`` is flagged,
and the strengths are given with and without the flagged raters; nobody is dropped silently.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from workbench.errors import ConfigError
from workbench.ratings.davidson import DavidsonFit, fit_davidson
from workbench.ratings.raters import RATER_THRESHOLDS, agreement_alpha, majority, rater_scores
from workbench.ratings.single_images import analyze_single_images, over_prompts
from workbench.ratings.task import SKIP, RatingTask
from workbench.ratings.votes import VoteStore
from workbench.run_folder import json_records
from workbench.stats import holm, unanimous_bound

__all__ = [
    "analyze_ratings",
    "beside_judge",
    "krippendorff_alpha",
    "metrics_against_people",
    "pairwise_outcomes",
    "people_verdict",
    "rater_dispersion",
    "rater_table",
    "strength_draws",
    "strength_table",
    "vote_counts",
]


def pairwise_outcomes(task: RatingTask, question: str, *, checks: bool = False) -> pd.DataFrame:
    """One row per pairwise vote on ``question`` (skips left out): the item, prompt, rater, the two targets in
    the task's order (``a``, ``b``) and the ``outcome`` for ``a``: 1 won, 0.5 tie, 0 lost. ``checks``: keep gold
    items and repeats (for the raters' table)."""
    if task.kind != "pairwise":
        raise ConfigError(f"pairwise outcomes need a pairwise task, got a {task.kind} task", "task")
    task.question(question)
    rows = []
    for vote in VoteStore(task).votes():
        item = task.items[vote.item_id]
        if vote.question != question or vote.answer == SKIP or (item.check and not checks):
            continue
        if vote.answer == "tie":
            outcome = 0.5
        else:
            chosen = vote.shown[0] if vote.answer == "left" else vote.shown[1]
            outcome = 1.0 if chosen == item.images[0] else 0.0
        chosen_image = None if vote.answer == "tie" else chosen
        rows.append({"item_id": item.item_id, "prompt_id": item.prompt_id, "seed": item.seed, "rater": vote.rater,
                     "a": item.targets[0], "b": item.targets[1], "outcome": outcome, "check": item.check,
                     "repeat_of": item.repeat_of, "chosen_image": chosen_image})  # fmt: skip
    columns = ["item_id", "prompt_id", "seed", "rater", "a", "b", "outcome", "check", "repeat_of", "chosen_image"]
    return pd.DataFrame(rows, columns=columns)


def vote_counts(outcomes: pd.DataFrame, targets: list[str], by: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``wins[i, j]``: votes where i beat j; ``ties[i, j]`` (symmetric): votes where they tied. ``by``: a column
    whose values get a count matrix each (stacked first, in sorted order)."""
    index = {t: i for i, t in enumerate(targets)}
    groups, group = np.unique(outcomes[by].to_numpy(), return_inverse=True) if by else ([None], None)
    group = group if by else np.zeros(len(outcomes), int)
    a, b = outcomes["a"].map(index).to_numpy(), outcomes["b"].map(index).to_numpy()
    outcome = outcomes["outcome"].to_numpy()
    wins, ties = np.zeros((len(groups), len(targets), len(targets))), np.zeros((len(groups), *(len(targets),) * 2))
    won, lost, tied = outcome == 1.0, outcome == 0.0, outcome == 0.5
    np.add.at(wins, (group[won], a[won], b[won]), 1)
    np.add.at(wins, (group[lost], b[lost], a[lost]), 1)
    np.add.at(ties, (group[tied], a[tied], b[tied]), 1)
    np.add.at(ties, (group[tied], b[tied], a[tied]), 1)
    return (wins, ties) if by else (wins[0], ties[0])


def rater_dispersion(outcomes: pd.DataFrame, targets: list[str], fit: DavidsonFit) -> float:
    """How far the raters disagree beyond chance: Pearson's X² of the rater × pair table of wins, ties and losses
    against the fit, over its degrees of freedom, and at least 1 (1: the votes vary no more than the model says).
    The quasi-likelihood dispersion factor: intervals are widened by its square root. With one rater it measures
    how far the votes stray from the model itself (e.g. a cycle of preferences)."""
    wins, ties = vote_counts(outcomes, targets, by="rater")
    n = len(targets)
    upper = np.triu_indices(n, 1)
    observed = np.stack([wins[:, upper[0], upper[1]], ties[:, upper[0], upper[1]], wins[:, upper[1], upper[0]]], -1)
    games = observed.sum(axis=-1)
    expected_share = np.array([fit.probabilities(i, j) for i, j in zip(*upper, strict=True)])
    expected = games[..., None] * expected_share[None]
    cells = games > 0
    x2 = float((((observed - expected) ** 2)[cells] / expected[cells]).sum())
    freedom = 2 * int(cells.sum()) - n  # two free shares a cell, less the n - 1 strengths and the tie parameter
    return max(1.0, x2 / freedom) if freedom > 0 else 1.0


def strength_draws(
    outcomes: pd.DataFrame, targets: list[str], *, draws: int = 200, seed: int = 0
) -> tuple[DavidsonFit, np.ndarray, np.ndarray]:
    """The fit to ``outcomes``, and its strengths and win-rate matrices refitted on ``draws`` resamples of the
    prompts (a prompt's votes move together: the same images), their spread around the fit widened by the
    square root of ``rater_dispersion``. A resample that leaves two targets unmet is left out."""
    if outcomes.empty:
        raise ConfigError("no votes to rank the targets by", "votes")
    wins, ties = vote_counts(outcomes, targets, by="prompt_id")
    fit = fit_davidson(targets, wins.sum(axis=0), ties.sum(axis=0))
    point = _win_rates(wins.sum(axis=0), ties.sum(axis=0))
    widen = np.sqrt(rater_dispersion(outcomes, targets, fit))
    rng = np.random.default_rng(seed)
    samples, rates = [], []
    for _ in range(draws):
        weights = rng.multinomial(len(wins), np.full(len(wins), 1 / len(wins)))
        sample_wins, sample_ties = np.tensordot(weights, wins, 1), np.tensordot(weights, ties, 1)
        try:
            samples.append(fit_davidson(targets, sample_wins, sample_ties).strengths)
        except ConfigError:
            continue
        rates.append(_win_rates(sample_wins, sample_ties))
    samples = fit.strengths + widen * (np.array(samples) - fit.strengths) if samples else np.empty((0, len(targets)))
    rates = np.clip(point + widen * (np.array(rates) - point), 0, 1) if rates else np.empty((0, *point.shape))
    return fit, samples, rates


def strength_table(
    outcomes: pd.DataFrame, targets: Sequence[str] | None = None, *, draws: int = 200, level: float = 0.95,
    seed: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame]:  # fmt: skip
    """Per target (strongest first): Davidson strength (centred log scale) with its interval, its rank (shared
    where not told apart, Holm over adjacent pairs) and the tie parameter; and the win-rate matrix (row beats
    column, ties counted half) with intervals (``strength_draws``). Votes that leave a group of targets unbeaten
    by the others give no finite strengths: no intervals then, every rank shared, and a ``note`` that says so; a
    pair's win rate from votes all one way has Clopper–Pearson's interval (resampling them cannot vary it)."""
    targets = list(targets) if targets is not None else sorted(set(outcomes["a"]) | set(outcomes["b"]))
    fit, samples, stacked = strength_draws(outcomes.reset_index(drop=True), targets, draws=draws, seed=seed)
    wins, ties = vote_counts(outcomes, targets)
    note = _unbeaten(wins, ties, targets)
    if not len(samples):  # no resample compared every target with the others: no intervals
        stacked = np.full((1, len(targets), len(targets)), np.nan)
    if not len(samples) or note:
        samples = np.full((1, len(targets)), np.nan)
    alpha = 1 - level
    order = np.argsort(-fit.strengths)
    table = pd.DataFrame({
        "target": [targets[i] for i in order], "strength": np.nan if note else fit.strengths[order],
        "ci_low": np.quantile(samples[:, order], alpha / 2, axis=0),
        "ci_high": np.quantile(samples[:, order], 1 - alpha / 2, axis=0),
        "votes": [int(((outcomes["a"] == targets[i]) | (outcomes["b"] == targets[i])).sum()) for i in order],
    })  # fmt: skip
    # adjacent pairs: the difference's bootstrap p (twice the smaller tail), Holm-adjusted; a new rank where it holds
    differences = samples[:, order[:-1]] - samples[:, order[1:]]
    p = np.minimum(1.0, 2 * np.minimum((differences <= 0).mean(axis=0), (differences >= 0).mean(axis=0)))
    p[np.isnan(differences).all(axis=0)] = 1.0  # no intervals: not told apart
    adjusted = np.asarray(holm(list(p)), dtype=float) if len(p) else p
    ranks = [1]
    for position, q in enumerate(adjusted, start=2):
        ranks.append(position if q < alpha else ranks[-1])
    table["rank"] = ranks
    table["p_holm_next"] = [*adjusted, np.nan]
    table["tie_parameter"] = fit.tie
    table["draws_used"] = len(samples) if not np.isnan(samples).all() else 0  # resamples that ranked every target
    table["note"] = note
    point = _win_rates(wins, ties)
    stacked[:, np.arange(len(targets)), np.arange(len(targets))] = 0.5  # a target against itself: not a pair
    with warnings.catch_warnings():  # pairs that never met have no draws: their interval is NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        low, high = np.nanquantile(stacked, alpha / 2, axis=0), np.nanquantile(stacked, 1 - alpha / 2, axis=0)
    games = wins + wins.T + ties
    with np.errstate(divide="ignore"):
        exact = unanimous_bound(games, level)  # votes all one way
    won_all, lost_all = (games > 0) & (wins == games), (games > 0) & (games == wins.T)
    low, high = np.where(won_all, exact, np.where(lost_all, 0.0, low)), np.where(lost_all, 1 - exact, high)
    matrix = pd.DataFrame(
        [{"target": targets[i], "opponent": targets[j], "win_rate": point[i, j], "ci_low": low[i, j],
          "ci_high": high[i, j]} for i in range(len(targets)) for j in range(len(targets)) if i != j]
    )  # fmt: skip
    return table, matrix


def _unbeaten(wins: np.ndarray, ties: np.ndarray, targets: list[str]) -> str:
    """Why the votes give no finite strengths ("" when they do): a group of targets that won every vote against
    the others (Ford's condition fails: across every split of the targets, some vote must go each way or tie)."""
    from scipy.sparse.csgraph import connected_components

    beat_or_tied = (wins + ties) > 0
    count, group = connected_components(beat_or_tied, directed=True, connection="strong")
    if count == 1:
        return ""
    # a group that nobody outside beat or tied (the components form a chain of such groups: one comes first)
    top = next(label for label in range(count) if not beat_or_tied[np.ix_(group != label, group == label)].any())
    unbeaten = [t for t, label in zip(targets, group, strict=True) if label == top]
    return f"no finite strengths: {unbeaten} won every vote against the other targets; more votes needed"


def people_verdict(strengths: pd.DataFrame, win_rates: pd.DataFrame) -> str:
    """People's verdict in words: the first-ranked target against each other target, as the share of their votes
    it won (ties count half) with its interval, and whether the ranking tells them apart."""
    best = strengths.iloc[0]
    rates = win_rates.set_index(["target", "opponent"])
    parts = []
    for other in strengths.iloc[1:].itertuples():
        rate = rates.loc[(best["target"], other.target)]
        if np.isnan(rate["win_rate"]):
            parts.append(f"{best['target']} and {other.target} were never compared directly")
            continue
        apart = "ranked above" if other.rank > best["rank"] else "not told apart from"
        parts.append(f"{best['target']} is {apart} {other.target}: people prefer it in {rate['win_rate']:.0%} of "
                     f"votes (95% CI {rate['ci_low']:.0%} to {rate['ci_high']:.0%}; ties count half)")  # fmt: skip
    return "; ".join(parts)


def _win_rates(wins: np.ndarray, ties: np.ndarray) -> np.ndarray:
    games = wins + wins.T + ties
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(games > 0, (wins + ties / 2) / games, np.nan)


def rater_table(task: RatingTask, question: str) -> pd.DataFrame:
    """Per rater: votes, agreement with the majority of the others on the same items (leave-one-out; ties
    between the others' answers left out), gold accuracy, self-consistency on repeats, and whether flagged
    (``RATER_THRESHOLDS``)."""
    outcomes = pairwise_outcomes(task, question, checks=True)
    gold = {item_id: task.items[item_id].gold.get(question) for item_id in outcomes["item_id"].unique()}
    return rater_scores(outcomes.rename(columns={"chosen_image": "chosen"}), gold)


def krippendorff_alpha(task: RatingTask, question: str, *, draws: int = 200, seed: int = 0) -> dict[str, Any]:
    """Krippendorff's alpha (nominal) of every rater's pairwise votes on ``question``, oriented by target, with a
    95% interval over resampled items (``raters.agreement_alpha``)."""
    return agreement_alpha(pairwise_outcomes(task, question), "nominal", draws=draws, seed=seed)


def metrics_against_people(
    task: RatingTask, question: str, strengths: pd.DataFrame | None = None, *, draws: int = 200, seed: int = 0
) -> list[dict[str, Any]]:
    """Per per-image metric the task's images have: how often it prefers the image people prefer (the majority
    of the raters' votes on a pair; pairs people call a tie, or split evenly on, are left out; a metric that
    scores both images the same counts half), with a 95% interval over resampled prompts; and Kendall's tau-b
    between its ranking of the targets (mean over the rated images) and people's (``strengths``), given three
    targets or more. Rows shaped like ``validity.json``'s (``metric``, ``kendall_tau``, ``auc_wrong``) plus
    ``pairwise_agreement``, its interval and ``n_pairs``."""
    from scipy.stats import kendalltau

    from workbench.metrics import METRICS

    outcomes = pairwise_outcomes(task, question)
    said = outcomes.groupby("item_id")["outcome"].agg(majority).dropna()  # the raters' majority per pair
    said = said[said != 0.5]
    items = [task.items[i] for i in said.index]
    names = sorted({m for item in items for scores in item.scores for m in scores})
    rows = []
    rng = np.random.default_rng(seed)
    for name in names:
        sign = 1 if METRICS[name].higher_is_better else -1
        agree, prompts = [], []
        for item in items:
            a, b = (scores.get(name) for scores in item.scores)
            if a is None or b is None:
                continue
            metric = 0.5 if a == b else float(sign * (a - b) > 0)
            agree.append(0.5 if metric == 0.5 else float(metric == said[item.item_id]))
            prompts.append(item.prompt_id)
        if not agree:
            continue
        low, high = over_prompts(pd.DataFrame({"prompt_id": prompts, "agree": agree}), "agree", rng, draws)
        tau = None
        if strengths is not None and len(strengths) >= 3:
            means = _target_means(task, name)
            people = strengths.set_index("target")["strength"]
            shared = [t for t in people.index if t in means]
            if len(shared) >= 3 and people[shared].notna().all():
                tau = float(kendalltau([sign * means[t] for t in shared], people[shared]).statistic)
        rows.append({"metric": name, "kendall_tau": tau, "auc_wrong": None,
                     "pairwise_agreement": float(np.mean(agree)), "ci_low": low, "ci_high": high,
                     "n_pairs": len(agree)})  # fmt: skip
    return rows


def beside_judge(people: Sequence[dict[str, Any]], validity: str | Path | Sequence[dict[str, Any]]) -> pd.DataFrame:
    """Each metric against people (``metrics_against_people``'s rows) beside each metric against the judge (a
    validity study's ``validity.json``, its path or its rows): one row per metric, ``_people`` and ``_judge``
    columns side by side; a metric only one side measured has the other's empty."""
    if isinstance(validity, str | Path):
        path = Path(validity)
        path = path / "validity.json" if path.is_dir() else path
        if not path.is_file():
            raise ConfigError(f"no validity.json at {validity} (a metric validity study's run folder)", "validity")
        validity = json.loads(path.read_text())
    columns = ["metric", "kendall_tau", "auc_wrong"]
    judge = pd.DataFrame(list(validity), columns=[*columns, "prompts_needed"])
    people = pd.DataFrame(list(people), columns=[*columns, "pairwise_agreement", "ci_low", "ci_high", "n_pairs"])
    return people.merge(judge, on="metric", how="outer", suffixes=("_people", "_judge"))


def _stopping(outcomes: pd.DataFrame, targets: list[str]) -> dict[str, Any]:
    """Whether the study may stop: ``adaptive.sequential_order`` (anytime-valid, so it may be asked after every
    vote), with the raters' dispersion."""
    from workbench.ratings.adaptive import sequential_order

    wins, ties = vote_counts(outcomes, targets)
    fit = fit_davidson(targets, wins, ties)
    found = sequential_order(wins, ties, targets, dispersion=rater_dispersion(outcomes, targets, fit))
    return {**found, "rule": "every adjacent pair ordered: anytime-valid p (normal mixture), Holm-adjusted, < 0.05"}


def _target_means(task: RatingTask, metric: str) -> dict[str, float]:
    values: dict[str, list[float]] = {}
    for item in task.items.values():
        if item.check is None:
            for target, scores in zip(item.targets, item.scores, strict=False):
                if metric in scores:
                    values.setdefault(target, []).append(scores[metric])
    return {target: float(np.mean(v)) for target, v in values.items()}


def analyze_ratings(task: RatingTask | str | Path, *, draws: int = 200, seed: int = 0) -> dict[str, Any]:
    """Per question of a pairwise task: the strengths (all raters, and without the flagged ones), the win rates,
    the raters' table, alpha and the metrics against people; written to the task's ``human.json`` and returned.
    A rater flagged on any question (gold items belong to the first) is flagged on all (``flagged``)."""
    task = task if isinstance(task, RatingTask) else RatingTask(task)
    if task.kind != "pairwise":
        return analyze_single_images(task, draws=draws, seed=seed)
    targets = task.manifest["targets"]
    asked = [q for q in task.questions if not pairwise_outcomes(task, q.id).empty]
    tables = {q.id: rater_table(task, q.id) for q in asked}
    flagged = sorted({rater for table in tables.values() for rater in table.loc[table["flagged"], "rater"]})
    result: dict[str, Any] = {"task_id": task.task_id, "kind": task.kind, "thresholds": RATER_THRESHOLDS,
                              "interval": f"95% percentile interval over {draws} resamples of prompts, widened "
                                          "by the raters' dispersion (rater_dispersion)",
                              "flagged": flagged, "questions": {}}  # fmt: skip
    for question in asked:
        outcomes = pairwise_outcomes(task, question.id)
        try:
            strengths, win_rates = strength_table(outcomes, targets, draws=draws, seed=seed)
        except ConfigError as error:  # e.g. targets never compared: said for this question, the others go on
            result["questions"][question.id] = {"question": question.text, "votes": len(outcomes), "error": str(error)}
            continue
        entry = {
            "question": question.text, "votes": len(outcomes),
            "verdict": people_verdict(strengths, win_rates),
            "strengths": json_records(strengths), "win_rates": json_records(win_rates),
            "raters": json_records(tables[question.id]),
            "alpha": krippendorff_alpha(task, question.id, draws=draws, seed=seed),
            "metrics": metrics_against_people(task, question.id, strengths, draws=draws, seed=seed),
            "stopping": _stopping(outcomes, targets),
        }  # fmt: skip
        kept = outcomes[~outcomes["rater"].isin(flagged)]
        if flagged and not kept.empty:
            try:
                entry["strengths_without_flagged"] = json_records(
                    strength_table(kept, targets, draws=draws, seed=seed)[0]
                )
            except ConfigError as error:
                entry["strengths_without_flagged"] = str(error)
        result["questions"][question.id] = entry
    (task.path / "human.json").write_text(json.dumps(result, indent=2, default=float))
    return result
