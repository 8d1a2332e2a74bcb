import json

import numpy as np
import pandas as pd
import pytest

from workbench.config import GenerationConfig
from workbench.costs import load_prices
from workbench.errors import ConfigError
from workbench.evaluation import (
    ModelEvaluator,
    compare_models,
    comparisons_table,
    cost_table,
    latency_summary,
    model_comparison,
    priced_gpu,
    summarize,
    summary_table,
)
from workbench.generation import read_settings
from workbench.metrics import CLIPScorer
from workbench.run_folder import ResultStore, Row, RunFolder, read_summary

FAST = GenerationConfig(steps=2, batch_size=2)
PROMPTS = ["a red circle in the centre, on a white background", "a sketch of a blue square", "a green cross"]
COLUMNS = {
    "run_id",
    "model_id",
    "prompt",
    "prompt_id",
    "category",
    "seed",
    "settings_hash",
    "latency_s",
    "peak_mem_mb",
    "mem_kind",
    "clip_score",
    "clip_model",
    "clip_truncated",
    "status",
    "image_path",
}


@pytest.fixture(scope="module")
def scorer():
    return CLIPScorer("toyworld/clip")


def test_one_tidy_row_per_image(tiny_model_dir, tmp_path, scorer):
    evaluator = ModelEvaluator(PROMPTS, [str(tiny_model_dir)], [0, 1], FAST, output_dir=tmp_path, scorer=scorer)
    df = evaluator.run()
    assert len(df) == 6 and set(df.columns) >= COLUMNS
    assert list(zip(df.prompt_id, df.seed, strict=True)) == [
        ("p000", 0),
        ("p000", 1),
        ("p001", 0),
        ("p001", 1),
        ("p002", 0),
        ("p002", 1),
    ]
    assert (df["status"] == "ok").all() and df["clip_score"].between(0, 100).all()
    assert set(df["clip_model"]) == {"toyworld/clip"}
    for row in df.itertuples():
        assert read_settings(tmp_path / row.image_path)["seed"] == row.seed


def test_a_killed_run_resumes_with_exactly_the_missing_rows(tiny_model_dir, tmp_path):
    def stop_after_first_prompt(done, total):
        raise KeyboardInterrupt

    evaluator = ModelEvaluator(PROMPTS, [str(tiny_model_dir)], [0, 1], FAST, output_dir=tmp_path)
    with pytest.raises(KeyboardInterrupt):
        evaluator.run(progress=stop_after_first_prompt)
    first = evaluator.results()
    assert len(first) == 2
    with open(tmp_path / "results.jsonl", "a") as fh:
        fh.write('{"run_id": "run", "model_')  # a line cut short by the kill
    df = ModelEvaluator(PROMPTS, [str(tiny_model_dir)], [0, 1], FAST, output_dir=tmp_path).run()
    assert len(df) == 6
    assert not df.duplicated(["model_id", "prompt_id", "seed"]).any()
    pd.testing.assert_frame_equal(df.iloc[:2].reset_index(drop=True), first)


def _row(seed: int, status: str = "ok") -> Row:
    return Row(run_id="r", model_id="m", prompt_id="p0", prompt="x", category="", seed=seed, settings_hash="h",
               config=GenerationConfig(), status=status)  # fmt: skip


def test_the_run_folder_skips_a_partial_line_and_keeps_an_images_latest_row(tmp_path):
    folder = RunFolder(tmp_path, "r")
    folder.add([_row(0, "error: RuntimeError: out of memory")])
    with open(tmp_path / RunFolder.RESULTS, "a") as fh:
        fh.write('{"seed": ')  # a line cut short by a crash
    folder.add([_row(0), _row(1)])
    assert [row["seed"] for row in folder.rows()] == [0, 0, 1]
    assert [(row["seed"], row["status"]) for row in folder.latest()] == [(0, "ok"), (1, "ok")]
    assert folder.done() == {("m", "p0", 0, "h"), ("m", "p0", 1, "h")}
    assert json.loads((tmp_path / RunFolder.RESULTS).read_text().splitlines()[-1])["seed"] == 1
    stored = folder.rows()[-1]  # reads back as the Row that wrote it
    assert json.dumps(Row.from_dict(stored).to_dict(), sort_keys=True) == json.dumps(stored, sort_keys=True)


def test_the_result_store_still_works_and_names_the_run_folder(tmp_path):
    with pytest.warns(DeprecationWarning, match="RunFolder"):
        store = ResultStore(tmp_path / "r.jsonl")
    store.append([_row(0).to_dict()])
    assert [row["seed"] for row in store.rows()] == [0] and store.done() == {("m", "p0", 0, "h")}


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


def test_results_are_this_evaluations_rows_even_in_a_shared_folder(tiny_model_dir, tmp_path):
    ModelEvaluator(PROMPTS[:1], [str(tiny_model_dir)], [0], FAST, output_dir=tmp_path).run()
    other = ModelEvaluator(PROMPTS[:1], [str(tiny_model_dir)], [0, 1], FAST.replace(steps=3), output_dir=tmp_path)
    df = other.run()
    assert len(df) == 2 and set(df["steps"]) == {3}
    assert len(other.folder.rows()) == 3


def _batched(model: str, latencies: list[float], busy: list[float], images: int = 2) -> pd.DataFrame:
    """Rows of ``model``: one batch per latency (round = its index), ``images`` rows each."""
    rows = []
    for index, (latency, load) in enumerate(zip(latencies, busy, strict=True)):
        for image in range(images):
            rows.append({
                "model_id": model, "prompt_id": f"p{index}", "seed": image, "latency_s": latency,
                "batch_id": f"{model}-{index}", "batch_round": index, "batch_images": images,
                "cpu_busy_other": load, "status": "ok", "peak_mem_mb": 1.0, "clip_score": 50.0 + image,
            })  # fmt: skip
    return pd.DataFrame(rows)


