"""Rating tasks made from runs: what people are asked about a run's images, shown blind.

::

    outputs/ratings/<task_id>/manifest.json   the kind, questions, targets, the runs it draws on, seed, checks
    outputs/ratings/<task_id>/items.jsonl     every item with what is hidden from raters (targets, prompt ids)
    outputs/ratings/<task_id>/images/         each image re-encoded without metadata, at one display size,
                                              under an opaque id (the PNGs of a run carry the model and settings)
    outputs/ratings/<task_id>/votes/          the votes, a file per rater (``workbench.ratings.votes``)

Kinds: ``pairwise`` (two targets' images of the same prompt and seed; left / right / tie, or skip), ``alignment``
(one image and its prompt; yes / partly / no, or skip), ``choices`` (one image without its prompt; multiple-choice
questions). A share of items are checks a rater cannot tell apart: repeats (an item shown again with its sides
swapped) and gold items with a known answer (pairwise: an image against the same target's image of another
prompt, for the first question; alignment: an image with another prompt's text, answered "no").
"""

from __future__ import annotations

import hashlib
import json
import secrets
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from workbench.errors import ConfigError
from workbench.run_folder import RunFolder

__all__ = ["KINDS", "STRATEGIES", "Question", "RatingItem", "RatingTask", "View", "find_task", "rating_task"]

KINDS = ("pairwise", "alignment", "choices")
STRATEGIES = ("uniform", "adaptive")
PAIRWISE_ANSWERS = ("left", "right", "tie")
ALIGNMENT_ANSWERS = ("yes", "partly", "no")
SKIP = "skip"  # any item may be skipped, with a reason
CHECKLIST = "part_"  # an item's checklist questions: part_0, part_1, ... (its checklist's parts in order)
DEFAULT_QUESTIONS = {
    "pairwise": {"alignment": "Which image matches the prompt better?", "quality": "Which image looks better?"},
    "alignment": {"alignment": "Does the image show what the prompt says?"},
}


@dataclass(frozen=True)
class Question:
    """One question asked of every item of a task: its id, its text, and the answers a rater may give."""

    id: str
    text: str
    answers: tuple[str, ...]


@dataclass(frozen=True)
class RatingItem:
    """One thing to rate. Raters see only ``item_id``, the prompt (not for ``choices``) and the images; the
    rest is the task's own: which target made each image, the prompt id and seed, and whether it is a check."""

    item_id: str
    images: tuple[str, ...]  # opaque image ids, in the task's order (a rater's sides are drawn per rater)
    targets: tuple[str, ...]  # the target behind each image
    prompt: str | None
    prompt_id: str
    seed: int
    check: str | None = None  # None, "repeat" or "gold"
    repeat_of: str | None = None
    gold: Mapping[str, str] = field(default_factory=dict)  # question -> the right answer (pairwise: an image id)
    scores: tuple[Mapping[str, float], ...] = ()  # each image's per-image metric values in its run
    checklist: tuple[str, ...] = ()  # alignment: the parts of the prompt asked about one by one ("colour: red")
    made: tuple[str, ...] = ()  # where each image was made: run id / image path (the answer key)


@dataclass(frozen=True)
class View:
    """What a rater is shown of an item: nothing that names a model, run, setting or check."""

    item_id: str
    prompt: str | None
    images: tuple[str, ...]  # in the rater's order (left, right)
    questions: tuple[Question, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"item_id": self.item_id, "prompt": self.prompt, "images": list(self.images),
                "questions": [asdict(q) for q in self.questions]}  # fmt: skip


