"""What people's votes on one image at a time say: an alignment task's share of yes / partly / no per target,
each metric's AUC for images people call "no" against "yes", and per part of the prompts' checklist (colour,
count, ...) how often each target's images show it; a choices task's label per image; and the raters'
Krippendorff's alpha (ordinal for alignment, nominal for choices)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from workbench.ratings.raters import RATER_THRESHOLDS, agreement_alpha, majority, rater_scores
from workbench.ratings.task import CHECKLIST, SKIP, RatingTask
from workbench.ratings.votes import VoteStore
from workbench.run_folder import json_records

__all__ = ["ALIGNMENT_SCORES", "alignment_metrics", "alignment_table", "analyze_single_images", "answers",
           "checklist_agreement", "checklist_table", "coded_answers", "labels", "over_prompts",
           "single_image_alpha", "single_image_raters"]  # fmt: skip

ALIGNMENT_SCORES = {"yes": 1.0, "partly": 0.5, "no": 0.0}  # an alignment answer as a number (ordinal)


def answers(task: RatingTask, question: str, *, checks: bool = False, without: Sequence[str] = ()) -> pd.DataFrame:
    """One row per answer to ``question`` on a one-image task (alignment, choices; skips left out): the item,
    prompt, rater, target, image and answer; ``without``: raters left out."""
    task.question(question)
    rows = [
        {"item_id": item.item_id, "prompt_id": item.prompt_id, "rater": vote.rater, "target": item.targets[0],
         "image": item.images[0], "answer": vote.answer, "check": item.check, "repeat_of": item.repeat_of}
        for vote in VoteStore(task).votes()
        if vote.question == question and vote.answer != SKIP and vote.rater not in without
        and ((item := task.items[vote.item_id]).check is None or checks)
    ]  # fmt: skip
    columns = ["item_id", "prompt_id", "rater", "target", "image", "answer", "check", "repeat_of"]
    return pd.DataFrame(rows, columns=columns)


def alignment_table(
    task: RatingTask, question: str, *, draws: int = 200, seed: int = 0, without: Sequence[str] = ()
) -> pd.DataFrame:
    """Per target: the share of its images people call yes, partly and no, and its mean score (yes 1, partly
    0.5, no 0) with a 95% interval over resampled prompts; ``without``: raters left out."""
    given = answers(task, question, without=without)
    given["score"] = given["answer"].map(ALIGNMENT_SCORES)
    rng, rows = np.random.default_rng(seed), []
    for target, mine in given.groupby("target", sort=False):
        low, high = over_prompts(mine, "score", rng, draws)
        shares = mine["answer"].value_counts(normalize=True)
        rows.append({"target": target, "score": mine["score"].mean(), "ci_low": low, "ci_high": high,
                     "answers": len(mine),
                     **{answer: float(shares.get(answer, 0.0)) for answer in ALIGNMENT_SCORES}})  # fmt: skip
    return pd.DataFrame(rows).sort_values("score", ascending=False, ignore_index=True)


def alignment_metrics(task: RatingTask, question: str) -> list[dict[str, Any]]:
    """Per per-image metric: ``auc_wrong``, the chance that an image people call "yes" (majority) scores above
    one of the same target they call "no", ties counted half (as ``validity.json``'s, within a target: a metric
    earns nothing for telling models apart); "partly" images left out."""
    from scipy.stats import mannwhitneyu

    from workbench.metrics import METRICS

    given = answers(task, question)
    said = given.groupby("item_id")["answer"].agg(majority)
    rows = []
    names = sorted({m for item in task.items.values() for scores in item.scores for m in scores})
    for name in names:
        sign = 1 if METRICS[name].higher_is_better else -1
        by_target: dict[str, tuple[list, list]] = {}
        for item_id, answer in said.dropna().items():
            item = task.items[item_id]
            value = item.scores[0].get(name) if item.scores else None
            if value is not None and answer in ("yes", "no"):
                by_target.setdefault(item.targets[0], ([], []))[answer == "no"].append(sign * value)
        u = pairs = 0.0
        for right, wrong in by_target.values():
            if right and wrong:
                u += mannwhitneyu(right, wrong).statistic
                pairs += len(right) * len(wrong)
        rows.append({"metric": name, "kendall_tau": None, "auc_wrong": float(u / pairs) if pairs else None,
                     "pairwise_agreement": None, "n_pairs": int(pairs)})  # fmt: skip
    return rows


def coded_answers(task: RatingTask, question: str, *, checks: bool = False) -> pd.DataFrame:
    """``answers`` with each answer coded as a number (``outcome``: yes 1, partly 0.5, no 0; a choice by its
    position) and as given (``chosen``), as ``raters`` reads them."""
    given = answers(task, question, checks=checks)
    choices = {answer: i for i, answer in enumerate(task.question(question).answers)}
    codes = ALIGNMENT_SCORES if task.kind == "alignment" else choices
    return given.assign(outcome=given["answer"].map(codes), chosen=given["answer"])


def single_image_alpha(task: RatingTask, question: str, *, draws: int = 200, seed: int = 0) -> dict[str, Any]:
    """Krippendorff's alpha of a one-image question with its interval: ordinal for yes / partly / no, else
    nominal."""
    level = "ordinal" if task.kind == "alignment" else "nominal"
    return agreement_alpha(coded_answers(task, question), level, draws=draws, seed=seed)


def single_image_raters(task: RatingTask, question: str) -> pd.DataFrame:
    """``raters.rater_scores`` of a one-image question (gold: an alignment image shown with another prompt,
    whose right answer is "no")."""
    given = coded_answers(task, question, checks=True)
    gold = {item_id: task.items[item_id].gold.get(question) for item_id in given["item_id"].unique()}
    return rater_scores(given, gold)


def checklist_table(task: RatingTask, *, draws: int = 200, seed: int = 0) -> pd.DataFrame:
    """Per target and part of the prompts' checklists (a part's name before its colon: "colour" for
    "colour: red"): the share of answers saying its images show it, with a 95% interval over resampled prompts,
    and the answers behind it. Checks left out."""
    rows = []
    for vote in VoteStore(task).votes():
        item = task.items[vote.item_id]
        if vote.question.startswith(CHECKLIST) and vote.answer != SKIP and item.check is None:
            part = item.checklist[int(vote.question.removeprefix(CHECKLIST))]
            rows.append({"target": item.targets[0], "part": part.split(":")[0].strip(), "prompt_id": item.prompt_id,
                         "shown": float(vote.answer == "yes")})  # fmt: skip
    given = pd.DataFrame(rows, columns=["target", "part", "prompt_id", "shown"])
    rng, table = np.random.default_rng(seed), []
    for (target, part), group in given.groupby(["target", "part"], sort=True):
        low, high = over_prompts(group, "shown", rng, draws)
        table.append({"target": target, "part": part, "shown": group["shown"].mean(), "ci_low": low,
                      "ci_high": high, "answers": len(group)})  # fmt: skip
    return pd.DataFrame(table, columns=["target", "part", "shown", "ci_low", "ci_high", "answers"])


def checklist_agreement(task: RatingTask, *, draws: int = 200, seed: int = 0) -> pd.DataFrame:
    """Per all-or-nothing per-image metric (its values only 0 and 1, as ``geneval`` and ``composition_all``): on
    the images with checklist votes, how often its verdict agrees with people's, with a 95% interval over resampled
    prompts, Cohen's kappa and the four counts. People call an image right when the majority of the answers on
    each part of its checklist is yes; an image with a part split evenly is left out, as are checks."""
    from sklearn.metrics import cohen_kappa_score

    votes = [(vote.item_id, vote.question, vote.answer == "yes") for vote in VoteStore(task).votes()
             if vote.question.startswith(CHECKLIST) and vote.answer != SKIP
             and task.items[vote.item_id].check is None]  # fmt: skip
    given = pd.DataFrame(votes, columns=["item_id", "part", "yes"])
    parts = given.groupby(["item_id", "part"])["yes"].agg(majority).reset_index()
    said = parts.groupby("item_id")["yes"].agg(lambda v: None if v.isna().any() else bool(v.all())).dropna()
    items = [task.items[item_id] for item_id in said.index]
    names = sorted({m for item in items for m, v in (item.scores[0] if item.scores else {}).items()})
    columns = ["metric", "images", "agreement", "ci_low", "ci_high", "kappa", "both_right", "metric_only",
               "people_only", "both_wrong"]  # fmt: skip
    rng, rows = np.random.default_rng(seed), []
    for name in names:
        values = [(item.prompt_id, item.scores[0].get(name), said[item.item_id]) for item in items if item.scores]
        pairs = pd.DataFrame([v for v in values if v[1] is not None], columns=["prompt_id", "metric", "people"])
        if pairs.empty or not set(pairs["metric"]) <= {0.0, 1.0}:
            continue
        metric, people = pairs["metric"].astype(bool), pairs["people"].astype(bool)
        pairs["agree"] = (metric == people).astype(float)
        low, high = over_prompts(pairs, "agree", rng, draws)
        kappa = cohen_kappa_score(metric, people) if metric.nunique() + people.nunique() > 2 else float("nan")
        rows.append({"metric": name, "images": len(pairs), "agreement": pairs["agree"].mean(), "ci_low": low,
                     "ci_high": high, "kappa": float(kappa), "both_right": int((metric & people).sum()),
                     "metric_only": int((metric & ~people).sum()), "people_only": int((~metric & people).sum()),
                     "both_wrong": int((~metric & ~people).sum())})  # fmt: skip
    return pd.DataFrame(rows, columns=columns)


def over_prompts(frame: pd.DataFrame, column: str, rng: np.random.Generator, draws: int) -> tuple[float, float]:
    """The 95% percentile interval of ``column``'s mean over ``draws`` resamples of the prompts."""
    by_prompt = [g.to_numpy() for _, g in frame.groupby("prompt_id")[column]]
    means = [np.concatenate([by_prompt[i] for i in rng.integers(len(by_prompt), size=len(by_prompt))]).mean()
             for _ in range(draws)]  # fmt: skip
    return float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))


