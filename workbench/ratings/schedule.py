"""Which item a rater sees next, for the page, the panel and simulated raters alike.

An item with a question still open that the rater has begun comes first. Then, with the task's ``strategy``:

- ``uniform``: the rater's own order (``RatingTask.order``: drawn from the task's seed and the rater's name).
- ``adaptive`` (pairwise tasks): checks keep their places in the rater's order (a repeat once its original is
  answered); any other item is the one of the pair of targets ``adaptive.next_pairs`` chooses from everyone's
  votes so far, on the prompt with the fewest votes (then the rater's order). The same votes give the same item.
"""

from __future__ import annotations

import numpy as np

from workbench.ratings.adaptive import next_pairs
from workbench.ratings.analysis import pairwise_outcomes, vote_counts
from workbench.ratings.task import RatingItem, RatingTask, View
from workbench.ratings.votes import VoteStore

__all__ = ["next_view", "progress"]


def progress(task: RatingTask, rater: str, answered: set[tuple[str, str]] | None = None) -> tuple[int, int]:
    """Items the rater has answered every question of, and the items there are; ``answered``: the rater's
    answered (item, question) pairs, where the caller has read them already."""
    answered = VoteStore(task).answered(rater) if answered is None else answered
    order = task.order(rater)
    return sum(all((v.item_id, q.id) in answered for q in v.questions) for v in order), len(order)


def next_view(task: RatingTask, rater: str, answered: set[tuple[str, str]] | None = None) -> View | None:
    """The item ``rater`` sees next, with only its questions still open; None when they have answered all
    (``answered`` as for ``progress``)."""
    store = VoteStore(task)
    answered = store.answered(rater) if answered is None else answered
    order = task.order(rater)
    remaining = []
    for view in order:
        open_questions = tuple(q for q in view.questions if (view.item_id, q.id) not in answered)
        if len(open_questions) == len(view.questions):
            remaining.append(view)
        elif open_questions:  # begun: finished first
            return View(view.item_id, view.prompt, view.images, open_questions)
    if not remaining or task.strategy != "adaptive":
        return remaining[0] if remaining else None
    done = {item_id for item_id, _ in answered}
    mine = store.votes(rater)
    last = task.items[mine[-1].item_id] if mine else None
    due = {v.item_id for v in order[: len(order) - len(remaining) + 1]}  # the checks the rater's order has reached
    for view in remaining:
        item = task.items[view.item_id]
        shown_after = item.repeat_of in done and (last is None or item.repeat_of != last.item_id)
        if view.item_id in due and (item.check == "gold" or (item.check == "repeat" and shown_after)):
            return view
    plain = [v for v in remaining if not task.items[v.item_id].check]
    return _most_telling(task, plain, last) if plain else remaining[0]


def _most_telling(task: RatingTask, plain: list[View], last: RatingItem | None) -> View:
    """Of ``plain`` (in the rater's order), an item of the pair of targets ``next_pairs`` chooses, on the prompt
    with the fewest votes, and not on the images of the rater's ``last`` item where another is left."""
    targets = task.manifest["targets"]
    index = {t: i for i, t in enumerate(targets)}
    outcomes = pairwise_outcomes(task, task.questions[0].id)
    wins, ties = vote_counts(outcomes, targets) if len(outcomes) else (np.zeros((len(targets),) * 2),) * 2
    pair_of = {v.item_id: tuple(sorted(index[t] for t in task.items[v.item_id].targets)) for v in plain}
    pair = next_pairs(wins, ties, allowed=set(pair_of.values()))[0]
    votes_on = outcomes["prompt_id"].value_counts()
    candidates = [v for v in plain if pair_of[v.item_id] == pair]
    unit = (last.prompt_id, last.seed) if last else None
    candidates = [v for v in candidates if (task.items[v.item_id].prompt_id, task.items[v.item_id].seed) != unit] or (
        candidates
    )
    return min(candidates, key=lambda v: votes_on.get(task.items[v.item_id].prompt_id, 0))  # min keeps the first
