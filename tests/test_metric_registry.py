"""The metric registry and what uses it: per-image metrics as row columns, per-set metrics in the summary,
composition and PickScore scorers, toy ground truth, studies that check their metrics before the kernel."""

import json
import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import workbench as wb
from workbench import plots
from workbench.errors import ConfigError, UnknownModelError
from workbench.evaluation import ModelEvaluator
from workbench.evaluation_summary import prompt_differences
from workbench.metrics import METRICS, CLIPScorer, MetricOptions, check_metrics, image_scorers, metric, metric_bounds
from workbench.metrics.composition import CompositionScorer
from workbench.metrics.preference import PickScorer
from workbench.metrics.reference import folder_images, ground_truth_image
from workbench.metrics.sets import set_metrics_by_model
from workbench.row import SCHEMA_VERSION
from workbench.toyworld import scenes
from workbench.toyworld.judge import judge_image

TOY = [
    "a large red circle in the centre, on a white background",
    "a small blue square at the top, on a black background",
    "a photo of a large green triangle on the left, on a grey background",
    "a sketch of a small orange cross at the bottom, on a white background",
]
ALL = ["clip_score", "composition", "composition_all", "pickscore", "fid", "kid", "cmmd"]
FAST = wb.GenerationConfig(steps=2, batch_size=4)


def test_the_registry_names_each_metric_with_its_kind_direction_and_needs():
    assert set(ALL) <= set(METRICS)
    assert {n for n in ALL if METRICS[n].kind == "image"} == {
        "clip_score",
        "composition",
        "composition_all",
        "pickscore",
    }
    assert all(METRICS[n].higher_is_better for n in ("clip_score", "composition", "composition_all", "pickscore"))
    assert not any(METRICS[n].higher_is_better for n in ("fid", "kid", "cmmd"))
    assert all(any("reference" in need for need in METRICS[n].needs) for n in ("fid", "kid", "cmmd"))
    assert METRICS["composition"].bounds == METRICS["composition_all"].bounds == (0.0, 1.0)
    assert metric_bounds(["clip_score", "composition_all", "latency_s"]) == {"composition_all": (0.0, 1.0)}
    with pytest.raises(ConfigError, match=r"unknown metric 'clipscore'; known: clip_score, composition"):
        metric("clipscore")


@pytest.mark.parametrize(
    ("names", "prompts", "message"),
    [
        (["clip_score", "fidd"], TOY, r"unknown metric 'fidd'"),
        ("clip_score", TOY, r"must be a list of metric names"),
        (["kid", "kid"], TOY, r"must not repeat"),
        (
            ["fid", "cmmd"],
            [*TOY, "a robot"],
            r"fid, cmmd need a reference set: 1 of 5 prompts .*'a robot'.*reference_images",
        ),
    ],
)
def test_bad_metric_choices_are_refused_naming_what_is_missing(names, prompts, message):
    with pytest.raises(ConfigError, match=message):
        check_metrics(names, prompts)


def test_a_reference_folder_lets_set_metrics_run_on_any_prompts(tmp_path):
    with pytest.raises(ConfigError, match=r"reference_images .*nope.* is not a folder"):
        check_metrics(["fid"], ["a robot"], reference_images=str(tmp_path / "nope"))
    for refuse in (check_metrics, folder_images):  # before generation, and when read
        with pytest.raises(ConfigError, match=r"holds no images"):
            refuse(["fid"], ["a robot"], reference_images=str(tmp_path)) if refuse is check_metrics else refuse(
                tmp_path
            )
    Image.new("RGB", (8, 8), "red").save(tmp_path / "b.png")
    Image.new("RGB", (8, 8), "blue").save(tmp_path / "a.png")
    (tmp_path / "notes.txt").write_text("not an image")
    assert check_metrics(["fid"], ["a robot"], reference_images=str(tmp_path)) == ["fid"]
    assert [im.getpixel((0, 0)) for im in folder_images(tmp_path)] == [(0, 0, 255), (255, 0, 0)]  # name order


