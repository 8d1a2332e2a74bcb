"""An evaluation's rows summarized per model, paired with the reference model, the verdict, and its tables."""

import json

import numpy as np
import pandas as pd
import pytest

from workbench.costs import load_prices
from workbench.errors import ConfigError
from workbench.evaluation_summary import evaluation_report, paired_comparisons, summarize
from workbench.report_tables import comparisons_table, cost_table, summary_table
from workbench.run_folder import read_summary
from workbench.stats import bounded_ci


def test_summary_numbers_on_a_hand_made_table():
    df = pd.DataFrame(
        {
            "model_id": ["m"] * 4 + ["n"] * 2,
            "prompt_id": ["a", "a", "a", "b", "a", "b"],
            "seed": [0, 1, 2, 0, 0, 0],
            "latency_s": [1.0, 2.0, 3.0, 10.0, 0.5, 0.5],
            "peak_mem_mb": [100, 120, 110, 90, 50, 60],
            "clip_score": [10.0, 20.0, 30.0, 60.0, 5.0, 7.0],
            "status": ["ok"] * 6,
        }
    )
    summary = summarize(df, gpu_hour_cost=3.6).set_index("model_id")
    m = summary.loc["m"]
    assert m.latency_mean_s == 4.0 and m.latency_median_s == 2.5
    assert m.latency_p95_s == pytest.approx(pd.Series([1.0, 2.0, 3.0, 10.0]).quantile(0.95))
    assert m.images_per_s == 0.25 and m.peak_mem_mb == 120
    assert m.clip_score_mean == 40.0  # the mean of the prompt means (20, 60), not of the images (30)
    assert m.clip_score_ci_low <= m.clip_score_mean <= m.clip_score_ci_high
    assert m.usd_per_image == pytest.approx(3.6 * 4.0 / 3600 / 0.5)  # $/h x s/image, busy half the time
    assert summary.loc["n"].clip_score_mean == 6.0


def test_failed_rows_count_as_failed_not_as_speed():
    df = pd.DataFrame(
        {
            "model_id": ["m", "m"],
            "prompt_id": ["a", "b"],
            "seed": [0, 0],
            "latency_s": [1.0, None],
            "peak_mem_mb": [10, None],
            "clip_score": [20.0, None],
            "status": ["ok", "error: boom"],
        }
    )
    row = summarize(df).iloc[0]
    assert row.images == 2 and row.failed == 1 and row.latency_mean_s == 1.0
    assert row.clip_score_unscored == 0  # the failed image is a failure, not an unscored one


def test_images_a_metric_left_unscored_are_counted_and_shown():
    df = pd.DataFrame(
        {
            "model_id": ["m"] * 3 + ["n"] * 3,
            "prompt_id": ["a", "b", "c"] * 2,
            "seed": [0] * 6,
            "latency_s": [1.0] * 6,
            "peak_mem_mb": [10] * 6,
            "composition_all": [1.0, None, None, 1.0, 0.0, 1.0],  # the judge unsure of two of m's images
            "status": ["ok"] * 6,
        }
    )
    summary = summarize(df)
    assert list(summary["composition_all_unscored"]) == [2, 0] and summary["composition_all_mean"].iloc[0] == 1.0
    cells = summary_table(summary).data["composition_all ↑ [95% CI]"]
    assert cells.iloc[0].endswith("; 2 unscored") and "unscored" not in cells.iloc[1]


def test_the_comparison_pairs_prompts_and_words_the_verdict(batched_rows, tmp_path):
    rows = pd.concat([batched_rows(m, [0.1] * 8, [0.0] * 8) for m in ("a", "b")], ignore_index=True)
    rows.loc[rows["model_id"] == "b", "clip_score"] += np.linspace(4, 6, 16)  # b better on every prompt
    study = evaluation_report(rows, gpu_hour_cost=3.6)
    (row,) = study.comparisons.to_dict("records")
    assert (row["model_id"], row["reference"], row["n_prompts"], row["win_rate"]) == ("b", "a", 8, 1.0)
    assert row["ci_low"] > 0 and row["p_holm"] < 0.01
    assert study.verdict.startswith("b beats a by 5.00 CLIP points, 95% CI [")
    summary = study.summary.set_index("model_id")
    assert summary.loc["b", "usd_per_image"] == pytest.approx(3.6 * 0.1 / 3600 / 0.5)  # at 50% utilisation
    assert summary.loc["b", "batch_size"] == 2
    study.save(rows, tmp_path)
    saved = read_summary(tmp_path)
    assert saved["reference_model"] == "a" and saved["verdict"] == study.verdict
    assert json.loads((tmp_path / "comparisons.json").read_text())[0]["model_id"] == "b"
    for table in (summary_table(study.summary), comparisons_table(study.comparisons), cost_table(study.summary)):
        assert "<table" in table.to_html()
    p = comparisons_table(study.comparisons).data["p"].iloc[0]
    assert p == "< 0.001" if row["p_value"] < 0.001 else p == f"{row['p_value']:.3f}"
    with pytest.raises(ConfigError, match=r"reference model 'c' is not among the results' models \['a', 'b'\]"):
        paired_comparisons(rows, "c")


