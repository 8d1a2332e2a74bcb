"""The generated images read by eye: the committed readings, the readers' agreement, the judge against them."""

import pandas as pd

from workbench import readings
from workbench.ratings import RatingTask, VoteStore
from workbench.toyworld import scenes


def test_every_image_was_read_by_both_readers_and_every_disagreement_settled():
    table = readings.readings_table()
    assert len(table) == readings.PER_RUNG * 20 + readings.DIT_IMAGES
    task = RatingTask(readings.READINGS / "ratings" / readings.TASK_ID)
    votes = VoteStore(task).votes()
    assert {v.rater for v in votes} == {*readings.READERS, *readings.STYLE_READERS}
    assert {v.interface for v in votes} == {"sheet"}
    assert {v.question for v in votes if v.rater in readings.STYLE_READERS} == {"style"}  # read again: style only
    for attribute in scenes.ATTRIBUTES:
        allowed = set(readings.QUESTIONS[attribute])
        assert set(table[attribute]) <= allowed
        first = "reader-3" if attribute == "style" else "reader-1"
        agreed = table[f"{attribute}_agreed"]
        assert (table.loc[agreed, attribute] == table.loc[agreed, f"{attribute}_{first}"]).all()
    agreed = table["style_first_agreed"]  # the first reading of style is kept beside the second
    assert (table.loc[agreed, "style_first"] == table.loc[agreed, "style_reader-1"]).all()
    agreement = readings.reader_agreement(table).set_index("attribute")
    assert list(agreement.index) == [*scenes.ATTRIBUTES[:-1], "style (first reading)", "style"]
    assert (agreement["kappa"] > 0.6).all() and (agreement["agreement"] > 0.8).all()
    assert set(table["model_id"]) == {"toyworld/sd-small", "toyworld/sd-base", "toyworld/dit-small"}


def test_the_judge_and_the_toy_clip_are_measured_against_the_readings():
    result = readings.judge_against_readings()
    assert result["images"] == len(readings.readings_table())
    assert list(result["attributes"]) == [*scenes.ATTRIBUTES[:-1], "style (first reading)", "style"]
    for entry in result["attributes"].values():
        for key in ("judge_agreed", "judge_adjudicated", "toy_clip_agreed"):
            share = entry[key]
            assert share["n"] > 300 and share["ci_low"] <= share["share"] <= share["ci_high"]
        assert entry["judge_adjudicated"]["n"] >= entry["judge_agreed"]["n"]
    summary = readings.readings_summary(result)
    assert list(summary["attribute"]) == list(result["attributes"]) and isinstance(summary, pd.DataFrame)
    assert 0 < result["composition_all"]["share"] <= 1


def test_a_disagreement_without_a_third_look_or_a_third_look_without_one_is_refused(tmp_path):
    import shutil

    import pytest

    from workbench.errors import ConfigError

    folder = shutil.copytree(readings.READINGS, tmp_path / "readings")
    third = pd.read_csv(folder / "readings" / "third-look.csv")
    third.iloc[1:].to_csv(folder / "readings" / "third-look.csv", index=False)
    with pytest.raises(ConfigError, match="no third look decides"):
        readings.readings_table(folder)
    table = readings.readings_table()
    agreed = table[table["shape_agreed"]].iloc[0]
    sheet, number = (int(v) for v in agreed["place"].split("/"))
    extra = pd.DataFrame([{"sheet": sheet, "number": number, "attribute": "shape", "decision": "circle"}])
    pd.concat([third, extra]).to_csv(folder / "readings" / "third-look.csv", index=False)
    with pytest.raises(ConfigError, match="decides where the readers agreed"):
        readings.readings_table(folder)


def test_a_metric_is_measured_against_the_readers_without_the_judge():
    table = readings.validity_against_readings(["composition_all"], draws=20).iloc[0]
    assert table["metric"] == "composition_all" and 0 < table["readings_wrong"] < table["readings_images"]
    assert table["readings_ci_low"] <= table["auc_wrong_readings"] <= table["readings_ci_high"]


def test_a_style_read_again_needs_its_own_third_look(tmp_path):
    import shutil

    import pytest

    from workbench.errors import ConfigError

    folder = shutil.copytree(readings.READINGS, tmp_path / "readings")
    (folder / "readings" / "third-look-style.csv").unlink()
    with pytest.raises(ConfigError, match="no third look decides"):
        readings.readings_table(folder)
    for rater in readings.STYLE_READERS:
        (folder / "ratings" / readings.TASK_ID / "votes" / f"{rater}.jsonl").unlink()
    table = readings.readings_table(folder)  # without the second reading, style is the first's
    assert "style_first" not in table and (table["style"] == readings.readings_table()["style_first"]).all()
