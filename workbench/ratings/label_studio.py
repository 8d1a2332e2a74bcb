"""A rating task as a Label Studio project, and Label Studio's export read back as the task's votes.

``export_label_studio`` writes a labelling config (``config.xml``) and the tasks (``tasks.json``: each image as a
data URI of the task's blind PNG, so nothing is served). A pairwise question is a ``Pairwise`` control over two
images of its own (``<question>-left``, ``<question>-right``: a click on an image answers only one ``Pairwise``, so
questions cannot share images), which offers only left or right, with a ``Choices`` control beside it for tie and
skip (``<question>-other``); a one-image question is a ``Choices`` control. Sides are fixed at export (Label
Studio shows every annotator the same task).
``import_label_studio`` reads Label Studio's JSON export: each annotation's answers become votes of the rater
``ls-<annotator>``, with the annotation's lead time, under vote ids made from the annotation's id (importing the
same export again stores nothing twice).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

from workbench.errors import ConfigError
from workbench.ratings.task import SKIP, RatingTask
from workbench.ratings.votes import VoteStore

__all__ = ["LABEL_STUDIO_RATER", "export_label_studio", "import_label_studio"]

LABEL_STUDIO_RATER = "labelstudio"  # whose order and sides the exported tasks follow


def export_label_studio(task: RatingTask, folder: str | Path) -> tuple[Path, Path]:
    """``config.xml`` and ``tasks.json`` for a Label Studio project in ``folder``, in the task's own order (an
    adaptive task's choices need the workbench's page or panel). A task with a checklist is refused: its
    questions differ per prompt, and a labelling config asks every task the same."""
    if any(item.checklist for item in task.items.values()):
        raise ConfigError(
            f"rating task {task.task_id!r} has a checklist, which Label Studio cannot ask (its questions differ per "
            "prompt): rate it on the page or in the panel, or make a task without one for Label Studio",
            "task",
        )
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    views = task.order(LABEL_STUDIO_RATER)
    names = ["left", "right"] if task.kind == "pairwise" else ["image"]
    tasks = [
        {"data": {"item_id": view.item_id, "prompt": view.prompt or "", "shown": list(view.images),
                  **{name: _data_uri(task.image(image)) for name, image in zip(names, view.images, strict=True)}}}
        for view in views
    ]  # fmt: skip
    (folder / "config.xml").write_text(_config(task))
    (folder / "tasks.json").write_text(json.dumps(tasks))
    return folder / "config.xml", folder / "tasks.json"


def import_label_studio(task: RatingTask, export: str | Path | Sequence[dict[str, Any]]) -> int:
    """Store the answers of a Label Studio JSON export (a path, or its parsed list) as votes; returns how many
    were new. Cancelled annotations and tasks of other projects (no ``item_id`` of this task) are refused by
    name."""
    entries = json.loads(Path(export).read_text()) if isinstance(export, str | Path) else list(export)
    store, new = VoteStore(task), 0
    for entry in entries:
        item_id = (entry.get("data") or {}).get("item_id")
        if item_id not in task.items:
            raise ConfigError(f"a Label Studio task with item_id {item_id!r} is not an item of this task", "export")
        shown = tuple(entry["data"]["shown"])
        for annotation in entry.get("annotations") or []:
            if annotation.get("was_cancelled"):
                continue
            rater = f"ls-{_annotator(annotation.get('completed_by'))}"
            for question, answer in _answers(task, annotation.get("result") or []).items():
                _, stored = store.add(
                    rater, item_id, question, answer, shown=shown, vote_id=f"ls-{annotation['id']}-{question}",
                    decided_s=annotation.get("lead_time"), interface="labelstudio",
                )  # fmt: skip
                new += stored
    return new


def _answers(task: RatingTask, result: list[dict[str, Any]]) -> dict[str, str]:
    """question -> answer from one annotation's result regions."""
    found: dict[str, str] = {}
    for region in result:
        name, value = region.get("from_name", ""), region.get("value") or {}
        if region.get("type") == "pairwise" and value.get("selected") in ("left", "right"):
            found.setdefault(name, value["selected"])
        elif region.get("type") == "choices" and value.get("choices"):
            question = name.removesuffix("-other")
            found[question] = value["choices"][0]  # tie or skip (or a one-image answer) wins over a side
    asked = {q.id: q for q in task.questions}
    return {q: a for q, a in found.items() if q in asked and a in (*asked[q].answers, SKIP)}


def _annotator(completed_by: Any) -> str:
    if isinstance(completed_by, dict):
        completed_by = completed_by.get("email") or completed_by.get("id")
    text = "".join(c if c.isalnum() or c in "._-" else "-" for c in str(completed_by))
    return text[:60] or "unknown"


def _config(task: RatingTask) -> str:
    lines = ["<View>", '  <Header value="$prompt"/>']
    if task.kind == "pairwise":
        for question in task.questions:  # a click on an image answers one Pairwise only: each has its own two
            left, right = f"{question.id}-left", f"{question.id}-right"
            lines += [f"  <Header value={quoteattr(question.text)}/>", '  <View style="display: flex; gap: 1em;">',
                      f'    <Image name={quoteattr(left)} value="$left"/>',
                      f'    <Image name={quoteattr(right)} value="$right"/>', "  </View>",
                      f"  <Pairwise name={quoteattr(question.id)} toName={quoteattr(f'{left},{right}')}/>",
                      f'  <Choices name={quoteattr(question.id + "-other")} toName={quoteattr(left)} choice="single">',
                      '    <Choice value="tie"/>', f'    <Choice value="{SKIP}"/>', "  </Choices>"]  # fmt: skip
    else:
        lines.append('  <Image name="image" value="$image"/>')
        for question in task.questions:
            lines += [
                f"  <Header value={quoteattr(question.text)}/>",
                f'  <Choices name={quoteattr(question.id)} toName="image" choice="single" required="true">',
            ]
            lines += [f"    <Choice value={quoteattr(answer)}/>" for answer in (*question.answers, SKIP)]
            lines.append("  </Choices>")
    return "\n".join([*lines, "</View>", ""])


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode()