def labels(task: RatingTask, question: str, *, without: Sequence[str] = ()) -> pd.DataFrame:
    """Per image of a choices task: the raters' majority answer (None where they split evenly), its share and
    the number of answers: what people say an image shows; ``without``: raters left out."""
    given = answers(task, question, without=without)
    rows = []
    for (item_id, image), group in given.groupby(["item_id", "image"], sort=False):
        share = group["answer"].value_counts().iloc[0] / len(group)
        rows.append({"item_id": item_id, "image": image, "target": group["target"].iloc[0],
                     "label": majority(group["answer"]), "share": float(share), "answers": len(group)})  # fmt: skip
    return pd.DataFrame(rows, columns=["item_id", "image", "target", "label", "share", "answers"])


def analyze_single_images(task: RatingTask, *, draws: int, seed: int) -> dict[str, Any]:
    """``analysis.analyze_ratings`` of an alignment or choices task: per question, per target's scores (alignment) or
    each image's label (choices), and the raters' alpha."""
    asked = [q for q in task.questions if not answers(task, q.id).empty]
    tables = {q.id: single_image_raters(task, q.id) for q in asked}
    flagged = sorted({rater for table in tables.values() for rater in table.loc[table["flagged"], "rater"]})
    result: dict[str, Any] = {"task_id": task.task_id, "kind": task.kind, "thresholds": RATER_THRESHOLDS,
                              "flagged": flagged, "questions": {}}  # fmt: skip
    for question in asked:
        entry: dict[str, Any] = {
            "question": question.text, "alpha": single_image_alpha(task, question.id, draws=draws, seed=seed),
            "raters": json_records(tables[question.id]),
        }  # fmt: skip
        for suffix, left_out in [("", ()), *([("_without_flagged", flagged)] if flagged else [])]:
            if task.kind == "alignment":
                table = alignment_table(task, question.id, draws=draws, seed=seed, without=left_out)
                entry["targets" + suffix] = json_records(table)
            else:
                entry["labels" + suffix] = json_records(labels(task, question.id, without=left_out))
        if task.kind == "alignment":
            entry["metrics"] = alignment_metrics(task, question.id)
        result["questions"][question.id] = entry
    checklist = checklist_table(task, draws=draws, seed=seed) if task.kind == "alignment" else pd.DataFrame()
    if not checklist.empty:
        result["checklist"] = json_records(checklist)
        agreement = checklist_agreement(task, draws=draws, seed=seed)
        if not agreement.empty:
            result["checklist_agreement"] = json_records(agreement)
    (task.path / "human.json").write_text(json.dumps(result, indent=2, default=float))
    return result