class RatingTask:
    """A rating task's folder: its manifest, items and images (made by ``rating_task``), each rater's order."""

    MANIFEST, ITEMS, IMAGES, VOTES = "manifest.json", "items.jsonl", "images", "votes"

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not (self.path / self.MANIFEST).is_file():
            raise ConfigError(f"{self.path} is not a rating task (no {self.MANIFEST})", "task")
        self.manifest = json.loads((self.path / self.MANIFEST).read_text())
        self.kind: str = self.manifest["kind"]
        self.questions = tuple(Question(q["id"], q["text"], tuple(q["answers"])) for q in self.manifest["questions"])
        lines = (self.path / self.ITEMS).read_text().splitlines()
        self.items = {item.item_id: item for item in (_item(json.loads(line)) for line in lines if line)}
        self._orders: dict[str, list[View]] = {}

    @property
    def task_id(self) -> str:
        return self.manifest["task_id"]

    @property
    def strategy(self) -> str:
        """How the next item is chosen (``schedule.next_view``): ``uniform`` or ``adaptive``."""
        return self.manifest.get("strategy", "uniform")

    def question(self, question_id: str, item_id: str | None = None) -> Question:
        """A question of the task, or of the item ``item_id`` (its checklist's, too)."""
        asked = self.questions_of(item_id) if item_id in self.items else self.questions
        for question in asked:
            if question.id == question_id:
                return question
        raise ConfigError(f"no question {question_id!r} here; the questions: {[q.id for q in asked]}", "question")

    def questions_of(self, item_id: str) -> tuple[Question, ...]:
        """The task's questions, then a yes / no question for each part of the item's checklist."""
        parts = self.items[item_id].checklist
        text = "Does the image show this part of the prompt: {}?"
        checklist = (Question(f"{CHECKLIST}{k}", text.format(part), ("yes", "no")) for k, part in enumerate(parts))
        return self.questions + tuple(checklist)

    def order(self, rater: str) -> list[View]:
        """Every item as ``rater`` sees it, in the rater's order: drawn from the task's seed and the rater's name
        (the same rater always gets the same order and sides), a repeat never next to its original and shown with
        its sides swapped, and the same pair of targets on one prompt never twice in a row."""
        if rater not in self._orders:  # drawn once: the page asks for it on every request
            self._orders[rater] = self._draw_order(rater)
        return list(self._orders[rater])

    def _draw_order(self, rater: str) -> list[View]:
        rng = np.random.default_rng([self.manifest["seed"], _number(rater)])
        ids = list(self.items)
        order = [ids[i] for i in rng.permutation(len(ids))]
        order = _apart(order, self.items)
        flips = {item_id: bool(rng.integers(2)) for item_id in ids}
        views = []
        for item_id in order:
            item = self.items[item_id]
            flipped = not flips[item.repeat_of] if item.repeat_of else flips[item_id]
            images = item.images[::-1] if flipped else item.images
            views.append(View(item_id, item.prompt, images, self.questions_of(item_id)))
        return views

    def image(self, image_id: str) -> Path:
        """The re-encoded PNG of an opaque image id (an unknown id is refused)."""
        path = self.path / self.IMAGES / f"{image_id}.png"
        if not image_id.isalnum() or not path.is_file():
            raise ConfigError(f"no image {image_id!r} in this task", "image")
        return path


def find_task(name: str | Path, output_root: str | Path = "outputs") -> RatingTask:
    """The rating task ``name`` means: a task's folder, or a task id under ``output_root/ratings``; refused with
    the tasks there when it is neither."""
    folder = Path(output_root) / "ratings"
    for path in (Path(name), folder / str(name)):
        if (path / RatingTask.MANIFEST).is_file():
            return RatingTask(path)
    tasks = sorted(p.parent.name for p in folder.glob(f"*/{RatingTask.MANIFEST}"))
    raise ConfigError(
        f"no rating task {str(name)!r}: not a task folder, and not a task id under {folder}; tasks there: "
        f"{tasks or '(none)'}",
        "task",
    )


