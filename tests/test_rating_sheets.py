"""A choices task read on numbered contact sheets, the readings entered back as votes."""

import csv

import pytest
from PIL import Image

from workbench.config import GenerationConfig
from workbench.errors import ConfigError
from workbench.evaluation import ModelEvaluator
from workbench.ratings import VoteStore, analyze_ratings, rating_task
from workbench.ratings.sheets import contact_sheets, import_readings

PROMPTS = ["a red circle", "a blue square", "a green triangle", "a yellow cross"]
QUESTIONS = {"shape": ["circle", "square", "triangle", "cross", "unreadable"], "colour": ["red", "blue", "other"]}


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    folder = tmp_path_factory.mktemp("run")
    ModelEvaluator(PROMPTS, ["toyworld/sd-small"], [0], GenerationConfig(steps=2), output_dir=folder).run()
    return rating_task(folder, "choices", questions=QUESTIONS, output_root=folder, repeat_share=0, display_size=32)


def write(path, rows):
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, ["sheet", "number", "shape", "colour"])
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_sheets_number_every_image_and_readings_come_back_as_votes_once(task, tmp_path):
    index = contact_sheets(task, tmp_path / "sheets", per_sheet=3, columns=2, scale=3)
    with open(index) as fh:
        listed = list(csv.DictReader(fh))
    assert [(r["sheet"], r["number"]) for r in listed] == [("1", "1"), ("1", "2"), ("1", "3"), ("2", "1")]
    assert sorted(r["item_id"] for r in listed) == sorted(task.items)
    assert set(listed[0]) == {"sheet", "number", "item_id"}  # nothing that tells what made an image
    with Image.open(tmp_path / "sheets" / "sheet-01.png") as sheet:
        assert sheet.width >= 2 * 96 and sheet.height >= 2 * 96  # two columns, two rows of 32 px scaled by 3
    rows = [{"sheet": r["sheet"], "number": r["number"], "shape": "circle", "colour": "red"} for r in listed]
    rows[-1]["colour"] = "skip"  # unreadable for this reader
    assert import_readings(task, write(tmp_path / "ana.csv", rows), index, "ana") == 2 * len(rows)
    assert import_readings(task, tmp_path / "ana.csv", index, "ana") == 0  # the same file again: nothing twice
    votes = VoteStore(task).votes("ana")
    assert {v.interface for v in votes} == {"sheet"} and sum(v.answer == "skip" for v in votes) == 1
    labels = analyze_ratings(task)["questions"]["shape"]["labels"]
    assert {row["label"] for row in labels} == {"circle"}


def test_a_bad_reading_is_refused_naming_its_line_and_stores_nothing(task, tmp_path):
    index = contact_sheets(task, tmp_path / "sheets", per_sheet=4)
    good = {"sheet": 1, "number": 1, "shape": "square", "colour": "blue"}
    pink = write(tmp_path / "ben.csv", [good, {**good, "number": 2, "colour": "pink"}])
    with pytest.raises(ConfigError, match=r"line 3: colour must be one of .*'skip'\], got 'pink'"):
        import_readings(task, pink, index, "ben")
    with pytest.raises(ConfigError, match="line 2: no image 1/9 on the sheets"):
        import_readings(task, write(tmp_path / "ben.csv", [{**good, "number": 9}]), index, "ben")
    assert VoteStore(task).votes("ben") == []
    alignment = rating_task(task.manifest["runs"][0]["path"], "alignment", output_root=tmp_path, gold_share=0)
    with pytest.raises(ConfigError, match="without its prompt: a choices task, not alignment"):
        contact_sheets(alignment, tmp_path / "alignment-sheets")


def test_a_one_image_task_takes_every_image_of_a_run_with_several_settings_and_keeps_where_each_was_made(tmp_path):
    folder, models = tmp_path / "run", ["toyworld/sd-small", "toyworld/sd-base"]
    for steps in (1, 2):  # two settings of each model in one run, as the validity ladder's rungs are
        ModelEvaluator(PROMPTS[:2], models, [0], GenerationConfig(steps=steps), output_dir=folder).run()
    task = rating_task(folder, "choices", questions=QUESTIONS, output_root=tmp_path, repeat_share=0)
    assert len(task.items) == 8
    run_id = task.manifest["runs"][0]["run_id"]
    made = sorted(item.made[0] for item in task.items.values())
    assert all(m.startswith(f"{run_id}/") and (folder / m.split("/", 1)[1]).is_file() for m in made)
    assert len(set(made)) == 8
    with pytest.raises(ConfigError, match="several images of 'toyworld/sd-small'"):  # a pair needs one of each
        rating_task(folder, "pairwise", output_root=tmp_path)


def test_a_reader_may_answer_some_questions_only_but_not_none(task, tmp_path):
    index = contact_sheets(task, tmp_path / "sheets", per_sheet=4)
    shapes = tmp_path / "shapes.csv"
    shapes.write_text("sheet,number,shape\n1,1,square\n1,2,circle\n")
    assert import_readings(task, shapes, index, "cat") == 2
    assert {v.question for v in VoteStore(task).votes("cat")} == {"shape"}
    nothing = tmp_path / "nothing.csv"
    nothing.write_text("sheet,number,size\n1,1,small\n")
    with pytest.raises(ConfigError, match=r"some of the task's questions \['shape', 'colour'\].*\(size unknown\)"):
        import_readings(task, nothing, index, "dan")
    misspelt = tmp_path / "misspelt.csv"
    misspelt.write_text("sheet,number,shape,colur\n1,1,square,red\n")
    with pytest.raises(ConfigError, match=r"\(colur unknown\)"):
        import_readings(task, misspelt, index, "dan")
    blank = tmp_path / "blank.csv"
    blank.write_text("sheet,number,shape\n1,1,\n")
    with pytest.raises(ConfigError, match="line 2: shape must be one of"):
        import_readings(task, blank, index, "dan")
    assert VoteStore(task).votes("dan") == []
