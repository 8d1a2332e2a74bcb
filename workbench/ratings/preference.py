"""People's votes as a verdict on one pair: do raters prefer B to A, and how sure is it? For the A/B study (each arm
against the control) and ``workbench compare --ratings`` (run B against run A).

The share is of the pair's votes won by B, ties counting half. Its 95% interval is the percentile interval of the
ratings' own resamples (``analysis.strength_draws``: prompts resampled, a prompt's votes moving together, the
spread widened by the raters' dispersion). The p-value of "no preference" (a share of 50%) comes from the same
resamples: twice the share of them on the far side of 50%, one added to each count (so it is never 0: at least
2 / (draws + 1)), and never below the sign test's on the votes that are not ties (a handful of votes on one
prompt cannot look certain). Votes all one way cannot vary when resampled: they get Clopper–Pearson's interval;
votes on fewer than ``MIN_PROMPTS`` prompts get Wilson's score interval over the votes. Several pairs on one
question are Holm-adjusted. Checks (gold items, repeats) are left out.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np
from scipy.stats import binomtest

from workbench.errors import ConfigError
from workbench.ratings.analysis import pairwise_outcomes, strength_draws
from workbench.ratings.task import RatingTask
from workbench.stats import format_p, holm, unanimous_bound

__all__ = ["DRAWS", "Preference", "match_target", "people_preference", "people_preferences"]

DRAWS = 1000  # resamples of the prompts: the smallest p-value is 2 / 1001
ALPHA = 0.05  # a preference needs p (Holm) below it and a 95% interval that excludes 50%
MIN_PROMPTS = 10  # fewer prompts with votes: too few to resample, so Wilson's interval over the votes
_VARIANT = re.compile(r" \[(.*)\](?: @\S+)?$")  # "model [variant]" or "model [variant] @run"


@dataclass(frozen=True)
class Preference:
    """People's preference for ``b`` over ``a`` on one question of a rating task: ``share`` of the pair's votes
    won by ``b`` (ties count half) with its 95% interval, the p-value of no preference and its Holm adjustment
    over the ``comparisons`` made with it; ``a`` and ``b`` as named, ``targets`` the task's targets they are."""

    task_id: str
    question: str
    a: str
    b: str
    targets: tuple[str, str]
    share: float
    ci_low: float
    ci_high: float
    p_value: float
    p_holm: float
    comparisons: int
    votes: int
    ties: int
    prompts: int
    draws: int

    @property
    def preferred(self) -> bool:
        """Whether people prefer one of the two: p (Holm) below 0.05 and an interval that excludes 50%."""
        return self.p_holm < ALPHA and (self.ci_low > 0.5 or self.ci_high < 0.5)

    def verdict(self, a: str | None = None, b: str | None = None) -> str:
        """In words, e.g. "people prefer B to A in 64% of votes (95% CI 55% to 72%, p = 0.003; 180 votes on 60
        prompts, 12 ties counted half)"; ``a``, ``b``: what to call the two (default: as named)."""
        a, b = a or self.a, b or self.b
        p = format_p(self.p_holm)
        p = f"p {p}" if p.startswith("<") else f"p = {p}"
        tail = (f"{p}{' (Holm)' if self.comparisons > 1 else ''}; {self.votes} votes on {self.prompts} prompts, "
                f"{self.ties} {'tie' if self.ties == 1 else 'ties'} counted half")  # fmt: skip
        if not self.preferred:
            return (f"no clear preference between {a} and {b}: {b} wins {self.share:.0%} of votes "
                    f"(95% CI {self.ci_low:.0%} to {self.ci_high:.0%}, {tail})")  # fmt: skip
        winner, loser, share, low, high = (
            (b, a, self.share, self.ci_low, self.ci_high) if self.share > 0.5
            else (a, b, 1 - self.share, 1 - self.ci_high, 1 - self.ci_low)
        )  # fmt: skip
        return f"people prefer {winner} to {loser} in {share:.0%} of votes (95% CI {low:.0%} to {high:.0%}, {tail})"

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "targets": list(self.targets), "verdict": self.verdict()}


def match_target(task: RatingTask, name: str) -> str:
    """The task's target ``name`` means: the target of that name, else the one whose ``[variant]`` it is (an A/B
    arm, an acceleration variant); refused, naming the task's targets, when there is none or several."""
    targets = task.manifest["targets"]
    if name in targets:
        return name
    found = [t for t in targets if (match := _VARIANT.search(t)) and match.group(1) == name]
    if len(found) == 1:
        return found[0]
    task_id = task.task_id
    said = (f"is the [variant] of several targets of rating task {task_id!r}, {found}: name one" if found
            else f"is neither a target of rating task {task_id!r} nor the [variant] of one")  # fmt: skip
    raise ConfigError(f"{name!r} {said}; its targets: {targets}", "targets")