def rating_task(
    runs: str | Path | Sequence[str | Path],
    kind: str = "pairwise",
    *,
    targets: Sequence[str] | None = None,
    questions: Mapping[str, str] | Mapping[str, Sequence[str]] | None = None,
    output_root: str | Path = "outputs",
    task_id: str | None = None,
    seed: int = 0,
    gold_share: float = 0.05,
    repeat_share: float = 0.10,
    display_size: int = 512,
    strategy: str = "uniform",
    checklist: str | Mapping[str, Sequence[str]] | Callable[[str], Sequence[str]] | None = None,
) -> RatingTask:
    """A rating task over the images of ``runs`` (run folders), stored under ``output_root/ratings/<task_id>``.

    ``targets``: which of the runs' targets to rate (a target is a model id, with ``[variant]`` for an A/B arm or
    an acceleration variant, and ``@run`` when several runs are given); default all. ``questions``: id -> text
    (pairwise, alignment; defaults: ``DEFAULT_QUESTIONS``), or for ``choices`` id -> the answers to choose from
    (the id is the question, e.g. ``{"shape": ["circle", "square", "triangle"]}``). An existing task of that id
    is opened as it is (so a notebook can run again), when it was made of the same runs and kind. ``strategy``:
    ``uniform`` (each rater's own random order) or, for pairwise tasks, ``adaptive`` (the next item where it tells
    most; ``workbench.ratings.schedule``). ``checklist`` (alignment): the parts of each prompt, each then asked
    about with yes / no after the main question: ``"toyworld"`` (the attributes a toy world prompt names),
    ``"geneval"`` (what GenEval checks of a GenEval or toy GenEval prompt: ``metrics.geneval.geneval_checklist``),
    a mapping of prompt id to its parts (a prompt table's metadata column), or a function of the prompt's text."""
    if kind not in KINDS:
        raise ConfigError(f"kind must be one of {list(KINDS)}, got {kind!r}", "kind")
    if strategy not in STRATEGIES or (strategy == "adaptive" and kind != "pairwise"):
        allowed = list(STRATEGIES) if kind == "pairwise" else ["uniform"]
        raise ConfigError(f"strategy must be one of {allowed} for {kind} tasks, got {strategy!r}", "strategy")
    if isinstance(display_size, bool) or not isinstance(display_size, int) or not 16 <= display_size <= 4096:
        raise ConfigError(f"display_size must be a whole number of pixels from 16 to 4096, got {display_size!r}")
    for name, share in (("gold_share", gold_share), ("repeat_share", repeat_share)):
        if not 0 <= share < 0.5:
            raise ConfigError(f"{name} must be from 0 to below 0.5, got {share!r}", name)
    runs = [runs] if isinstance(runs, str | Path) else list(runs)
    asked = _questions(kind, questions)
    parts_of = _checklist(checklist, kind)
    rows = _rows(runs)
    chosen = list(dict.fromkeys(rows["target"])) if targets is None else list(targets)
    unknown = sorted(set(chosen) - set(rows["target"]))
    if unknown:
        raise ConfigError(f"unknown target(s) {unknown}; the runs have {sorted(set(rows['target']))}", "targets")
    if kind == "pairwise" and len(chosen) < 2:
        raise ConfigError(f"a pairwise task needs two targets or more, got {chosen}", "targets")
    rows = rows[rows["target"].isin(chosen)]
    repeated = rows[rows.duplicated(["target", "prompt_id", "seed"])]
    if kind == "pairwise" and len(repeated):
        raise ConfigError(
            f"the runs have several images of {repeated['target'].iloc[0]!r} for prompt "
            f"{repeated['prompt_id'].iloc[0]!r} and one seed (made with other settings): rate runs of one setting",
            "runs",
        )
    task_id = task_id or f"{time.strftime('%Y%m%d-%H%M%S')}-{kind}-{secrets.token_hex(4)}"  # a new task: a new id
    folder = Path(output_root) / "ratings" / task_id
    checklist_name = checklist if isinstance(checklist, str) else checklist is not None
    if (folder / RatingTask.MANIFEST).is_file():
        settings = {"kind": kind, "targets": chosen, "questions": [asdict(q) for q in asked], "seed": seed,
                    "gold_share": gold_share, "repeat_share": repeat_share, "display_size": display_size,
                    "strategy": strategy, "checklist": checklist_name}  # fmt: skip
        return _reopened(RatingTask(folder), runs, settings)
    secret = secrets.token_hex(16)  # image and item ids are not guessable from the run's files or each other
    rng = np.random.default_rng(seed)
    items = _items(kind, rows, chosen, rng, gold_share, repeat_share, asked, parts_of)
    building = folder.with_name(folder.name + ".partial")  # the task appears whole or not at all
    shutil.rmtree(building, ignore_errors=True)
    (building / RatingTask.IMAGES).mkdir(parents=True)
    named = {}
    for item in items:
        for source in item["sources"]:
            if source not in named:
                named[source] = hashlib.sha256(f"{secret}{source}".encode()).hexdigest()[:20]
                _blind_copy(Path(source), building / RatingTask.IMAGES / f"{named[source]}.png", display_size)
    opaque = {item["item_id"]: "i" + hashlib.sha256(f"{secret}{item['item_id']}".encode()).hexdigest()[:12]
              for item in items}  # fmt: skip
    with open(building / RatingTask.ITEMS, "w") as fh:
        for item in items:
            sources = item.pop("sources")
            gold = {q: named[v] if kind == "pairwise" else v for q, v in item.pop("gold", {}).items()}
            record = {**item, "item_id": opaque[item["item_id"]], "images": [named[s] for s in sources],
                      "gold": gold, "repeat_of": opaque.get(item.get("repeat_of"))}  # fmt: skip
            fh.write(json.dumps(record) + "\n")
    manifest = {
        "task_id": task_id, "kind": kind, "questions": [asdict(q) for q in asked], "targets": chosen,
        "runs": [{"path": str(Path(r).resolve()), "run_id": RunFolder(r).run_id} for r in runs],
        "seed": seed, "gold_share": gold_share, "repeat_share": repeat_share, "display_size": display_size,
        "strategy": strategy, "checklist": checklist_name,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "items": len(items),
    }  # fmt: skip
    (building / RatingTask.MANIFEST).write_text(json.dumps(manifest, indent=2))
    building.rename(folder)
    return RatingTask(folder)


