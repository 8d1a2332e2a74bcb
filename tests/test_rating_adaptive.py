"""Adaptive rating: the next pair where it tells most, a stopping rule that stays valid however often it is looked
at, the schedule the page and panel share, and intervals that widen when raters disagree beyond chance."""

import itertools

import numpy as np
import pandas as pd
import pytest

from workbench.config import GenerationConfig
from workbench.errors import ConfigError
from workbench.evaluation import ModelEvaluator
from workbench.ratings import VoteStore, rating_task
from workbench.ratings.adaptive import WARMUP, anytime_p, next_pairs, sequential_order
from workbench.ratings.analysis import rater_dispersion, strength_table, vote_counts
from workbench.ratings.davidson import covariance, fit_davidson
from workbench.ratings.schedule import next_view, progress
from workbench.ratings.simulation import simulate_votes

TARGETS = ["a", "b", "c", "d"]


def votes(strengths, per_pair, rng, tie=0.3):
    """Simulated wins and ties: ``per_pair`` votes on every pair of targets (None: every pair) under Davidson."""
    n = len(strengths)
    wins, ties = np.zeros((n, n)), np.zeros((n, n))
    for (i, j), count in per_pair.items():
        a, b = np.exp(strengths[i]), np.exp(strengths[j])
        shares = np.array([a, tie * np.sqrt(a * b), b]) / (a + b + tie * np.sqrt(a * b))
        won, tied, lost = rng.multinomial(count, shares)
        wins[i, j] += won
        wins[j, i] += lost
        ties[i, j] += tied
        ties[j, i] += tied
    return wins, ties


def every(n, count):
    return {pair: count for pair in itertools.combinations(range(n), 2)}


def test_the_covariance_is_the_spread_of_the_fit_over_repeated_studies():
    rng = np.random.default_rng(0)
    truth = np.array([0.6, 0.2, 0.0, -0.8])
    fitted, predicted = [], []
    for _ in range(300):
        wins, ties = votes(truth, every(4, 40), rng)
        fit = fit_davidson(TARGETS, wins, ties)
        spread = covariance(fit, wins, ties)
        fitted.append(fit.strengths[0] - fit.strengths[1])
        predicted.append(spread[0, 0] + spread[1, 1] - 2 * spread[0, 1])
    assert 0.75 < np.var(fitted) / np.mean(predicted) < 1.33


def test_the_anytime_p_value_holds_its_level_when_looked_at_after_every_round():
    rng = np.random.default_rng(1)
    paths, looks = 2000, 200
    steps = rng.normal(size=(paths, looks))  # no difference: each round adds one unit of information
    information = np.arange(1, looks + 1)
    estimate = steps.cumsum(axis=1) / information
    anytime = np.array([[anytime_p(d, 1 / n) for d, n in zip(row, information, strict=True)] for row in estimate])
    fixed_sample = np.abs(estimate * np.sqrt(information)) > 1.96
    assert (anytime.min(axis=1) < 0.05).mean() <= 0.05  # stopping at the first small p-value keeps the level
    assert fixed_sample.any(axis=1).mean() > 0.25  # the fixed-sample test looked at 200 times does not
    assert anytime_p(0.5, 0.01) < anytime_p(0.2, 0.01) < anytime_p(0.0, 0.01) == 1.0


def test_the_order_is_decided_once_the_votes_tell_every_adjacent_pair_apart():
    rng = np.random.default_rng(2)
    truth = np.array([1.2, 0.4, -0.4, -1.2])
    few = sequential_order(*votes(truth, every(4, 5), rng), TARGETS)
    many = sequential_order(*votes(truth, every(4, 400), rng), TARGETS)
    assert not few["decided"] and many["decided"] and many["order"] == TARGETS
    assert [(p["above"], p["below"]) for p in many["adjacent"]] == [("a", "b"), ("b", "c"), ("c", "d")]
    assert all(p["p_holm"] >= p["p_anytime"] for p in many["adjacent"])
    wide = sequential_order(*votes(truth, every(4, 40), rng), TARGETS, dispersion=4.0)
    narrow = sequential_order(*votes(truth, every(4, 40), np.random.default_rng(2)), TARGETS)
    assert wide["adjacent"][0]["se"] > narrow["adjacent"][0]["se"]


def test_next_pairs_warms_up_evenly_then_asks_the_adjacent_pair_least_told_apart():
    rng = np.random.default_rng(3)
    empty = np.zeros((4, 4))
    warm = next_pairs(empty, empty, 8)
    counted = np.zeros(4)
    for i, j in warm:
        counted[[i, j]] += 1
    assert counted.min() >= 3  # every target is asked about before the fit chooses
    truth = np.array([2.0, 0.05, 0.0, -2.0])  # b and c are hard to tell apart; the others are clear
    wins, ties = votes(truth, every(4, 30), rng)
    assert (wins + wins.T + ties).sum(axis=1).min() >= WARMUP
    chosen = next_pairs(wins, ties, 20)
    assert set(chosen) <= {(0, 1), (1, 2), (2, 3)}  # adjacent pairs of the fitted order only
    assert chosen.count((1, 2)) >= 15
    assert next_pairs(wins, ties, 3, allowed=[(0, 3)]) == [(0, 3)] * 3  # only what is left to the rater
    with pytest.raises(ConfigError, match="no pair"):
        next_pairs(wins, ties, allowed=[])


