"""GenEval's rules on hand-made detections: each outcome and reason text as data/prompts/geneval/SOURCE.md states."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from workbench.errors import ConfigError
from workbench.metrics.geneval import COLOURS, Detection, evaluate, kept_detections, relative_position, summary_scores


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
    assert len(metadata) == 553 + 88 and metadata["a photo of a bench"] == {  # GenEval's and the toy world's
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
    assert columns["geneval_tag"] == ["single_object", "colors", "colors", None]
    assert columns["geneval_reason"][:2] == ["", ""]
    assert columns["geneval_reason"][2] == (
        f"expected {wanted['color']} {wanted['class']}>=1, found 0 {wanted['color']}; and 1 brown"
    )
    assert columns["geneval_reason"][3].startswith("no GenEval metadata for this prompt")
    given = {"a unicorn": {"tag": "single_object", "include": [{"class": "bench", "count": 1}]}}
    own = GenevalScorer(detector, colours, given)
    assert own.score_columns(images[:1], ["a unicorn"])["geneval"] == [1.0]


def test_tag_scores_resample_prompts_within_tags_and_bound_a_unanimous_tag():
    from workbench.evaluation_summary import tag_scores

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
    both = tag_scores(rows.assign(geneval=1.0), draws=400).set_index("tag").loc["overall"]  # every tag unanimous
    assert both["score"] == 1.0 and 0.025 ** (1 / 10) < both["ci_low"] < 0.99 and both["ci_high"] == 1.0


# --- the transformers detector and colour reader (random weights: the code path, not the accuracy) ----------


def save_tiny_mask2former(folder: Path, names: list[str]) -> Path:
    """A randomly initialised small Mask2Former labelled with ``names``, saved as a checkpoint in ``folder``."""
    from transformers import (
        Mask2FormerConfig,
        Mask2FormerForUniversalSegmentation,
        Mask2FormerImageProcessorPil,
        SwinConfig,
    )

    torch.manual_seed(0)
    backbone = SwinConfig(image_size=64, patch_size=4, embed_dim=32, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1],
                          window_size=2, out_features=["stage1", "stage2", "stage3", "stage4"])  # fmt: skip
    labels = {"id2label": dict(enumerate(names)), "label2id": {n: i for i, n in enumerate(names)}}
    sizes = {"hidden_dim": 32, "feature_size": 32, "mask_feature_size": 32, "dim_feedforward": 64,
             "encoder_feedforward_dim": 64}  # fmt: skip
    config = Mask2FormerConfig(backbone_config=backbone, encoder_layers=1, decoder_layers=2, num_queries=12,
                               num_attention_heads=2, common_stride=4, **sizes, **labels)  # fmt: skip
    Mask2FormerForUniversalSegmentation(config).save_pretrained(folder)
    Mask2FormerImageProcessorPil(size={"shortest_edge": 64, "longest_edge": 64}).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_mask2former(tmp_path_factory):
    from workbench.metrics.geneval_detectors import object_names

    coco = {"computer mouse": "mouse", "tv remote": "remote", "computer keyboard": "keyboard"}  # COCO's own names
    return save_tiny_mask2former(tmp_path_factory.mktemp("mask2former"), [coco.get(n, n) for n in object_names()])


def test_the_transformers_detector_and_colour_reader_run_the_geneval_rules_end_to_end(tiny_mask2former):
    from PIL import Image

    from workbench.metrics.geneval import GenevalScorer, geneval_metadata
    from workbench.metrics.geneval_detectors import CLIPColours, Mask2FormerDetector, object_names
    from workbench.models import TOYWORLD_DIR

    detector = Mask2FormerDetector(str(tiny_mask2former), device="cpu")
    images = [Image.new("RGB", (48, 40), "white"), Image.new("RGB", (40, 40), "red")]
    found = detector(images)
    assert len(found) == 2 and all(found)  # random weights: a low score on every query, all kept for the rules
    for image, detections in zip(images, found, strict=True):
        for d in detections:
            ys, xs = np.nonzero(d.mask)
            assert d.mask.shape == (image.height, image.width) and d.label in object_names()
            assert d.box == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) and 0 <= d.score <= 1
    colours = CLIPColours(str(TOYWORLD_DIR / "clip"), device="cpu")  # any CLIP folder takes the same path
    named = colours(images[0], found[0][:3], found[0][0].label)
    assert len(named) == len(found[0][:3]) and set(named) <= set(COLOURS)
    prompts = ["a photo of a bench", next(p for p, m in geneval_metadata().items() if m["tag"] == "colors")]
    columns = GenevalScorer(detector, colours).score_columns(images, prompts)
    assert set(columns["geneval"]) <= {0.0, 1.0} and all(isinstance(r, str) for r in columns["geneval_reason"])


def test_a_detector_without_weights_or_without_the_coco_classes_is_refused_at_once(tmp_path, monkeypatch):
    import time

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # offline, with an empty cache: nothing can come from the hub
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))

    from workbench.metrics.geneval_detectors import CLIPColours, Mask2FormerDetector

    started = time.perf_counter()
    with pytest.raises(ConfigError, match=r"(?s)cannot load a Mask2Former from 'nobody/no-such-detector'.*hf download"):
        Mask2FormerDetector("nobody/no-such-detector", device="cpu")
    with pytest.raises(ConfigError, match=r"(?s)cannot load a CLIP from 'nobody/no-such-clip'.*hf download"):
        CLIPColours("nobody/no-such-clip", device="cpu")
    assert time.perf_counter() - started < 10
    folder = save_tiny_mask2former(tmp_path / "few", ["person", "bicycle"])
    with pytest.raises(ConfigError, match="does not label 78 of GenEval's 80 classes"):
        Mask2FormerDetector(str(folder), device="cpu")


def test_a_study_with_geneval_and_no_weights_fails_before_any_image_naming_the_download(tmp_path, monkeypatch):
    from workbench import GenerationConfig, ModelEvaluator, load_prompts

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))

    prompts = load_prompts("geneval", n=2)
    evaluator = ModelEvaluator(prompts, ["toyworld/sd-small"], [0, 1, 2, 3], GenerationConfig(steps=2),
                               output_dir=tmp_path / "run", metrics=["geneval"], warmup=False)  # fmt: skip
    names = r"(?s)hf download facebook/mask2former-swin-small-coco-instance.*hf download openai/clip-vit-large-patch14"
    with pytest.raises(ConfigError, match=names):  # both downloads named at once
        evaluator.run()
    assert not list((tmp_path / "run").rglob("*.png"))


def test_geneval_is_a_metric_like_any_other_with_the_detector_it_is_given(tiny_mask2former, tmp_path):
    from workbench import GenerationConfig, MetricOptions, ModelEvaluator, load_prompts
    from workbench.models import TOYWORLD_DIR

    prompts = load_prompts("geneval", categories=["single_object", "counting"], n=4, seed=1)
    options = MetricOptions(geneval_detector=str(tiny_mask2former), geneval_clip=str(TOYWORLD_DIR / "clip"))
    evaluator = ModelEvaluator(prompts, ["toyworld/sd-small"], [0], GenerationConfig(steps=2), warmup=False,
                               output_dir=tmp_path / "run", metrics=["geneval"], metric_options=options)  # fmt: skip
    rows = evaluator.run()
    (provenance,) = evaluator.folder.provenance().values()  # both checkpoints named, each with its files' hash
    assert provenance["checkpoint"] == str(tiny_mask2former) and provenance["colour_checkpoint"].endswith("clip")
    assert provenance["weights"] and provenance["colour_weights"]
    assert set(rows["geneval"]) <= {0.0, 1.0} and rows["geneval_reason"].map(type).eq(str).all()
    failed = rows[rows["geneval"] == 0.0]
    assert failed["geneval_reason"].str.contains("expected").all()  # GenEval's words for what was missing


def test_the_report_gives_geneval_per_tag_with_intervals_and_paired_comparisons(tmp_path):
    import json

    from workbench.evaluation_summary import evaluation_report
    from workbench.run_folder import RunFolder

    rng = np.random.default_rng(0)
    rows = []
    for model, skill in (("a", 0.9), ("b", 0.4)):
        for tag in ("single_object", "counting"):
            for p in range(12):
                for seed in range(4):
                    rows.append({"model_id": model, "prompt_id": f"{tag}-{p}", "prompt": f"{tag} {p}", "seed": seed,
                                 "category": tag, "status": "ok", "latency_s": 1.0, "peak_mem_mb": 1.0,
                                 "geneval": float(rng.random() < (skill if tag == "counting" else 1.0))})  # fmt: skip
    study = evaluation_report(pd.DataFrame(rows))
    by = study.geneval.set_index(["model_id", "tag"])
    mixed = pd.DataFrame(rows).assign(geneval_tag=lambda f: f["category"], category="all")  # a table of one's own
    assert evaluation_report(mixed).geneval.equals(study.geneval)  # GenEval's tags, whatever the category
    assert by.loc[("a", "single_object"), "score"] == 1.0 and by.loc[("a", "single_object"), "ci_low"] < 1.0
    overall = by.loc[("b", "overall")]
    assert overall["score"] == pytest.approx((1.0 + by.loc[("b", "counting"), "score"]) / 2)
    assert overall["ci_low"] < overall["score"] < overall["ci_high"] and overall["images"] == 96
    counting = study.geneval_comparisons.set_index("metric").loc["geneval: counting"]
    assert counting["model_id"] == "b" and counting["ci_high"] < 0  # b loses on counting, within the tag
    study.save(pd.DataFrame(rows), tmp_path)
    saved = json.loads((RunFolder(tmp_path).path / "summary.json").read_text())
    assert {r["tag"] for r in saved["geneval"]} == {"single_object", "counting", "overall"}


def test_geneval_metadata_gives_people_a_checklist_of_what_it_checks(tmp_path):
    from workbench.metrics.geneval import geneval_checklist, geneval_metadata

    metadata = geneval_metadata()
    assert geneval_checklist(metadata["a photo of a bench"]) == ["object: a bench"]
    clocks = ["count: two clocks", "count: fewer than three clocks"]
    assert geneval_checklist(metadata["a photo of two clocks"]) == clocks
    assert geneval_checklist(metadata["a photo of a purple wine glass and a black apple"]) == [
        "colour: a purple wine glass", "colour: a black apple"
    ]  # fmt: skip
    assert geneval_checklist(metadata["a photo of a dog right of a teddy bear"]) == [
        "object: a teddy bear", "object: a dog", "position: the dog is right of the teddy bear"
    ]  # fmt: skip
    assert geneval_checklist(metadata["a photo of an orange circle"]) == ["colour: an orange circle"]
    assert all(geneval_checklist(m) for m in metadata.values())


def test_an_alignment_task_asks_people_what_geneval_checks_and_measures_geneval_against_them(tmp_path):
    from workbench import GenerationConfig, MetricOptions, ModelEvaluator, load_prompts, rating_task
    from workbench.ratings import VoteStore, analyze_ratings
    from workbench.ratings.schedule import next_view

    prompts = load_prompts("toyworld-geneval", categories=["single_object", "counting", "position"], n=4, seed=0)
    run = tmp_path / "run"
    ModelEvaluator(prompts, ["toyworld/sd-small"], [0, 1], GenerationConfig(steps=2), output_dir=run, warmup=False,
                   metrics=["geneval"], metric_options=MetricOptions(geneval_detector="toyworld")).run()  # fmt: skip
    task = rating_task(run, "alignment", output_root=tmp_path, checklist="geneval", gold_share=0, repeat_share=0)
    parts = {p for item in task.items.values() for p in item.checklist}
    assert any(p.startswith("count: fewer than") for p in parts) or any(p.startswith("position:") for p in parts)
    assert all(item.checklist for item in task.items.values())
    store, flipped = VoteStore(task), None
    while (view := next_view(task, "ana")) is not None:  # people see what geneval saw, but for one image
        right = task.items[view.item_id].scores[0]["geneval"] == 1.0
        if flipped is None:
            flipped, right = view.item_id, not right
        for question in view.questions:
            answer = "yes" if question.id == "alignment" or right or question.id != "part_0" else "no"
            store.add("ana", view.item_id, question.id, answer, shown=view.images)
    (agreement,) = analyze_ratings(task, draws=20)["checklist_agreement"]
    n = len(task.items)
    assert agreement["metric"] == "geneval" and agreement["images"] == n
    assert agreement["agreement"] == pytest.approx((n - 1) / n)
    assert agreement["metric_only"] + agreement["people_only"] == 1
    assert agreement["both_right"] + agreement["both_wrong"] == n - 1