_DEFAULTS = {"strategy": "uniform", "checklist": False}  # what a manifest from before these settings means


def _reopened(task: RatingTask, runs: list, settings: dict[str, Any]) -> RatingTask:
    """An existing task, when it is the one asked for: its id named with other runs or other ``settings`` (kind,
    targets, questions, seed, shares, display size, strategy, checklist) is refused, naming what differs (its
    votes stay as they are)."""
    asked = json.loads(json.dumps({**settings, "runs": [RunFolder(r).run_id for r in runs]}))  # as the manifest reads
    has = {key: task.manifest.get(key, _DEFAULTS.get(key)) for key in settings}
    has["runs"] = [r["run_id"] for r in task.manifest["runs"]]
    differ = {key: (has[key], asked[key]) for key in asked if has[key] != asked[key]}
    if differ:
        said = "; ".join(f"{key} {old!r}, asked {new!r}" for key, (old, new) in differ.items())
        raise ConfigError(f"rating task {task.task_id!r} exists with other settings ({said}): give another task_id")
    return task


def _checklist(checklist, kind: str) -> Callable[[str, str], list[str]]:
    """``checklist`` as a function of a prompt's id and text to its parts (none without a checklist)."""
    if checklist is None:
        return lambda prompt_id, prompt: []
    if kind != "alignment":
        raise ConfigError(f"a checklist goes with alignment tasks, not {kind} ones", "checklist")
    if hasattr(checklist, "to_dict"):  # a prompt table's column, indexed by prompt id
        checklist = checklist.to_dict()
    if isinstance(checklist, str) and checklist == "toyworld":
        from workbench.toyworld.captions import parse_prompt

        return lambda prompt_id, prompt: [f"{a}: {v}" for a, v in parse_prompt(prompt).attributes.items()]
    if isinstance(checklist, str) and checklist == "geneval":
        from workbench.metrics.geneval import geneval_checklist, geneval_metadata

        known = geneval_metadata()
        return lambda prompt_id, prompt: geneval_checklist(known[prompt]) if prompt in known else []
    if isinstance(checklist, Mapping):
        return lambda prompt_id, prompt: _parts(checklist.get(prompt_id, ()), prompt_id)
    if callable(checklist):
        return lambda prompt_id, prompt: _parts(checklist(prompt), prompt_id)
    allowed = "'toyworld', 'geneval', a mapping of prompt id to parts, or a function of the prompt"
    raise ConfigError(f"checklist must be {allowed}, got {checklist!r}", "checklist")


