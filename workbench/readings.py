"""Generated toy world images read by eye: the images, the blind task the readings go into, and the sheets.

    python -m workbench.readings make FOLDER
    python -m workbench.readings import FOLDER READINGS.csv --rater NAME

``make`` draws the metric validity ladder's images (``LADDER``: sd-small and sd-base x steps {1, 2, 4, 8, 20} x
guidance {1, 5}, ``PER_RUNG`` prompts each, seed 0) and ``DIT_IMAGES`` of dit-small, makes a ``choices`` task over
them that asks each attribute (its values, or "unreadable": the task's images carry no prompt, model or setting),
numbered contact sheets of the task's blind images in a shuffled order (``ratings.sheets``), and a reference
sheet of clean renders, one per value of each attribute, so a reader knows what the words mean. ``import``
enters a reader's CSV (``sheet``, ``number``, then an attribute a column) as that reader's votes.
"""

from __future__ import annotations

import argparse
import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from workbench.config import GenerationConfig
from workbench.errors import ConfigError
from workbench.evaluation import ModelEvaluator
from workbench.metric_validity import ladder, run_ladder, stratified_auc, toy_prompts
from workbench.metrics import METRICS
from workbench.metrics.registry import MetricOptions, image_metric_names, image_scorers
from workbench.models import TOYWORLD_DIR
from workbench.ratings.sheets import contact_sheets, import_readings
from workbench.ratings.single_images import over_prompts
from workbench.ratings.task import RatingTask, rating_task
from workbench.ratings.votes import VoteStore
from workbench.resources import data_path
from workbench.run_folder import RunFolder
from workbench.stats import unanimous_bound
from workbench.toyworld import scenes
from workbench.toyworld.captions import parse_prompt
from workbench.toyworld.judge import ToyJudge, judge_images, read_images

__all__ = ["DIT_IMAGES", "LADDER", "PER_RUNG", "QUESTIONS", "judge_against_readings", "make", "reader_agreement",
           "readings_summary", "readings_table", "reference_sheet", "validity_against_readings"]  # fmt: skip

LADDER = (("toyworld/sd-small", "toyworld/sd-base"), (1, 2, 4, 8, 20), (1.0, 5.0))
PER_RUNG, DIT_IMAGES = 20, 60
UNREADABLE = "unreadable"  # the attribute cannot be told (no shape drawn, two colours, ...)
QUESTIONS = {attribute: [*scenes.VALUES[attribute], UNREADABLE] for attribute in scenes.ATTRIBUTES}
TASK_ID = "readings"
READINGS = data_path("readings")  # the committed images and readings
READERS = ("reader-1", "reader-2")
STYLE_READERS = ("reader-3", "reader-4")  # style read again, under the protocol's amendment


def make(folder: str | Path) -> RatingTask:
    """The images, the task (``FOLDER/ratings/readings``), the sheets (``FOLDER/sheets``) and the reference."""
    folder = Path(folder)
    prompts = toy_prompts(PER_RUNG, seed=0)
    runs = [folder / "runs" / "ladder", folder / "runs" / "dit"]
    run_ladder(prompts, ladder(*LADDER), [0], runs[0], metrics=[])
    dit = toy_prompts(DIT_IMAGES, seed=1)
    dit_run = ModelEvaluator(dit, ["toyworld/dit-small"], [0], GenerationConfig(batch_size=16), output_dir=runs[1],
                             metrics=["composition"], warmup=False)  # fmt: skip
    dit_run.run()
    task = rating_task(runs, "choices", questions=QUESTIONS, output_root=folder, task_id=TASK_ID, repeat_share=0,
                       display_size=scenes.IMAGE_SIZE)  # fmt: skip
    contact_sheets(task, folder / "sheets", per_sheet=20, columns=5, scale=4)
    reference_sheet(folder / "sheets" / "reference.png")
    return task