def people_preference(
    task: RatingTask, a: str, b: str, *, question: str | None = None, draws: int = DRAWS, seed: int = 0
) -> Preference:
    """People's preference for ``b`` over ``a`` (targets of ``task``, or their ``[variant]``: ``match_target``) on
    ``question`` (default: the task's first)."""
    question = question if question is not None else task.questions[0].id
    return people_preferences(task, [(a, b)], questions=[question], draws=draws, seed=seed)[0]


def people_preferences(
    task: RatingTask,
    pairs: Sequence[tuple[str, str]],
    *,
    questions: Sequence[str] | None = None,
    draws: int = DRAWS,
    seed: int = 0,
) -> list[Preference]:
    """People's preference for b over a, for each pair ``(a, b)`` on each of ``questions`` (default: every question
    of the task with votes), question by question; p-values Holm-adjusted over the pairs of a question. A pair
    without votes on a question is refused, naming it."""
    if task.kind != "pairwise":
        raise ConfigError(
            f"people's preference needs a pairwise rating task, got task {task.task_id!r} of kind {task.kind!r}", "task"
        )
    if isinstance(draws, bool) or not isinstance(draws, int) or draws < 1:
        raise ConfigError(f"draws must be a whole number >= 1, got {draws!r}", "draws")
    matched = [(a, b, match_target(task, a), match_target(task, b)) for a, b in pairs]
    for a, b, ta, tb in matched:
        if ta == tb:
            raise ConfigError(f"{a!r} and {b!r} are the same target {ta!r}: compare two targets", "targets")
    given = [q.id for q in task.questions] if questions is None else list(questions)
    outcomes = {question: pairwise_outcomes(task, question) for question in given}
    asked = [q for q in given if not outcomes[q].empty] if questions is None else given
    if not asked:
        raise ConfigError(f"rating task {task.task_id!r} has no votes yet", "task")
    found = []
    for question in asked:
        drawn = [_preference(task, question, outcomes[question], pair, draws, seed) for pair in matched]
        adjusted = holm([p.p_value for p in drawn])
        found += [replace(p, p_holm=q, comparisons=len(drawn)) for p, q in zip(drawn, adjusted, strict=True)]
    return found


def _wilson(share: float, n: int, z: float = 1.96) -> tuple[float, float]:
    centre = (share + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(share * (1 - share) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def _preference(task: RatingTask, question: str, outcomes, pair: tuple[str, str, str, str], draws: int,
                seed: int) -> Preference:  # fmt: skip
    a, b, ta, tb = pair
    mine = outcomes[((outcomes["a"] == ta) & (outcomes["b"] == tb)) | ((outcomes["a"] == tb) & (outcomes["b"] == ta))]
    if mine.empty:
        raise ConfigError(f"rating task {task.task_id!r} has no votes on {question!r} between {ta!r} and {tb!r}")
    _, _, rates = strength_draws(mine.reset_index(drop=True), [ta, tb], draws=draws, seed=seed)
    won = np.where(mine["a"] == tb, mine["outcome"], 1 - mine["outcome"])  # b's outcome: 1 won, 0.5 tie, 0 lost
    shares = rates[:, 1, 0]  # b beats a, per resample
    low, high = np.quantile(shares, [0.025, 0.975])
    far = min(int((shares <= 0.5).sum()), int((shares >= 0.5).sum()))
    decisive = int((won != 0.5).sum())
    sign_test = binomtest(int((won == 1).sum()), decisive).pvalue if decisive else 1.0
    p_value = max(min(1.0, 2 * (far + 1) / (len(shares) + 1)), sign_test)
    prompts = int(mine["prompt_id"].nunique())
    if len(set(won)) == 1 and won[0] != 0.5:  # votes all one way: resampling cannot vary them; exact instead
        bound = unanimous_bound(len(won))
        low, high = (bound, 1.0) if won[0] == 1 else (0.0, 1 - bound)
    elif prompts < MIN_PROMPTS:  # too few prompts to resample: Wilson's score interval over the votes
        low, high = _wilson(float(won.mean()), len(won))
    return Preference(
        task.task_id, question, a, b, (ta, tb), share=float(won.mean()), ci_low=float(low), ci_high=float(high),
        p_value=p_value, p_holm=p_value, comparisons=1, votes=len(mine), ties=int((mine["outcome"] == 0.5).sum()),
        prompts=prompts, draws=len(shares),
    )  # fmt: skip