def test_a_composition_comparison_is_bounded_by_its_range_and_the_verdict_counts_the_prompts_that_differ(
    batched_rows,
):
    rows = pd.concat([batched_rows(m, [0.1] * 16, [0.0] * 16) for m in ("a", "b")], ignore_index=True)
    rows["composition_all"] = 1.0
    rows.loc[(rows["model_id"] == "b") & (rows["prompt_id"] == "p3"), "composition_all"] = 0.0  # b breaks p3
    study = evaluation_report(rows, metrics=["clip_score", "composition_all"])
    table = study.comparisons.set_index("metric")
    broken = table.loc["composition_all"]
    assert (broken["ci_low"], broken["ci_high"]) == bounded_ci([-1.0] + [0.0] * 15, 1.0)
    assert broken["n_differing"] == 1 and broken["ci_low"] < -0.2
    assert np.isnan(table.loc["clip_score", "ci_low"])  # the same CLIP scores, no range: no interval
    lines = study.verdict.splitlines()
    assert lines[1].startswith(
        "no significant difference between b and a: b - a = -0.06 share of images, 95% CI [-0.28"
    )
    assert "rests on 1 prompt that differs (15 tie)" in lines[1] and "over 2 comparisons on fewer than 7" in lines[1]
    assert "no prompt differs (all 16 tie), and clip_score has no known range" in lines[0]


def test_a_routed_policy_is_compared_with_every_single_model(batched_rows):
    rows = pd.concat([batched_rows(m, [0.1] * 6, [0.0] * 6) for m in ("a", "b", "routed:default")], ignore_index=True)
    rows["routed_model_id"] = np.where(rows["model_id"] == "routed:default", "a", None)  # what a Router's rows say
    table = paired_comparisons(rows, "a")
    assert list(zip(table["model_id"], table["reference"], strict=True)) == [
        ("b", "a"), ("routed:default", "a"), ("routed:default", "b"),
    ]  # fmt: skip
    assert (table["p_holm"] >= table["p_value"]).all()
    against_policy = paired_comparisons(rows, "routed:default")  # the policy as reference: each pair once
    assert list(against_policy["model_id"]) == ["a", "b"]
    rows.loc[rows["model_id"] == "b", "status"] = "error: out of memory"  # b made nothing: left out
    assert list(paired_comparisons(rows, "a")["model_id"]) == ["routed:default"]
    rows.loc[rows["model_id"] == "a", "status"] = "error: out of memory"
    assert paired_comparisons(rows, "a").empty  # no scored reference: nothing to compare, no crash
    assert evaluation_report(rows, "a").verdict.startswith("nothing to compare: no scored images of a")


def test_a_cpu_study_is_priced_as_a_cpu_and_unknown_hardware_is_not_priced(batched_rows):
    rows = batched_rows("a", [0.2] * 3, [0.0] * 3).assign(device="cpu")
    summary = summarize(rows)
    assert (
        summary.loc[0, "gpu"] == "cpu" and summary.loc[0, "usd_per_gpu_hour"] == load_prices().gpus["cpu"].usd_per_hour
    )
    unknown = summarize(rows.assign(device="cuda:0", device_name="NVIDIA GeForce RTX 4090"))
    assert "usd_per_image" not in unknown  # no guess: the table does not list it
    assert "not in the price table: give gpu_type or gpu_hour_cost" in cost_table(unknown).to_html()
    assert summarize(rows.assign(device="cuda:0"), gpu_type="L4").loc[0, "gpu"] == "L4"
