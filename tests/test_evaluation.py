import json

import pandas as pd
import pytest

from workbench.config import GenerationConfig
from workbench.evaluation import ModelEvaluator
from workbench.generation import read_settings
from workbench.metrics import CLIPScorer
from workbench.row import Row
from workbench.run_folder import ResultStore, RunFolder

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
    assert folder.done() == {("m", "", "p0", 0, "h"), ("m", "", "p0", 1, "h")}  # ROW_KEY: no variant here
    assert json.loads((tmp_path / RunFolder.RESULTS).read_text().splitlines()[-1])["seed"] == 1
    stored = folder.rows()[-1]  # reads back as the Row that wrote it
    assert json.dumps(Row.from_dict(stored).to_dict(), sort_keys=True) == json.dumps(stored, sort_keys=True)


def test_the_result_store_still_works_and_names_the_run_folder(tmp_path):
    with pytest.warns(DeprecationWarning, match="RunFolder"):
        store = ResultStore(tmp_path / "r.jsonl")
    store.append([_row(0).to_dict()])
    assert [row["seed"] for row in store.rows()] == [0] and store.done() == {("m", "p0", 0, "h")}


def test_results_are_this_evaluations_rows_even_in_a_shared_folder(tiny_model_dir, tmp_path):
    ModelEvaluator(PROMPTS[:1], [str(tiny_model_dir)], [0], FAST, output_dir=tmp_path).run()
    other = ModelEvaluator(PROMPTS[:1], [str(tiny_model_dir)], [0, 1], FAST.replace(steps=3), output_dir=tmp_path)
    df = other.run()
    assert len(df) == 2 and set(df["steps"]) == {3}
    assert len(other.folder.rows()) == 3