def readings_table(folder: str | Path = READINGS) -> pd.DataFrame:
    """One row per image read: its ``place`` on the sheets ("sheet/number"), where it was made (``run``,
    ``image_path``, ``model_id``, ``prompt``, ``steps``, ``guidance``), each reader's reading per attribute
    (``<attribute>_<reader>``), whether the two readers agreed (``<attribute>_agreed``) and the ``<attribute>``
    read in the end: the readers' shared answer, else the third look's (``readings/third-look.csv``, which must
    decide every disagreement and nothing else).

    Where style was read again (``STYLE_READERS``' votes, under the protocol's amendment; their third look in
    ``readings/third-look-style.csv``), ``style`` and ``style_agreed`` are the second reading's and the first's
    are kept as ``style_first`` and ``style_first_agreed``."""
    folder = Path(folder)
    task = RatingTask(folder / "ratings" / TASK_ID)
    with open(folder / "sheets" / "sheets.csv", newline="") as fh:
        place = {row["item_id"]: (int(row["sheet"]), int(row["number"])) for row in csv.DictReader(fh)}
    said = {(v.rater, v.item_id, v.question): v.answer for v in VoteStore(task).votes()}
    again = any(rater in STYLE_READERS for rater, _, _ in said)
    decided = _third_look(folder / "readings" / "third-look.csv")
    decided_again = _third_look(folder / "readings" / "third-look-style.csv")
    runs = {RunFolder(path).run_id: path for path in sorted((folder / "runs").iterdir()) if path.is_dir()}
    made = {run_id: RunFolder(path).results().set_index("image_path") for run_id, path in runs.items()}
    rows = []
    for item in task.items.values():
        run_id, image_path = item.made[0].split("/", 1)
        row = made[run_id].loc[image_path]
        entry = {"item_id": item.item_id, "place": "/".join(map(str, place[item.item_id])), "run": run_id,
                 "image": str(runs[run_id] / image_path),
                 "image_path": image_path, "model_id": row["model_id"], "prompt": row["prompt"],
                 "steps": row["steps"], "guidance": row["guidance"]}  # fmt: skip
        for attribute in scenes.ATTRIBUTES:
            entry |= _settled(attribute, READERS, item.item_id, place[item.item_id], said, decided)
        if again:
            entry |= {"style_first": entry["style"], "style_first_agreed": entry["style_agreed"]}
            entry |= _settled("style", STYLE_READERS, item.item_id, place[item.item_id], said, decided_again)
        rows.append(entry)
    for name, left in (("third-look.csv", decided), ("third-look-style.csv", decided_again)):
        if left:
            raise ConfigError(f"{name} decides where the readers agreed: {sorted(left)[:3]}", "readings")
    return pd.DataFrame(rows)


def _third_look(path: Path) -> dict[tuple[int, int, str], str]:
    """A third look's decisions, (sheet, number, attribute) -> value (none without the file)."""
    if not path.is_file():
        return {}
    third = pd.read_csv(path)
    decided = {(int(r.sheet), int(r.number), r.attribute): r.decision for r in third.itertuples()}
    if len(decided) != len(third):
        raise ConfigError(f"{path.name} decides one image's attribute more than once", "readings")
    return decided


def _settled(
    attribute: str, readers: Sequence[str], item_id: str, place: tuple[int, int], said: dict, decided: dict
) -> dict[str, Any]:  # fmt: skip
    """Two readers' readings of an image's attribute, whether they agree and the reading settled (``decided``'s
    decision, taken out of it, where they disagree)."""
    answers = [said.get((reader, item_id, attribute)) for reader in readers]
    if None in answers:
        raise ConfigError(f"image {place} has no {attribute} reading from each of {tuple(readers)}")
    key = (*place, attribute)
    if answers[0] != answers[1] and key not in decided:
        raise ConfigError(f"the readers disagree on {attribute} of image {place}: no third look decides")
    return {**{f"{attribute}_{reader}": answer for reader, answer in zip(readers, answers, strict=True)},
            f"{attribute}_agreed": answers[0] == answers[1],
            attribute: answers[0] if answers[0] == answers[1] else decided.pop(key)}  # fmt: skip


def _readings(table: pd.DataFrame) -> list[tuple[str, str, str, tuple[str, ...]]]:
    """Each reading of an attribute in ``table``: its label, attribute, settled column and readers."""
    passes = [(a, a, a, READERS) for a in scenes.ATTRIBUTES]
    if "style_first" in table:
        passes[scenes.ATTRIBUTES.index("style")] = ("style (first reading)", "style", "style_first", READERS)
        passes.append(("style", "style", "style", STYLE_READERS))
    return passes


def reader_agreement(table: pd.DataFrame) -> pd.DataFrame:
    """Per attribute (and per reading, where style was read again), how far the two readers agree
    (``readings_table``'s rows): the share of images read alike, Cohen's kappa (also on the images neither called
    unreadable, which that answer's agreement does not lift), and the disagreements the third look settled."""
    from sklearn.metrics import cohen_kappa_score

    rows = []
    for label, attribute, column, readers in _readings(table):
        first, second = (table[f"{attribute}_{reader}"] for reader in readers)
        readable = (first != UNREADABLE) & (second != UNREADABLE)
        rows.append({"attribute": label, "readers": " and ".join(readers), "agreement": float((first == second).mean()),
                     "kappa": float(cohen_kappa_score(first, second)),
                     "kappa_both_readable": float(cohen_kappa_score(first[readable], second[readable])),
                     "disagreements": int((first != second).sum()),
                     "unreadable_after_third_look": int((table[column] == UNREADABLE).sum())})  # fmt: skip
    return pd.DataFrame(rows)


