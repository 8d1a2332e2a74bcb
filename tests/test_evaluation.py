import json

import pandas as pd
import pytest

from workbench.config import GenerationConfig
from workbench.evaluation import ModelEvaluator, summarize
from workbench.generation import read_settings
from workbench.metrics import CLIPScorer
from workbench.results import ResultStore

FAST = GenerationConfig(steps=2, batch_size=2)
PROMPTS = ["a red circle in the centre, on a white background", "a sketch of a blue square", "a green cross"]
COLUMNS = {
    "run_id",
    "model_id",
    "prompt",
    "prompt_id",
    "category",
    "seed",
    "settings",
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


def test_store_skips_a_partial_line(tmp_path):
    store = ResultStore(tmp_path / "r.jsonl")
    store.append([{"a": 1}])
    with open(store.path, "a") as fh:
        fh.write('{"a": ')
    store.append([{"a": 2}])
    assert store.rows() == [{"a": 1}, {"a": 2}]
    assert json.loads(store.path.read_text().splitlines()[-1]) == {"a": 2}


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
    assert m.clip_mean == 40.0  # the mean of the prompt means (20, 60), not of the images (30)
    assert m.clip_ci_low <= m.clip_mean <= m.clip_ci_high
    assert m.cost_per_image == pytest.approx(3.6 * 4.0 / 3600)
    assert summary.loc["n"].clip_mean == 6.0


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
    assert len(other.store.rows()) == 3