def test_rater_dispersion_is_one_for_agreeing_raters_and_widens_intervals_for_opposed_ones():
    rng = np.random.default_rng(4)
    rows = []
    for rater, favourite in (("ana", "a"), ("ben", "b"), ("cy", None)):
        for prompt in range(60):
            outcome = 1.0 if favourite == "a" else 0.0 if favourite == "b" else float(rng.integers(2))
            rows.append({"prompt_id": str(prompt), "rater": rater, "a": "a", "b": "b", "outcome": outcome})
    opposed = pd.DataFrame(rows)
    agreeing = opposed.assign(outcome=rng.integers(2, size=len(opposed)).astype(float))
    fit = fit_davidson(["a", "b"], *vote_counts(opposed, ["a", "b"]))
    assert rater_dispersion(opposed, ["a", "b"], fit) > 10
    fit = fit_davidson(["a", "b"], *vote_counts(agreeing, ["a", "b"]))
    assert rater_dispersion(agreeing, ["a", "b"], fit) < 1.5
    wide = strength_table(opposed, ["a", "b"], draws=50)[0]
    narrow = strength_table(agreeing, ["a", "b"], draws=50)[0]
    assert (wide["ci_high"] - wide["ci_low"]).iloc[0] > 2 * (narrow["ci_high"] - narrow["ci_low"]).iloc[0]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("run")
    prompts = [f"a {colour} {shape}" for colour in ("red", "blue", "green") for shape in ("circle", "square")]
    config = GenerationConfig(steps=2, batch_size=6)
    ModelEvaluator(prompts, ["toyworld/sd-small", "toyworld/sd-base"], [0, 1], config, output_dir=folder).run()
    return folder


def test_an_adaptive_task_shows_every_item_once_spread_over_prompts_with_its_checks(run, tmp_path):
    task = rating_task(run, "pairwise", output_root=tmp_path, strategy="adaptive", gold_share=0.2,
                       repeat_share=0.2, display_size=32)  # fmt: skip
    assert task.strategy == "adaptive" and next_view(task, "ana") == next_view(task, "ana")  # same votes, same item
    store, shown = VoteStore(task), []
    first = next_view(task, "ana")
    store.add("ana", first.item_id, first.questions[0].id, "left", shown=first.images)
    begun = next_view(task, "ana")
    assert begun.item_id == first.item_id and [q.id for q in begun.questions] == [first.questions[1].id]
    store.add("ana", begun.item_id, begun.questions[0].id, "left", shown=begun.images)
    shown.append(first.item_id)
    while (view := next_view(task, "ana")) is not None:
        for question in view.questions:
            store.add("ana", view.item_id, question.id, "tie", shown=view.images)
        shown.append(view.item_id)
    assert sorted(shown) == sorted(task.items) and progress(task, "ana") == (len(task.items), len(task.items))
    plain = [task.items[i] for i in shown if task.items[i].check is None]
    assert len({item.prompt_id for item in plain[:6]}) == 6  # the first votes spread over the prompts
    for earlier, later in itertools.pairwise(shown):
        assert task.items[later].repeat_of != earlier  # a repeat never straight after its original
    checks = [n for n, i in enumerate(shown) if task.items[i].check]
    assert checks and checks[0] < len(shown) - len(checks)  # checks come among the items, not all at the end


def test_simulated_raters_follow_the_strategy_and_a_task_reopened_otherwise_is_refused(run, tmp_path):
    task = rating_task(run, "pairwise", output_root=tmp_path, task_id="study", strategy="adaptive", display_size=32)
    assert simulate_votes(task, ["sim"], limit=5) == 5 * len(task.questions)
    same = {"output_root": tmp_path, "task_id": "study", "display_size": 32}
    assert rating_task(run, "pairwise", strategy="adaptive", **same).path == task.path
    with pytest.raises(ConfigError, match="strategy 'adaptive', asked 'uniform'"):
        rating_task(run, "pairwise", **same)
    with pytest.raises(ConfigError, match="kind 'pairwise', asked 'alignment'"):
        rating_task(run, "alignment", **same)
    with pytest.raises(ConfigError, match=r"gold_share 0\.05, asked 0\.2"):
        rating_task(run, "pairwise", strategy="adaptive", gold_share=0.2, **same)
    with pytest.raises(ConfigError, match=r"strategy must be one of \['uniform'\] for alignment tasks"):
        rating_task(run, "alignment", output_root=tmp_path, strategy="adaptive")
    with pytest.raises(ConfigError, match="'uniform', 'adaptive'"):
        rating_task(run, "pairwise", output_root=tmp_path, strategy="greedy")


def test_votes_all_one_way_give_no_finite_strengths_and_an_exact_win_rate_interval():
    rows = [{"prompt_id": str(k), "rater": "r", "a": "a", "b": "b", "outcome": 1.0} for k in range(8)]
    rows += [
        {"prompt_id": str(k), "rater": "r", "a": "b", "b": "c", "outcome": [1.0, 0.0, 0.5][k % 3]} for k in range(9)
    ]
    table, rates = strength_table(pd.DataFrame(rows), ["a", "b", "c"], draws=50)
    assert table["ci_low"].isna().all() and table["strength"].isna().all() and (table["rank"] == 1).all()
    assert table["note"].iloc[0].startswith("no finite strengths: ['a'] won every vote")
    won = rates.set_index(["target", "opponent"]).loc[("a", "b")]
    assert won["win_rate"] == 1 and won["ci_low"] == pytest.approx(0.025 ** (1 / 8)) and won["ci_high"] == 1
    assert rates.set_index(["target", "opponent"]).loc[("b", "c"), "ci_low"] < 0.5  # the rest keep their draws
    mixed = strength_table(pd.DataFrame([*rows[:7], {**rows[0], "outcome": 0.0}, *rows[8:]]), ["a", "b", "c"])[0]
    assert (mixed["note"] == "").all() and mixed["ci_low"].notna().all()