def _parts(parts: Any, prompt_id: str) -> list[str]:
    if isinstance(parts, str) or not all(isinstance(p, str) and p.strip() for p in parts):
        raise ConfigError(f"the checklist of prompt {prompt_id!r} must be a list of texts, got {parts!r}", "checklist")
    return list(dict.fromkeys(p.strip() for p in parts))


def _questions(kind: str, given) -> tuple[Question, ...]:
    if kind == "choices":
        if not given:
            raise ConfigError("a choices task needs questions: {question: [answer, ...]}", "questions")
        asked = []
        for text, answers in given.items():
            if isinstance(answers, str) or len(list(answers)) < 2:
                raise ConfigError(f"question {text!r} needs a list of two answers or more, got {answers!r}")
            if SKIP in answers:
                raise ConfigError(f"question {text!r}: {SKIP!r} is every question's own answer, not a choice")
            slug = _slug(text)
            question_id = slug if slug not in {q.id for q in asked} else f"{slug}_{len(asked) + 1}"
            asked.append(Question(question_id, text, tuple(str(a) for a in answers)))
        return tuple(asked)
    answers = PAIRWISE_ANSWERS if kind == "pairwise" else ALIGNMENT_ANSWERS
    given = given or DEFAULT_QUESTIONS[kind]
    if not all(isinstance(t, str) for t in given.values()):
        raise ConfigError(f"{kind} questions are {{id: text}}, got {dict(given)!r}", "questions")
    return tuple(Question(q, text, answers) for q, text in given.items())


def _rows(runs: list) -> Any:
    """The runs' made images, each with its target's name, the path of its PNG and its per-image metric values
    (``scores``: what the analysis measures against people)."""
    import pandas as pd

    from workbench.metrics import METRICS

    frames = []
    for run in runs:
        folder = RunFolder(run)
        if not folder.is_run():
            raise ConfigError(f"{run} is not a run folder (no results.jsonl, results.parquet or manifest)", "runs")
        rows = folder.results()
        rows = rows[(rows["status"] == "ok") & rows["image_path"].notna()].copy()
        variant = rows["variant"].fillna("").astype(str) if "variant" in rows else ""
        rows["target"] = rows["model_id"].astype(str) + np.where(variant != "", " [" + variant + "]", "")
        if len(runs) > 1:
            rows["target"] += f" @{folder.run_id}"
        rows["source"] = [str((folder.path / p).resolve()) for p in rows["image_path"]]
        rows["made"] = [f"{folder.run_id}/{p}" for p in rows["image_path"]]
        metrics = [m for m, entry in METRICS.items() if entry.kind == "image" and m in rows]
        rows["scores"] = [
            {m: float(v) for m, v in zip(metrics, values, strict=True) if v == v and v is not None}
            for values in rows[metrics].itertuples(index=False)
        ]
        frames.append(rows[["target", "prompt_id", "prompt", "seed", "source", "made", "scores"]])
    rows = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    if rows.empty:
        raise ConfigError(f"the runs {[str(r) for r in runs]} have no images made", "runs")
    return rows


