"""GenEval's rules on hand-made detections: each outcome and reason text as data/prompts/geneval/SOURCE.md states."""

import pandas as pd
import pytest

from workbench.errors import ConfigError
from workbench.metrics.geneval import Detection, evaluate, kept_detections, relative_position, summary_scores


def box(x: float, y: float, size: float = 10.0) -> tuple[float, float, float, float]:
    return (x, y, x + size, y + size)


def no_colours(found, name):
    raise AssertionError("the colour reader was asked although no clause names a colour")


def colours_by_score(table: dict[float, str]):
    """A colour reader that names each detection's colour by its confidence, and records what it was asked."""
    asked = []

    def read(found, name):
        asked.append([d.score for d in found])
        return [table[d.score] for d in found]

    return read, asked


def test_a_detection_is_kept_above_its_tags_threshold_most_confident_first_sixteen_at_most():
    found = [Detection("cat", s, box(0, 0)) for s in (0.3, 0.31, 0.95, 0.89)]
    assert [d.score for d in kept_detections(found, "single_object")["cat"]] == [0.95, 0.89, 0.31]  # > 0.3
    assert [d.score for d in kept_detections(found, "counting")["cat"]] == [0.95]  # > 0.9 when counting
    many = [Detection("cup", 0.5 + i / 100, box(i, 0)) for i in range(20)]
    kept = kept_detections(many, "two_object")["cup"]
    assert len(kept) == 16 and kept[0].score == 0.69 and kept[-1].score == 0.54
    assert kept_detections([Detection("cat", 0.2, box(0, 0))], "colors") == {}


def test_an_include_clause_needs_its_count_and_says_what_it_found():
    metadata = {"tag": "two_object", "include": [{"class": "bench", "count": 1}, {"class": "cow", "count": 1}]}
    result = evaluate([Detection("bench", 0.8, box(0, 0))], metadata, no_colours)
    assert not result.correct and result.reason == "expected cow>=1, found 0"
    result = evaluate([Detection("bench", 0.8, box(0, 0)), Detection("cow", 0.4, box(50, 0))], metadata, no_colours)
    assert result.correct and result.reason == ""


def test_counting_means_exactly_n_through_its_exclude_clause_which_counts_every_kept_detection():
    metadata = {"tag": "counting", "include": [{"class": "dog", "count": 2}], "exclude": [{"class": "dog", "count": 3}]}
    two = [Detection("dog", 0.95, box(0, 0)), Detection("dog", 0.93, box(30, 0))]
    assert evaluate(two, metadata, no_colours).correct
    three = [*two, Detection("dog", 0.92, box(60, 0))]
    assert evaluate(three, metadata, no_colours).reason == "expected dog<3, found 3"
    faint = [*two, Detection("dog", 0.85, box(60, 0))]  # under counting's 0.9: not kept, not counted
    assert evaluate(faint, metadata, no_colours).correct
    one = [two[0], Detection("dog", 0.6, box(30, 0))]
    assert evaluate(one, metadata, no_colours).reason == "expected dog>=2, found 1"
    both = {"tag": "counting", "include": [{"class": "dog", "count": 1}], "exclude": [{"class": "dog", "count": 2}]}
    assert evaluate(three, both, no_colours).reason == "expected dog<2, found 3"  # several reasons join by lines
    assert evaluate([], both | {"include": [{"class": "dog", "count": 4}]}, no_colours).reason == (
        "expected dog>=4, found 0"
    )


def test_colour_is_read_on_the_most_confident_detections_only_and_only_after_the_count_passed():
    metadata = {"tag": "colors", "include": [{"class": "car", "count": 1, "color": "red"}]}
    read, asked = colours_by_score({0.9: "blue", 0.5: "red"})
    cars = [Detection("car", 0.5, box(40, 0)), Detection("car", 0.9, box(0, 0))]
    result = evaluate(cars, metadata, read)
    assert asked == [[0.9]]  # the most confident car only: the red one behind it is not looked at
    assert not result.correct and result.reason == "expected red car>=1, found 0 red; and 1 blue"
    read, asked = colours_by_score({})
    assert evaluate([], metadata, read).reason == "expected car>=1, found 0" and asked == []
    two = {"tag": "color_attr", "include": [{"class": "car", "count": 2, "color": "red"}]}
    read, _ = colours_by_score({0.9: "red", 0.5: "white"})
    assert evaluate(cars, two, read).reason == "expected red car>=2, found 1 red; and 1 red, 1 white"


def test_relative_position_takes_a_tenth_of_the_boxes_off_the_offset():
    left, right = Detection("a", 0.9, box(0, 0)), Detection("b", 0.9, box(20, 0))
    assert relative_position(left, right) == {"left of"} and relative_position(right, left) == {"right of"}
    above = Detection("c", 0.9, box(0, -20))
    assert relative_position(above, left) == {"above"} and relative_position(left, above) == {"below"}
    near = Detection("d", 0.9, box(1.5, 1.5))  # centres 1.5 apart per axis, less 0.1 x (10 + 10): nothing left
    assert relative_position(near, left) == set()
    diagonal = Detection("e", 0.9, box(30, 30))
    assert relative_position(diagonal, left) == {"right of", "below"}  # (30 - 2) / 42.4 = 0.66 on each axis
    slight = Detection("f", 0.9, box(30, 8))  # dy = 8 - 2 = 6 of 31: not "below"
    assert relative_position(slight, left) == {"right of"}


