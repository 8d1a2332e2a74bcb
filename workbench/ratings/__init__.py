"""People as the judge: rating tasks made from runs (``task``), their votes (``votes``), and what the votes say
(``analysis``, with Davidson's Bradley–Terry model in ``davidson``; one pair's verdict in ``preference``); the
rating page (``page``) and simulated raters (``simulation``)."""

from workbench.ratings.analysis import analyze_ratings
from workbench.ratings.preference import people_preference, people_preferences
from workbench.ratings.simulation import simulate_votes
from workbench.ratings.task import RatingTask, rating_task
from workbench.ratings.votes import VoteStore

__all__ = [
    "RatingTask",
    "VoteStore",
    "analyze_ratings",
    "people_preference",
    "people_preferences",
    "rating_task",
    "simulate_votes",
]
