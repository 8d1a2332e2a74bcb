"""A choices task read on numbered contact sheets, and the readings entered back as the task's votes.

For labelling many small images by eye: ``contact_sheets`` lays the task's blind images (no metadata, opaque ids)
out in a shuffled order, numbered, scaled up without smoothing, a sheet per ``per_sheet`` images, and writes
``sheets.csv`` (sheet, number, item id: nothing that tells what made an image). A reader looks at the sheets and
writes what each image shows in a CSV with a column per question (``sheet``, ``number``, then the question ids);
``import_readings`` stores it as that reader's votes (interface "sheet"), so the task's analysis, alpha and
labels read them as any rater's. Importing the same file again stores nothing twice.
"""

from __future__ import annotations

import csv
from pathlib import Path

from PIL import Image, ImageDraw

from workbench.errors import ConfigError
from workbench.ratings.task import SKIP, RatingTask
from workbench.ratings.votes import VoteStore

__all__ = ["SHEETS_RATER", "contact_sheets", "import_readings"]

SHEETS_RATER = "sheets"  # whose order (drawn from the task's seed) the sheets follow
_LABEL = 18  # pixels of the number's strip under each image


def contact_sheets(
    task: RatingTask, folder: str | Path, *, per_sheet: int = 20, columns: int = 5, scale: int = 4
) -> Path:
    """Numbered contact sheets of a one-image task's items in ``folder`` (``sheet-01.png``, ...) and their
    index ``sheets.csv``; returns the index's path."""
    if task.kind != "choices":
        raise ConfigError(f"contact sheets show an image without its prompt: a choices task, not {task.kind}", "task")
    if per_sheet < 1 or columns < 1 or scale < 1:
        raise ConfigError(f"per_sheet, columns and scale must be >= 1, got {per_sheet}, {columns}, {scale}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    views = task.order(SHEETS_RATER)
    rows = []
    for start in range(0, len(views), per_sheet):
        sheet = start // per_sheet + 1
        tiles = []
        for number, view in enumerate(views[start : start + per_sheet], start=1):
            with Image.open(task.image(view.images[0])) as image:
                tiles.append(image.convert("RGB").resize((image.width * scale, image.height * scale), Image.NEAREST))
            rows.append({"sheet": sheet, "number": number, "item_id": view.item_id})
        _sheet(tiles, columns).save(folder / f"sheet-{sheet:02d}.png")
    index = folder / "sheets.csv"
    with open(index, "w", newline="") as fh:
        writer = csv.DictWriter(fh, ["sheet", "number", "item_id"])
        writer.writeheader()
        writer.writerows(rows)
    return index


def _sheet(tiles: list[Image.Image], columns: int) -> Image.Image:
    width, height = tiles[0].size
    rows = -(-len(tiles) // columns)
    gap = 8
    canvas = Image.new("RGB", (columns * (width + gap) + gap, rows * (height + _LABEL + gap) + gap), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    for k, tile in enumerate(tiles):
        x, y = gap + (k % columns) * (width + gap), gap + (k // columns) * (height + _LABEL + gap)
        canvas.paste(tile, (x, y))
        draw.text((x + width // 2 - 6, y + height + 3), str(k + 1), fill=(0, 0, 0))
    return canvas


def import_readings(task: RatingTask, readings: str | Path, index: str | Path, rater: str) -> int:
    """Store ``rater``'s readings (a CSV: ``sheet``, ``number``, then a column per question of the task the rater
    answered, all of them or some, each value one of its answers or "skip") as votes, using the sheets'
    ``index``; returns how many were new. A file with no question's column, a row naming no image of the sheets,
    an empty answer or an answer the question does not allow is refused, naming it, and nothing of the file is
    stored; so is a column that is no question of the task (a misspelt one would otherwise go unread)."""
    with open(index, newline="") as fh:
        where = {(int(r["sheet"]), int(r["number"])): r["item_id"] for r in csv.DictReader(fh)}
    with open(readings, newline="") as fh:
        reader = csv.DictReader(fh)
        table, header = list(reader), reader.fieldnames or []
    known = [question.id for question in task.questions]
    unknown = [name for name in header if name not in ("sheet", "number", *known)]
    if unknown or not set(header) & set(known):
        raise ConfigError(
            f"{readings}'s columns must be sheet, number and some of the task's questions {known}; "
            f"got {header}" + (f" ({', '.join(unknown)} unknown)" if unknown else ""),
            "readings",
        )
    questions = [question for question in task.questions if question.id in header]
    votes = []
    for line, row in enumerate(table, start=2):
        try:
            item_id = where[(int(row["sheet"]), int(row["number"]))]
        except (KeyError, TypeError, ValueError):
            where_said = f"{row.get('sheet')}/{row.get('number')}"
            raise ConfigError(f"{readings} line {line}: no image {where_said} on the sheets") from None
        for question in questions:
            answer = (row.get(question.id) or "").strip()
            if answer not in (*question.answers, SKIP):
                allowed = [*question.answers, SKIP]
                raise ConfigError(f"{readings} line {line}: {question.id} must be one of {allowed}, got {answer!r}")
            votes.append((item_id, question.id, answer))
    store, new = VoteStore(task), 0
    given = {(v.item_id, v.question): v.vote_id for v in store.votes(rater)}
    for item_id, question, _ in votes:  # an answer given otherwise before: refused before anything is stored
        earlier = given.get((item_id, question))
        if earlier is not None and earlier != f"{rater}-{item_id}-{question}":
            raise ConfigError(f"{rater} has answered {question!r} on {item_id!r} already, not from these sheets")
    for item_id, question, answer in votes:
        images = task.items[item_id].images
        vote_id = f"{rater}-{item_id}-{question}"
        reason = "marked on the contact sheet" if answer == SKIP else None
        new += store.add(rater, item_id, question, answer, shown=images, vote_id=vote_id, interface="sheet",
                         reason=reason)[1]  # fmt: skip
    return new