def test_position_is_checked_after_count_and_colour_against_the_group_the_other_clause_matched():
    metadata = {"tag": "position", "include": [{"class": "cup", "count": 1},
                                               {"class": "dog", "count": 1, "position": ["left of", 0]}]}  # fmt: skip
    cup, dog_left, dog_right = (Detection("cup", 0.9, box(50, 0)), Detection("dog", 0.9, box(0, 0)),
                                Detection("dog", 0.9, box(90, 0)))  # fmt: skip
    assert evaluate([cup, dog_left], metadata, no_colours).correct
    result = evaluate([cup, dog_right], metadata, no_colours)
    assert result.reason == "expected dog left of target, found right of target"
    stacked = Detection("dog", 0.9, box(50, 2))
    assert evaluate([cup, stacked], metadata, no_colours).reason == "expected dog left of target, found  target"
    result = evaluate([dog_left], metadata, no_colours)  # the cup clause failed: no group to be left of
    assert result.reason == "expected cup>=1, found 0\nno target for dog to be left of"
    coloured = {"tag": "position", "include": [{"class": "cup", "count": 1},
                {"class": "dog", "count": 1, "color": "red", "position": ["left of", 0]}]}  # fmt: skip
    read, _ = colours_by_score({0.9: "brown"})
    result = evaluate([cup, dog_right], coloured, read)  # the colour failed: position is not checked
    assert result.reason == "expected red dog>=1, found 0 red; and 1 brown"


def test_a_position_holds_for_every_object_against_every_target():
    metadata = {"tag": "position", "include": [{"class": "cup", "count": 2},
                                               {"class": "dog", "count": 1, "position": ["below", 0]}]}  # fmt: skip
    cups = [Detection("cup", 0.9, box(0, 0)), Detection("cup", 0.8, box(40, 0))]
    under_one = Detection("dog", 0.9, box(0, 30))  # below the first cup, below-left of the second
    assert evaluate([*cups, under_one], metadata, no_colours).correct
    beside = Detection("dog", 0.9, box(80, 12))  # right of both cups, lower but not below either
    assert evaluate([*cups, beside], metadata, no_colours).reason == "expected dog below target, found right of target"


def test_the_overall_score_is_the_mean_of_the_tags_shares():
    rows = pd.DataFrame({"category": ["single_object"] * 4 + ["counting"] * 2,
                         "geneval": [1.0, 1.0, 1.0, 0.0, 0.0, None]})  # fmt: skip
    scores = summary_scores(rows)
    assert scores == {"counting": 0.0, "single_object": 0.75, "overall": 0.375}  # not 3/5 of the images
    with pytest.raises(ConfigError, match="no image has a geneval value"):
        summary_scores(rows.assign(geneval=None))


def test_the_scorer_finds_a_prompts_metadata_by_its_text_and_scores_with_the_detector_it_is_given():
    from PIL import Image

    from workbench.metrics.geneval import GenevalScorer, geneval_metadata

    metadata = geneval_metadata()
    assert len(metadata) == 553 and metadata["a photo of a bench"] == {
        "tag": "single_object", "include": [{"class": "bench", "count": 1}], "exclude": []
    }  # fmt: skip
    coloured = next(p for p, m in metadata.items() if m["tag"] == "colors")
    wanted = metadata[coloured]["include"][0]
    seen = {}  # image size -> what the hand-made detector "sees" there

    def detector(images):
        return [seen[image.size] for image in images]

    def colours(image, found, name):
        return [wanted["color"] if image.size == (2, 2) else "brown" for _ in found]

    images = [Image.new("RGB", (s, s)) for s in (1, 2, 3, 4)]
    seen[(1, 1)] = [Detection("bench", 0.8, box(0, 0))]
    seen[(2, 2)] = seen[(3, 3)] = [Detection(wanted["class"], 0.8, box(0, 0))]
    prompts = ["a photo of a bench", coloured, coloured, "a photo of a unicorn"]
    scorer = GenevalScorer(detector, colours)
    columns = scorer.score_columns(images, prompts)
    assert columns["geneval"] == [1.0, 1.0, 0.0, None]
    assert columns["geneval_reason"][:2] == ["", ""]
    assert columns["geneval_reason"][2] == (
        f"expected {wanted['color']} {wanted['class']}>=1, found 0 {wanted['color']}; and 1 brown"
    )
    assert columns["geneval_reason"][3].startswith("no GenEval metadata for this prompt")
    given = {"a unicorn": {"tag": "single_object", "include": [{"class": "bench", "count": 1}]}}
    own = GenevalScorer(detector, colours, given)
    assert own.score_columns(images[:1], ["a unicorn"])["geneval"] == [1.0]


def test_tag_scores_resample_prompts_within_tags_and_bound_a_unanimous_tag():
    from workbench.metrics.geneval import tag_scores

    rows = pd.DataFrame({
        "prompt_id": [f"p{i // 4}" for i in range(40)] + [f"q{i // 4}" for i in range(40)],
        "category": ["single_object"] * 40 + ["counting"] * 40,
        "geneval": [1.0] * 40 + [float(i % 4 == 0 or i < 8) for i in range(40)],
    })  # fmt: skip
    table = tag_scores(rows, draws=400).set_index("tag")
    assert table.loc["single_object", "score"] == 1.0 and table.loc["single_object", "ci_high"] == 1.0
    assert table.loc["single_object", "ci_low"] == pytest.approx(0.025 ** (1 / 10))  # 10 prompts, all right
    counting = table.loc["counting"]
    assert counting["score"] == pytest.approx(0.4) and counting["ci_low"] < 0.4 < counting["ci_high"]
    overall = table.loc["overall"]
    assert overall["score"] == pytest.approx(0.7) and overall["prompts"] == 20 and overall["images"] == 80
    assert overall["ci_low"] < 0.7 < overall["ci_high"]
