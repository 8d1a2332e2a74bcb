"""An alignment task's checklist: each part of a prompt asked about with yes / no, and read per target."""

import pandas as pd
import pytest

from workbench.config import GenerationConfig
from workbench.errors import ConfigError
from workbench.evaluation import ModelEvaluator
from workbench.ratings import VoteStore, analyze_ratings, rating_task
from workbench.ratings.label_studio import export_label_studio
from workbench.ratings.schedule import next_view
from workbench.toyworld.captions import parse_prompt

PROMPTS = ["a red circle on the left", "a blue square at the top", "a green triangle", "a large yellow circle"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("run")
    ModelEvaluator(PROMPTS, ["toyworld/sd-small"], [0], GenerationConfig(steps=2), output_dir=folder).run()
    return folder


def test_each_part_of_a_toy_prompt_is_asked_and_read_per_target(run, tmp_path):
    task = rating_task(run, "alignment", output_root=tmp_path, checklist="toyworld", gold_share=0.4, repeat_share=0)
    for item in task.items.values():
        expected = [f"{name}: {value}" for name, value in parse_prompt(item.prompt).attributes.items()]
        assert list(item.checklist) == expected and any(part.startswith("shape: ") for part in expected)
        asked = task.questions_of(item.item_id)
        assert [q.id for q in asked] == ["alignment", *(f"part_{k}" for k in range(len(expected)))]
        assert all(q.answers == ("yes", "no") and part in q.text for q, part in zip(asked[1:], expected, strict=True))
    assert any(item.check == "gold" for item in task.items.values())  # a gold item lists its shown prompt's parts
    store = VoteStore(task)
    with pytest.raises(ConfigError, match="answer must be one of"):
        view = next_view(task, "ana")
        store.add("ana", view.item_id, "part_0", "partly", shown=view.images)
    with pytest.raises(ConfigError, match="no question 'part_9'"):
        store.add("ana", view.item_id, "part_9", "yes", shown=view.images)
    while (view := next_view(task, "ana")) is not None:
        for question in view.questions:
            item = task.items[view.item_id]
            part = item.checklist[int(question.id[5:])] if question.id.startswith("part_") else ""
            answer = "yes" if question.id == "alignment" or part.startswith("shape") else "no"
            store.add("ana", view.item_id, question.id, answer, shown=view.images)
    checklist = {row["part"]: row for row in analyze_ratings(task, draws=20)["checklist"]}
    assert checklist["shape"]["shown"] == 1.0 and checklist["colour"]["shown"] == 0.0
    assert checklist["shape"]["answers"] == len(PROMPTS)  # the gold items' parts are not the image's: left out
    with pytest.raises(ConfigError, match="has a checklist, which Label Studio cannot ask"):
        export_label_studio(task, tmp_path / "ls")


def test_a_checklist_from_prompt_metadata_and_bad_checklists_refused(run, tmp_path):
    parts = {"p000": ["red", "circle", "red"], "p001": ["blue square"]}
    task = rating_task(run, "alignment", output_root=tmp_path, checklist=parts, gold_share=0)
    by_prompt = {item.prompt_id: item.checklist for item in task.items.values()}
    assert by_prompt == {"p000": ("red", "circle"), "p001": ("blue square",), "p002": (), "p003": ()}
    column = pd.Series({"p000": ["red", "circle"], "p001": ["blue square"]})  # a prompt table's metadata column
    from_column = rating_task(run, "alignment", output_root=tmp_path, checklist=column, gold_share=0)
    assert {item.prompt_id: item.checklist for item in from_column.items.values()}["p000"] == ("red", "circle")
    by_text = rating_task(run, "alignment", output_root=tmp_path, checklist=lambda p: p.split()[1:3], gold_share=0)
    assert {item.checklist for item in by_text.items.values()} >= {("red", "circle"), ("blue", "square")}
    with pytest.raises(ConfigError, match="prompt 'p000' must be a list of texts, got 'red'"):
        rating_task(run, "alignment", output_root=tmp_path, checklist={"p000": "red"})
    with pytest.raises(ConfigError, match="a checklist goes with alignment tasks, not pairwise ones"):
        rating_task(run, "pairwise", output_root=tmp_path, checklist="toyworld")
    with pytest.raises(ConfigError, match="checklist must be 'toyworld', 'geneval', a mapping"):
        rating_task(run, "alignment", output_root=tmp_path, checklist="t2i-compbench")