def judge_against_readings(folder: str | Path = READINGS, *, clip_dir: str | Path | None = None) -> dict[str, Any]:
    """The judge (and the toy CLIP's zero-shot reading, ``ToyJudge``) against the readings: per attribute (and per
    reading, where style was read again: the first as "style (first reading)"), accuracy with its 95% interval
    over resampled prompts on the images both readers read alike, and on every image after the third look,
    leaving out those read ``unreadable`` (counted); the judge's accuracy is over the images it was sure of, and
    those it was unsure of are counted (``judge_unsure_*``) and shared (``judge_unsure_share_*``). And
    ``composition_all`` against "every attribute the prompt names is what the readers saw", on the images the
    readers could read and the judge was sure of (the others counted): on those where both readers read every
    attribute the prompt names alike (``composition_all_agreed``) and on all after the third look."""
    table = readings_table(folder)
    images = [Image.open(path).convert("RGB") for path in table["image"]]
    agreement = reader_agreement(table).set_index("attribute")
    judged = read_images(images)
    clip = ToyJudge(Path(clip_dir) if clip_dir else TOYWORLD_DIR / "clip").read(images)
    result: dict[str, Any] = {"images": len(table), "attributes": {}}
    for label, attribute, column, _ in _readings(table):
        readable = table[column] != UNREADABLE
        entry = {"unreadable": int((~readable).sum()), "readers_disagreed": int((~table[f"{column}_agreed"]).sum()),
                 "kappa": float(agreement.loc[label, "kappa"])}  # fmt: skip
        for name, chosen in (("agreed", readable & table[f"{column}_agreed"]), ("adjudicated", readable)):
            truth = table.loc[chosen, column]
            sure = [i for i in truth.index if judged[i][attribute].sure]
            right = [float(judged[i][attribute].value == truth[i]) for i in sure]
            entry[f"judge_{name}"] = _share(right, table.loc[sure, "prompt"])
            right = [float(clip[i][attribute] == value) for i, value in truth.items()]
            entry[f"toy_clip_{name}"] = _share(right, table.loc[chosen, "prompt"])
            entry[f"judge_unsure_{name}"] = len(truth) - len(sure)
            entry[f"judge_unsure_share_{name}"] = (len(truth) - len(sure)) / len(truth) if len(truth) else None
        result["attributes"][label] = entry
    readable, right = _seen(table)  # an image the readers cannot read is neither right nor wrong
    agreed = np.array([all(getattr(row, f"{a}_agreed") for a in parse_prompt(row.prompt).attributes)
                       for row in table.itertuples()])  # fmt: skip
    judgements = judge_images(images, list(table["prompt"]))
    for name, chosen in (("composition_all_agreed", readable & agreed), ("composition_all", readable)):
        agree, prompts, unsure = [], [], 0
        for index in np.flatnonzero(chosen):
            judgement = judgements[index]
            if judgement.composition_all is None:
                unsure += 1
            else:
                agree.append(float(judgement.composition_all == right[index]))
                prompts.append(table["prompt"].iloc[index])
        result[name] = {**_share(agree, prompts), "unreadable": int((~readable).sum()), "judge_unsure": unsure}
    return result


def validity_against_readings(
    metrics: Sequence[str], options: MetricOptions | None = None, folder: str | Path = READINGS, *,
    draws: int = 200, seed: int = 0,
) -> pd.DataFrame:  # fmt: skip
    """Per per-image metric among ``metrics``: ``auc_wrong_readings``, the chance that an image the readers found
    right (every attribute its prompt names seen) scores above one they found wrong made by the same rung (model,
    steps and guidance), pooled over rungs, ties half (``metric_validity.stratified_auc``), with a 95% interval
    over resampled prompts. Images with a prompted attribute read ``unreadable`` are left out. The judge plays
    no part: the images are scored afresh with each metric."""
    table = readings_table(folder)
    readable, right = _seen(table)
    table, right = table[readable].reset_index(drop=True), right[readable]
    rung = (table["model_id"] + " " + table["steps"].astype(str) + " " + table["guidance"].astype(str)).to_numpy()
    images = [Image.open(path).convert("RGB") for path in table["image"]]
    scores: dict[str, list[Any]] = {}
    for scorer in image_scorers(metrics, options):
        scores |= scorer.score_columns(images, list(table["prompt"]))
    prompts = table["prompt"].to_numpy()
    groups = {prompt: np.flatnonzero(prompts == prompt) for prompt in np.unique(prompts)}
    rng, rows = np.random.default_rng(seed), []
    for name in image_metric_names(metrics):
        values = (1.0 if METRICS[name].higher_is_better else -1.0) * np.asarray(scores[name], dtype=float)
        drawn = []
        for _ in range(draws):
            chosen = np.concatenate([groups[p] for p in rng.choice(list(groups), len(groups))])
            auc = stratified_auc(values[chosen], right[chosen], rung[chosen])
            if auc is not None:
                drawn.append(auc)
        low, high = np.quantile(drawn, [0.025, 0.975]) if drawn else (np.nan, np.nan)
        rows.append({"metric": name, "auc_wrong_readings": stratified_auc(values, right, rung),
                     "readings_ci_low": float(low), "readings_ci_high": float(high),
                     "readings_images": len(table), "readings_wrong": int((~right).sum())})  # fmt: skip
    return pd.DataFrame(rows)