def test_latency_ratio_pairs_rounds_so_a_slow_patch_of_the_machine_cancels():
    slow = [1, 1, 1, 3, 3, 3, 1, 1]  # the machine slowed down three-fold for rounds 3-5: both models alike
    rows = pd.concat([
        _batched("a", [0.1 * f for f in slow], [0.0] * 3 + [0.9] * 3 + [0.0] * 2),
        _batched("b", [0.2 * f for f in slow], [0.0] * 3 + [0.9] * 3 + [0.0] * 2),
    ])  # fmt: skip
    table = latency_summary(rows).set_index("model_id")
    assert table.loc["b", "latency_ratio"] == pytest.approx(2.0)
    assert table.loc["b", "latency_ratio_ci_low"] == pytest.approx(2.0)  # every round says 2
    assert table.loc["a", "latency_median_s"] == pytest.approx(0.1) and table.loc["a", "batches"] == 8
    low, high = table.loc["a", ["latency_median_ci_low", "latency_median_ci_high"]]
    assert low <= 0.1 <= high
    assert table.loc["a", "timing_note"].startswith("noisy timing: per-batch latency varies widely")
    assert "from 0% to 90% of the CPU" in table.loc["a", "timing_note"]


def test_steady_timing_and_a_busy_machine_are_said_in_words():
    steady = latency_summary(_batched("a", [0.1, 0.101, 0.099, 0.1], [0.05] * 4)).iloc[0]["timing_note"]
    assert steady.startswith("steady timing: interquartile range") and "busy" not in steady
    busy = latency_summary(_batched("a", [0.1, 0.101, 0.099, 0.1], [0.6] * 4)).iloc[0]["timing_note"]
    assert busy.startswith("steady timing") and "the machine was busy (other processes used a median 60%" in busy
    few = latency_summary(_batched("a", [0.1, 0.2], [0.0] * 2)).iloc[0]["timing_note"]
    assert few == "only 2 batch(es) timed: too few to judge the timing's noise"


def test_the_comparison_pairs_prompts_and_words_the_verdict(tmp_path):
    rows = pd.concat([_batched(m, [0.1] * 8, [0.0] * 8) for m in ("a", "b")], ignore_index=True)
    rows.loc[rows["model_id"] == "b", "clip_score"] += np.linspace(4, 6, 16)  # b better on every prompt
    study = model_comparison(rows, gpu_hour_cost=3.6)
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
        compare_models(rows, "c")


def test_a_routed_policy_is_compared_with_every_single_model():
    rows = pd.concat([_batched(m, [0.1] * 6, [0.0] * 6) for m in ("a", "b", "routed:default")], ignore_index=True)
    rows["routed_model_id"] = np.where(rows["model_id"] == "routed:default", "a", None)  # what a Router's rows say
    table = compare_models(rows, "a")
    assert list(zip(table["model_id"], table["reference"], strict=True)) == [
        ("b", "a"), ("routed:default", "a"), ("routed:default", "b"),
    ]  # fmt: skip
    assert (table["p_holm"] >= table["p_value"]).all()
    against_policy = compare_models(rows, "routed:default")  # the policy as reference: each pair once
    assert list(against_policy["model_id"]) == ["a", "b"]
    rows.loc[rows["model_id"] == "b", "status"] = "error: out of memory"  # b made nothing: left out
    assert list(compare_models(rows, "a")["model_id"]) == ["routed:default"]
    rows.loc[rows["model_id"] == "a", "status"] = "error: out of memory"
    assert compare_models(rows, "a").empty  # no scored reference: nothing to compare, no crash
    assert model_comparison(rows, "a").verdict.startswith("nothing to compare: no scored images of a")


@pytest.mark.parametrize(
    ("name", "gpu"),
    [
        ("NVIDIA H200", "H200"), ("NVIDIA A100-SXM4-80GB", "A100-80GB"), ("NVIDIA A100-SXM4-40GB", "A100-40GB"),
        ("NVIDIA A100 80GB PCIe", "A100-80GB"), ("Tesla T4", "T4"), ("NVIDIA L4", "L4"), ("NVIDIA L40S", None),
        ("NVIDIA GH200 480GB", None), ("NVIDIA GeForce RTX 4090", None),
    ],
)  # fmt: skip
def test_the_price_is_the_hardware_the_rows_ran_on(name, gpu):
    prices = load_prices()
    assert priced_gpu(pd.DataFrame({"device": ["cuda:1"], "device_name": [name]}), prices) == gpu


def test_a_cpu_study_is_priced_as_a_cpu_and_unknown_hardware_is_not_priced():
    rows = _batched("a", [0.2] * 3, [0.0] * 3).assign(device="cpu")
    summary = summarize(rows)
    assert (
        summary.loc[0, "gpu"] == "cpu" and summary.loc[0, "usd_per_gpu_hour"] == load_prices().gpus["cpu"].usd_per_hour
    )
    unknown = summarize(rows.assign(device="cuda:0", device_name="NVIDIA GeForce RTX 4090"))
    assert "usd_per_image" not in unknown  # no guess: the table does not list it
    assert "not in the price table: give gpu_type or gpu_hour_cost" in cost_table(unknown).to_html()
    assert summarize(rows.assign(device="cuda:0"), gpu_type="L4").loc[0, "gpu"] == "L4"