def test_scorers_are_shared_between_metrics_and_a_given_one_is_used():
    given = CLIPScorer()
    scorers = image_scorers(["clip_score", "composition", "composition_all"], given=[given])
    assert scorers[0] is given and len(scorers) == 2 and isinstance(scorers[1], CompositionScorer)


def test_composition_reads_ground_truth_right_and_a_wrong_image_wrong():
    images = [ground_truth_image(p, 3) for p in TOY]
    columns = CompositionScorer().score_columns(images, TOY)
    assert columns["composition"] == [1.0] * 4 and columns["composition_all"] == [1.0] * 4
    assert columns["composition_wrong"] == [""] * 4
    swapped = CompositionScorer().score_columns(images[1:2], TOY[:1])  # a blue square for a red circle
    assert swapped["composition_all"] == [0.0] and 0 < swapped["composition"][0] < 1
    assert "shape: circle -> square" in swapped["composition_wrong"][0]
    outside = CompositionScorer().score_columns(images[:1], ["a portrait of an astronaut"])
    assert outside["composition"] == [None] and "not a toy-world prompt" in outside["composition_reason"][0]


def test_ground_truth_is_seeded_fills_unnamed_attributes_and_refuses_other_prompts():
    a, b = ground_truth_image(TOY[0], 1), ground_truth_image(TOY[0], 1)
    assert np.array_equal(np.asarray(a), np.asarray(b))
    assert not np.array_equal(np.asarray(a), np.asarray(ground_truth_image(TOY[0], 2)))  # jitter follows the seed
    loose = [ground_truth_image("a yellow cross", seed) for seed in range(12)]
    assert all(judge_image(image, "a yellow cross").composition_all == 1.0 for image in loose)
    assert len({scenes.pixel_attributes(image)["background"] for image in loose}) > 1  # the rest is drawn
    with pytest.raises(ConfigError, match=r"no ground truth for 'a robot'"):
        ground_truth_image("a robot", 0)


def test_pickscore_is_logit_scale_times_the_cosine_and_the_toy_clip_says_it_stands_in():
    images = [ground_truth_image(p, 0) for p in TOY]
    pick, clip = PickScorer(), CLIPScorer()
    scores = pick.score_columns(images, TOY)["pickscore"]
    cosines = [s / 100 for s in clip.score(images, TOY).scores]
    scale = float(pick.model.logit_scale.exp().detach())
    assert scores == pytest.approx([scale * c for c in cosines], rel=1e-4)
    assert "rescaled CLIP score" in METRICS["pickscore"].note_for(MetricOptions())
    assert METRICS["pickscore"].note_for(MetricOptions(preference_model="yuvalkirstain/PickScore_v1")) is None