def _items(kind, rows, targets, rng, gold_share, repeat_share, questions, parts_of) -> list[dict[str, Any]]:
    """The task's items (with their images' source paths): every target pair per prompt and seed (pairwise), or
    every image (alignment, choices: several of a target on one prompt and seed, made with other settings, are
    items of their own); then gold items and repeats. ``parts_of(prompt_id, prompt)``: the checklist of the
    prompt shown. ``made``: where each image was made (run id / image path), the answer key raters never see."""
    by_unit = {unit: group.set_index("target") for unit, group in rows.groupby(["prompt_id", "seed"], sort=True)}
    items = []
    for (prompt_id, seed), group in by_unit.items():
        if kind == "pairwise":
            present = [t for t in targets if t in group.index]
            combos = [[group.loc[a], group.loc[b]] for a, b in combinations(present, 2)]
        else:
            combos = [[row] for _, row in group[group.index.isin(targets)].iterrows()]
        for combo in combos:
            items.append({
                "sources": [row["source"] for row in combo], "made": [row["made"] for row in combo],
                "targets": [row.name for row in combo], "scores": [row["scores"] for row in combo],
                "prompt": None if kind == "choices" else combo[0]["prompt"],
                "prompt_id": prompt_id, "seed": int(seed), "checklist": parts_of(prompt_id, combo[0]["prompt"]),
            })  # fmt: skip
    if not items:
        raise ConfigError(f"no prompt and seed has images of two of the targets {targets}", "targets")
    units = list(by_unit)
    gold = []
    for item in _sample(items, gold_share, rng) if kind != "choices" else []:
        others = [unit for unit in units if unit[0] != item["prompt_id"]]  # another prompt, not another seed
        if not others:
            break
        other = others[rng.integers(len(others))]
        target = item["targets"][0]
        group = by_unit[other]
        if kind == "pairwise" and target in group.index:
            gold.append({**item, "sources": [item["sources"][0], group.loc[target, "source"]],
                         "made": [item["made"][0], group.loc[target, "made"]],
                         "scores": [item["scores"][0], group.loc[target, "scores"]],
                         "targets": [target, target], "check": "gold",
                         "gold": {questions[0].id: item["sources"][0]}})  # fmt: skip
        elif kind == "alignment":  # this image with another prompt's text
            gold.append({**item, "prompt": group.iloc[0]["prompt"], "check": "gold", "gold": {questions[0].id: "no"},
                         "checklist": parts_of(other[0], group.iloc[0]["prompt"])})  # fmt: skip
    numbered = [{**item, "item_id": f"i{n:05d}"} for n, item in enumerate(items + gold)]
    repeats = [{**item, "item_id": f"i{len(numbered) + n:05d}", "check": "repeat", "repeat_of": item["item_id"]}
               for n, item in enumerate(_sample(numbered[: len(items)], repeat_share, rng))]  # fmt: skip
    return numbered + repeats


def _sample(items: list, share: float, rng) -> list:
    count = round(share * len(items))
    return [items[i] for i in sorted(rng.choice(len(items), size=count, replace=False))] if count else []


def _apart(order: list[str], items: Mapping[str, RatingItem]) -> list[str]:
    """``order`` with no item next to another of the same prompt and seed (a repeat and its original, a gold item
    and the item it was made from, two pairs of targets on one image set): each such item is swapped with a later
    (else earlier) one where both then fit."""
    order = list(order)

    def pair(item_id: str) -> tuple:
        return (items[item_id].prompt_id, items[item_id].seed)

    def fits(k: int) -> bool:
        return all(pair(order[n]) != pair(order[k]) for n in (k - 1, k + 1) if 0 <= n < len(order))

    for i in range(1, len(order)):
        if fits(i):
            continue
        for j in [*range(i + 1, len(order)), *range(i - 1)]:
            order[i], order[j] = order[j], order[i]
            if fits(i) and fits(j):
                break
            order[i], order[j] = order[j], order[i]
    return order


def _blind_copy(source: Path, target: Path, size: int) -> None:
    """``source`` re-encoded as a PNG with no metadata, its longer side ``size`` (small images scaled up without
    smoothing, so their pixels stay sharp)."""
    with Image.open(source) as image:
        pixels = image.convert("RGB")
    scale = size / max(pixels.size)
    resample = Image.Resampling.NEAREST if scale >= 1 else Image.Resampling.LANCZOS
    pixels = pixels.resize((round(pixels.width * scale), round(pixels.height * scale)), resample)
    bare = Image.frombytes("RGB", pixels.size, pixels.tobytes())  # pixels only: no text, colour profile or EXIF
    bare.save(target, format="PNG")


def _item(record: dict[str, Any]) -> RatingItem:
    return RatingItem(
        record["item_id"], tuple(record["images"]), tuple(record["targets"]), record["prompt"], record["prompt_id"],
        record["seed"], record.get("check"), record.get("repeat_of"), record.get("gold") or {},
        tuple(record.get("scores") or ()), tuple(record.get("checklist") or ()), tuple(record.get("made") or ()),
    )  # fmt: skip


def _number(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in text.lower()).strip("_")[:40] or "question"
