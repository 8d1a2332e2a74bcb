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
from pathlib import Path

from PIL import Image, ImageDraw

from workbench.config import GenerationConfig
from workbench.evaluation import ModelEvaluator
from workbench.metric_validity import ladder, run_ladder, toy_prompts
from workbench.ratings.sheets import contact_sheets, import_readings
from workbench.ratings.task import RatingTask, rating_task
from workbench.toyworld import scenes

__all__ = ["DIT_IMAGES", "LADDER", "PER_RUNG", "QUESTIONS", "make", "reference_sheet"]

LADDER = (("toyworld/sd-small", "toyworld/sd-base"), (1, 2, 4, 8, 20), (1.0, 5.0))
PER_RUNG, DIT_IMAGES = 20, 60
UNREADABLE = "unreadable"  # the attribute cannot be told (no shape drawn, two colours, ...)
VALUES = {
    "shape": scenes.SHAPES, "colour": tuple(scenes.COLOURS), "background": tuple(scenes.BACKGROUNDS),
    "size": tuple(scenes.SIZES), "position": tuple(scenes.POSITIONS), "style": scenes.STYLES,
}  # fmt: skip
QUESTIONS = {attribute: [*VALUES[attribute], UNREADABLE] for attribute in scenes.ATTRIBUTES}
TASK_ID = "readings"


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


def reference_sheet(path: str | Path, scale: int = 4) -> Path:
    """Clean renders, a row an attribute: each of its values on an otherwise fixed scene, named under it."""
    base = scenes.Scene("circle", "red", "white", "large", "centre", "plain")
    size, label, gap = scenes.IMAGE_SIZE * scale, 16, 8
    columns = max(len(values) for values in VALUES.values())
    sheet = Image.new("RGB", (120 + columns * (size + gap), len(VALUES) * (size + label + gap) + gap), "white")
    draw = ImageDraw.Draw(sheet)
    for row, (attribute, values) in enumerate(VALUES.items()):
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