def _seen(table: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Per image: whether the readers could read every attribute its prompt names, and whether they saw each one
    as the prompt names it."""
    readable, right = [], []
    for row in table.itertuples():
        expected = parse_prompt(row.prompt).attributes
        readable.append(all(getattr(row, a) != UNREADABLE for a in expected))
        right.append(all(getattr(row, a) == value for a, value in expected.items()))
    return np.array(readable), np.array(right)


def readings_summary(result: dict[str, Any]) -> pd.DataFrame:
    """``judge_against_readings`` as a table, an attribute a row: accuracy with its interval, as text."""

    def said(share: dict[str, Any]) -> str:
        if share["share"] is None:
            return "—"
        return f"{share['share']:.1%} ({share['ci_low']:.1%}–{share['ci_high']:.1%}, n={share['n']})"

    rows = []
    for attribute, entry in result["attributes"].items():
        rows.append({"attribute": attribute, "judge (readers agree)": said(entry["judge_agreed"]),
                     "judge (after third look)": said(entry["judge_adjudicated"]),
                     "toy CLIP (readers agree)": said(entry["toy_clip_agreed"]),
                     "judge unsure (after third look)": f"{entry['judge_unsure_adjudicated']} "
                                     f"({entry['judge_unsure_share_adjudicated'] or 0:.1%})",
                     "unreadable": entry["unreadable"],
                     "readers disagreed": entry["readers_disagreed"],
                     "readers' kappa": round(entry["kappa"], 3)})  # fmt: skip
    return pd.DataFrame(rows)


def _share(right: list[float], prompts: Any, draws: int = 1000) -> dict[str, Any]:
    """The share right with its 95% interval over resampled prompts: the ladder's rungs share their prompts, so
    one scene's images are not independent readings (all right: Clopper–Pearson's bound over the prompts)."""
    if not right:
        return {"share": None, "ci_low": None, "ci_high": None, "n": 0, "prompts": 0}
    frame = pd.DataFrame({"prompt_id": list(prompts), "right": right})
    low, high = over_prompts(frame, "right", np.random.default_rng(0), draws)
    if low == high:  # all right (or all wrong): resampling cannot vary it; Clopper–Pearson over the prompts instead
        bound = unanimous_bound(frame["prompt_id"].nunique())
        low, high = (bound, 1.0) if right[0] else (0.0, 1 - bound)
    return {"share": float(np.mean(right)), "ci_low": low, "ci_high": high, "n": len(right),
            "prompts": int(frame["prompt_id"].nunique())}  # fmt: skip


def reference_sheet(path: str | Path, scale: int = 4) -> Path:
    """Clean renders, a row an attribute: each of its values on an otherwise fixed scene, named under it."""
    base = scenes.Scene("circle", "red", "white", "large", "centre", "plain")
    size, label, gap = scenes.IMAGE_SIZE * scale, 16, 8
    columns = max(len(values) for values in scenes.VALUES.values())
    sheet = Image.new("RGB", (120 + columns * (size + gap), len(scenes.VALUES) * (size + label + gap) + gap), "white")
    draw = ImageDraw.Draw(sheet)
    for row, (attribute, values) in enumerate(scenes.VALUES.items()):
        y = gap + row * (size + label + gap)
        draw.text((gap, y + size // 2), attribute, fill="black")
        for column, value in enumerate(values):
            scene = scenes.Scene(**{**base.attributes(), attribute: value})
            x = 120 + column * (size + gap)
            sheet.paste(scenes.render(scene).resize((size, size), Image.NEAREST), (x, y))
            draw.text((x, y + size + 2), value, fill="black")
    sheet.save(path)
    return Path(path)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("make", help="the images, the task, the sheets").add_argument("folder")
    entered = sub.add_parser("import", help="a reader's CSV as their votes")
    entered.add_argument("folder")
    entered.add_argument("readings")
    entered.add_argument("--rater", required=True)
    args = parser.parse_args(argv)
    if args.command == "make":
        task = make(args.folder)
        print(f"{len(task.items)} images; sheets in {Path(args.folder) / 'sheets'}")
    else:
        task = RatingTask(Path(args.folder) / "ratings" / TASK_ID)
        index = Path(args.folder) / "sheets" / "sheets.csv"
        print(f"{import_readings(task, args.readings, index, args.rater)} new votes from {args.rater}")


if __name__ == "__main__":
    main()
