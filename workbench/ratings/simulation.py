"""Simulated raters, for studies run headless and for checking the analysis against a known truth.

A careful rater's answer to a pairwise item is drawn from Davidson's model with the targets' true strengths
(``davidson``: ties by its tie parameter); on a gold item they answer right. A careless rater answers at random.
The votes go through the task's ``VoteStore`` (interface "simulated"), as any rater's do.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from workbench.errors import ConfigError
from workbench.ratings.davidson import DavidsonFit
from workbench.ratings.schedule import next_view
from workbench.ratings.task import RatingTask
from workbench.ratings.votes import VoteStore

__all__ = ["simulate_votes"]


def simulate_votes(
    task: RatingTask,
    raters: Sequence[str] = ("sim-1", "sim-2", "sim-3"),
    *,
    strengths: Mapping[str, float] | None = None,
    tie: float = 0.4,
    careless: Sequence[str] = (),
    seed: int = 0,
    limit: int | None = None,
) -> int:
    """Each of ``raters`` answers every question of the items of a pairwise task, as the task's strategy shows
    them (at most ``limit`` items each); ``strengths``: each target's true strength (log scale; default: the
    task's targets from 0.5 down by 0.5, the first strongest). Returns the votes stored."""
    if task.kind != "pairwise":
        raise ConfigError(f"simulated raters answer pairwise tasks, got a {task.kind} task", "task")
    targets = task.manifest["targets"]
    strengths = dict(strengths) if strengths is not None else {t: 0.5 - 0.5 * i for i, t in enumerate(targets)}
    missing = sorted(set(targets) - set(strengths))
    if missing:
        raise ConfigError(f"strengths has no value for the target(s) {missing}", "strengths")
    store, stored = VoteStore(task), 0
    for rater in raters:
        rng = np.random.default_rng([seed, len(rater), *rater.encode()])
        items = len(store.answered(rater)) // len(task.questions)  # a study run again keeps the votes it has
        while (limit is None or items < limit) and (view := next_view(task, rater)) is not None:
            item = task.items[view.item_id]
            for question in view.questions:
                if rater in careless:
                    answer = str(rng.choice(["left", "right", "tie"]))
                elif item.check == "gold" and question.id in item.gold:
                    answer = "left" if view.images[0] == item.gold[question.id] else "right"
                else:
                    pair = DavidsonFit(tuple(item.targets), np.array([strengths[t] for t in item.targets]), tie)
                    outcome = rng.choice(3, p=pair.probabilities(0, 1))  # a wins, tie, b wins
                    if outcome == 1:
                        answer = "tie"
                    else:
                        winner = item.images[0] if outcome == 0 else item.images[1]
                        answer = "left" if view.images[0] == winner else "right"
                _, new = store.add(rater, item.item_id, question.id, answer, shown=view.images,
                                   decided_s=float(rng.uniform(1, 6)), interface="simulated")  # fmt: skip
                stored += new
            items += 1
    return stored