def test_a_preference_checkpoint_that_is_not_on_disk_names_what_to_download(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    with pytest.raises(UnknownModelError, match=r"hf download yuvalkirstain/PickScore_v1"):
        PickScorer("yuvalkirstain/PickScore_v1")


def _rows_with_images(root, images_by_model, prompts, seed=0):
    rows = []
    for model, images in images_by_model.items():
        for i, (image, prompt) in enumerate(zip(images, prompts, strict=True)):
            path = f"images/{model}-{i}.png"
            (root / "images").mkdir(exist_ok=True)
            image.save(root / path)
            rows.append({"model_id": model, "prompt": prompt, "prompt_id": f"p{i}", "seed": seed, "status": "ok",
                         "image_path": path})  # fmt: skip
    return pd.DataFrame(rows)


def test_set_metrics_are_near_zero_for_the_truth_and_clearly_worse_for_a_shifted_set(tmp_path):
    truth_scenes = scenes.sample_scenes(24, seed=5)
    prompts = [scenes.caption(s) for s in truth_scenes]
    truth = [ground_truth_image(p, 0) for p in prompts]
    shuffled = truth[12:] + truth[:12]  # the same set, each image under another prompt
    shifted = [
        ground_truth_image(scenes.caption(replace(s, style="sketch", background="black")), 0) for s in truth_scenes
    ]
    models = {"truth": truth, "shuffled": shuffled, "shifted": shifted}
    rows = _rows_with_images(tmp_path, models, prompts)
    table = set_metrics_by_model(rows, tmp_path, ["fid", "kid", "cmmd"], MetricOptions(subsets=10)).set_index(
        "model_id"
    )
    for name in ("fid", "kid", "cmmd"):
        truth_row, shifted_row = table.loc["truth"], table.loc["shifted"]
        # the set against itself: 0 up to the unbiased estimators' small negative offset, well below the shift
        assert truth_row[f"{name}_ci_low"] < 0 and truth_row[name] < 1e-6
        assert shifted_row[name] > truth_row[f"{name}_ci_high"] and shifted_row[f"{name}_ci_low"] > truth_row[name]
        assert table.loc["shuffled", name] == pytest.approx(table.loc["truth", name], abs=1e-6)  # sets ignore prompts
        assert (
            table.loc["shifted", f"{name}_ci_low"]
            < table.loc["shifted", name]
            < table.loc["shifted", f"{name}_ci_high"]
        )
        assert table.loc["truth", f"{name}_n"] == 24
    few = set_metrics_by_model(rows.head(3), tmp_path, ["kid"]).iloc[0]
    assert math.isnan(few["kid"]) and "at least 4" in few["kid_note"]


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    folder = tmp_path_factory.mktemp("metrics-study")
    evaluator = ModelEvaluator(
        TOY * 2, ["toyworld/sd-small", "toyworld/sd-base"], [0], FAST, output_dir=folder, metrics=ALL,
        metric_options=MetricOptions(subsets=10),
    )  # fmt: skip
    return evaluator, evaluator.run(), folder


def test_per_image_metrics_are_row_columns_and_every_one_is_compared(evaluated):
    evaluator, rows, _ = evaluated
    assert rows[["clip_score", "composition", "pickscore"]].notna().all().all()
    unsure = rows["composition_all"].isna()  # the judge was unsure of an attribute: it says which
    assert rows.loc[unsure, "composition_reason"].str.startswith("unsure of").all() and not unsure.all()
    assert set(rows.loc[~unsure, "composition_all"]) <= {0.0, 1.0} and rows["composition"].between(0, 1).all()
    study = evaluator.report()
    assert set(study.comparisons["metric"]) == {"clip_score", "composition", "composition_all", "pickscore"}
    assert study.verdict.count("\n") == 3  # a line per metric
    summary = study.summary.set_index("model_id")
    for name in ("clip_score", "composition", "composition_all", "pickscore"):
        assert (summary[f"{name}_ci_low"] <= summary[f"{name}_mean"]).all()
    for name in ("fid", "kid", "cmmd"):
        assert summary[name].notna().all() and (summary[f"{name}_n"] == 8).all()
    assert study.metrics["fid"]["bias"].startswith("biased upward") and study.metrics["kid"]["kind"] == "set"
    assert "ground truth" in study.metrics["cmmd"]["reference"]
    table = wb.summary_table(study.summary).data
    assert {"clip_score ↑ [95% CI]", "composition_all ↑ [95% CI]", "fid ↓ [95% CI]"} <= set(table.columns)
    assert (
        "rescaled CLIP score"
        in wb.metrics_table(study.metrics).data.set_index("metric").loc["pickscore", "keep in mind"]
    )


def test_the_study_files_carry_every_metric(evaluated, tmp_path):
    evaluator, rows, _ = evaluated
    evaluator.report().save(rows, tmp_path)
    document = json.loads((tmp_path / "summary.json").read_text())
    assert document["schema_version"] == SCHEMA_VERSION and set(document["metrics"]) == set(ALL)
    keys = set(document["rows"][0])
    assert {"clip_score_mean", "composition_ci_high", "pickscore_ci_low", "fid", "kid_ci_low", "cmmd_ci_high"} <= keys


def test_report_figures_take_any_metric(evaluated):
    evaluator, rows, folder = evaluated
    study = evaluator.report()
    assert plots.latency_vs_quality(study.summary, "fid").axes[0].get_ylabel().startswith("fid (lower is better)")
    heatmap = plots.metric_heatmap(study.summary)
    assert [t.get_text() for t in heatmap.axes[0].get_yticklabels()][:2] == ["clip_score ↑", "composition ↑"]
    with pytest.raises(ConfigError, match=r"the summary has no 'nope'"):
        plots.latency_vs_quality(study.summary, "nope")
    top = prompt_differences(rows, "clip_score", top=2)
    assert list(top.columns[:3]) == ["prompt_id", "prompt", "spread"] and top["spread"].is_monotonic_decreasing
    parts = plots.prompt_drilldown(rows, folder, "clip_score", top=2)
    assert len(parts) == 2 and parts[0][0].startswith(top["prompt_id"].iloc[0])
    assert parts[0][1].width > 2 * 32 * 4  # both models' images side by side


def test_an_evaluator_refuses_bad_metrics_before_making_anything(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown metric 'fidd'"):
        ModelEvaluator(TOY, ["toyworld/sd-small"], [0], FAST, output_dir=tmp_path, metrics=["fidd"])
    with pytest.raises(ConfigError, match=r"cmmd needs a reference set"):
        ModelEvaluator(["a robot"], ["toyworld/sd-small"], [0], FAST, output_dir=tmp_path, metrics=["cmmd"])
    assert not (tmp_path / "results.jsonl").exists()


def test_a_study_refuses_bad_metrics_before_its_kernel_starts(tmp_path):
    for parameters, message in (
        ({"metrics": ["clip_score", "nope"]}, r"unknown metric 'nope'"),
        ({"metrics": ["fid"], "prompt_set": "partiprompts"}, r"fid needs a reference set"),
    ):
        with pytest.raises(ConfigError, match=message):
            wb.run_study("01_model_evaluation", parameters, output_root=tmp_path, progress=False)
    assert not any(tmp_path.rglob("manifest.json"))


def test_an_ab_test_can_score_arms_by_any_per_image_metric():
    tester = wb.PromptABTester("toyworld/sd-small", CompositionScorer(), metric="composition", config=FAST)
    result = tester.run(TOY, {"plain": "{prompt}", "sketch": "a sketch of {prompt}"}, [0])
    assert result.metric == "composition" and set(result.comparisons["metric"]) == {"composition"}
    assert "composition_mean" in result.summary
    with pytest.raises(ConfigError, match=r"metric must be one the scorer fills"):
        wb.PromptABTester("toyworld/sd-small", CompositionScorer(), metric="clip_score")


def test_features_of_a_set_come_from_the_clip_for_cmmd(tmp_path):
    prompts = TOY * 2
    truth = [ground_truth_image(p, 0) for p in prompts]
    rows = _rows_with_images(tmp_path, {"m": truth}, prompts)
    options = MetricOptions(features="inception:/nonexistent/weights.pth", subsets=0)
    assert set_metrics_by_model(rows, tmp_path, ["cmmd"], options)["cmmd"].notna().all()  # no Inception needed
    with pytest.raises(ConfigError, match=r"Inception features need"):
        set_metrics_by_model(rows, tmp_path, ["fid"], options)


def test_a_resumed_evaluation_scores_its_stored_images_on_metrics_asked_for_later(tmp_path):
    first = ModelEvaluator(TOY, ["toyworld/sd-small"], [0], FAST, output_dir=tmp_path, metrics=["clip_score"])
    before = first.run()
    assert "composition" not in before
    again = ModelEvaluator(
        TOY, ["toyworld/sd-small"], [0], FAST, output_dir=tmp_path, metrics=["clip_score", "composition"]
    )
    assert again.units() == []  # nothing to make again
    rows = again.run()
    assert rows["composition"].notna().all() and list(rows["clip_score"]) == list(before["clip_score"])
    expected = CompositionScorer().score_columns(
        [Image.open(tmp_path / p).convert("RGB") for p in rows["image_path"]], TOY
    )["composition"]
    assert list(rows["composition"]) == expected
    appended = len(again.folder.rows())
    again.run()  # nothing is stale now
    assert len(again.folder.rows()) == appended


def test_workers_refuse_scorers_they_cannot_build(tmp_path):
    custom = wb.Metric(
        "mean_red", "image", "mean red channel", True, (), "mean_red",
        lambda options, device: CompositionScorer(),
    )  # fmt: skip
    wb.register_metric(custom)
    try:
        with pytest.raises(ConfigError, match=r"cannot use mean_red .*use workers=1"):
            ModelEvaluator(TOY, ["toyworld/sd-small"], [0], FAST, output_dir=tmp_path, metrics=["mean_red"], workers=2)
    finally:
        del METRICS["mean_red"]
    with pytest.raises(ConfigError, match=r"cannot use CompositionScorer"):
        ModelEvaluator(
            TOY, ["toyworld/sd-small"], [0], FAST, output_dir=tmp_path, scorer=CompositionScorer(), workers=2
        )
    with pytest.raises(ConfigError, match=r"only per-image metrics can be registered"):
        wb.register_metric(wb.Metric("my_fid", "set", "a set metric", False, ()))


def test_given_scorers_choose_the_default_metrics_and_a_scorer_without_columns_is_refused(tmp_path):
    evaluator = ModelEvaluator(TOY, ["toyworld/sd-small"], [0], FAST, output_dir=tmp_path, scorer=PickScorer())
    assert evaluator.metrics == ["pickscore"] and evaluator.metric_options.preference_model == "toyworld/clip"
    assert ModelEvaluator(TOY, ["toyworld/sd-small"], [0], FAST, output_dir=tmp_path).metrics == []

    class OldScorer:
        def score(self, images, prompts): ...

    with pytest.raises(ConfigError, match=r"scorer must be an ImageScorer"):
        ModelEvaluator(TOY, ["toyworld/sd-small"], [0], FAST, output_dir=tmp_path, scorer=OldScorer())


def test_composition_on_prompts_outside_the_toy_world_reports_without_crashing(tmp_path):
    prompts = ["a portrait of an astronaut", "a cat on a sofa"]
    evaluator = ModelEvaluator(
        prompts, ["toyworld/sd-small", "toyworld/sd-base"], [0], FAST, output_dir=tmp_path,
        metrics=["clip_score", "composition"],
    )  # fmt: skip
    rows = evaluator.run()
    assert rows["composition"].isna().all() and rows["composition_reason"].str.startswith("not a toy-world").all()
    study = evaluator.report()
    assert study.measured() == ["clip_score"] and study.quality_metric() == "clip_score"
    assert prompt_differences(rows, "composition").empty and plots.prompt_drilldown(rows, tmp_path, "composition") == []


def test_the_drill_down_shows_the_seed_on_which_the_models_differ_most(tmp_path):
    image = ground_truth_image(TOY[0], 0)
    rows = _rows_with_images(tmp_path, {"a": [image, image], "b": [image, image]}, TOY[:2])
    rows = pd.concat([rows, rows.assign(seed=1)], ignore_index=True)
    rows["clip_score"] = 50.0
    rows.loc[(rows["model_id"] == "b") & (rows["seed"] == 1) & (rows["prompt_id"] == "p1"), "clip_score"] = 70.0
    ((caption, grid),) = plots.prompt_drilldown(rows, tmp_path, "clip_score", top=1)
    assert caption.startswith("p1:") and caption.endswith("differs by 10 across models (seed 1)")
    assert grid.width > 2 * 32 * 4  # both models side by side
