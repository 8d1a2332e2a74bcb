"""The evaluation engine: batches across prompts, interleaved rounds, images as generate() makes them, timing
and load columns, and sharding over worker processes and Ray actors with the rows of a single run."""

from __future__ import annotations

import os
import signal
import threading
from dataclasses import replace

import numpy as np
import pandas as pd
import psutil
import pytest
import torch
from PIL import Image

from workbench.config import GenerationConfig
from workbench.engine import Unit, plan_batches, worker_devices
from workbench.errors import ConfigError, WorkerLost
from workbench.evaluation import ModelEvaluator
from workbench.generation import generate
from workbench.metrics import CLIPScorer
from workbench.models import load
from workbench.plan import Plan
from workbench.row import SCHEMA_VERSION, TIMING_COLUMNS

MODELS = ["toyworld/sd-small", "toyworld/sd-base"]
PROMPTS = [
    "a red circle in the centre, on a white background",
    "a sketch of a blue square",
    "a green cross on a black background",
    "a small yellow triangle",
    "a large purple circle at the top left",
]
CONFIG = GenerationConfig(steps=3, batch_size=4)


@pytest.fixture
def one_thread():
    """Images are bit-identical only at the same thread count: every run of these tests uses one."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _units(label: str, model: str, prompts: int, seeds: list[int], batch_size: int) -> list[Unit]:
    plan = Plan(model, GenerationConfig(batch_size=batch_size))
    return [Unit(label, f"p{i}", f"prompt {i}", "", s, plan) for i in range(prompts) for s in seeds]


def test_batches_span_prompts_and_rounds_rotate_the_models():
    units = _units("a", "m1", 5, [0, 1], 4) + _units("b", "m2", 5, [0, 1], 4)
    batches = plan_batches(units)
    assert [len(b.units) for b in batches] == [4, 4, 4, 4, 2, 2]
    assert [(b.round, b.units[0].label) for b in batches] == [
        (0, "a"), (0, "b"), (1, "b"), (1, "a"), (2, "a"), (2, "b"),
    ]  # fmt: skip
    assert [u.prompt_id for u in batches[0].units] == ["p0", "p0", "p1", "p1"]  # across prompts
    assert sorted((u.label, u.prompt_id, u.seed) for b in batches for u in b.units) == sorted(
        (u.label, u.prompt_id, u.seed) for u in units
    )
    assert [b.batch_id for b in batches] == list(range(6))


def test_units_of_different_settings_never_share_a_batch():
    fast = Plan("m1", GenerationConfig(steps=2, batch_size=8))
    slow = Plan("m1", GenerationConfig(steps=9, batch_size=8))
    units = [Unit("routed", f"p{i}", "x", "", 0, fast if i % 2 else slow) for i in range(6)]
    batches = plan_batches(units)
    assert len(batches) == 2 and all(len({u.plan.config.steps for u in b.units}) == 1 for b in batches)


def test_worker_devices_spread_a_count_and_refuse_what_is_not_here():
    expected = [f"cuda:{i % torch.cuda.device_count()}" for i in range(3)] if torch.cuda.is_available() else ["cpu"] * 3
    assert worker_devices(3) == expected
    with pytest.raises(ConfigError, match="workers must be a count >= 1 or a list of devices, got 0"):
        worker_devices(0)
    with pytest.raises(ConfigError, match="device 'cuda:7' is not available here"):
        worker_devices(["cpu", "cuda:7"])


def _pixels(path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), dtype=np.int16)


def test_images_equal_single_calls_and_are_bit_identical_for_the_same_batches(tmp_path, one_thread):
    seeds = [0, 1]
    df = ModelEvaluator(PROMPTS, MODELS[:1], seeds, CONFIG, output_dir=tmp_path).run()
    assert list(df["batch_images"]) == [4] * 8 + [2] * 2 and df["batch_id"].nunique() == 3
    assert (df.groupby("batch_id")["latency_s"].nunique() == 1).all()  # batch time / its images, shared
    pipe = load(MODELS[0], device="cpu")
    # Bit-identical to generate() given the same batch, one image per (prompt, seed) across prompts.
    for _, batch in df.groupby("batch_id"):
        records = generate(pipe, list(batch["prompt"]), CONFIG, list(batch["seed"]), pairs=True)
        for record, path in zip(records, batch["image_path"], strict=True):
            assert np.array_equal(np.asarray(record.image, dtype=np.int16), _pixels(tmp_path / path))
    # Within 2/255 of one image at a time (batch composition moves a pixel by at most that).
    for row in df.itertuples():
        (single,) = generate(pipe, row.prompt, CONFIG.replace(batch_size=1), row.seed)
        assert np.abs(np.asarray(single.image, dtype=np.int16) - _pixels(tmp_path / row.image_path)).max() <= 2


def test_rows_record_when_each_batch_ran_and_the_machines_load(tmp_path):
    df = ModelEvaluator(PROMPTS[:2], MODELS, [0], CONFIG.replace(batch_size=2), output_dir=tmp_path).run()
    assert list(df["model_id"]) == [MODELS[0], MODELS[0], MODELS[1], MODELS[1]]
    assert list(df["batch_round"]) == [0, 0, 0, 0] and df["batch_started"].is_monotonic_increasing
    assert df["cpu_busy_other"].between(0, 1).all() and (df["load_avg_1m"] >= 0).all()
    assert df["gpu_util"].isna().all() if not torch.cuda.is_available() else True
    assert (df["schema_version"] == SCHEMA_VERSION).all() and set(df["worker"]) == {"main"}


def _comparable(df: pd.DataFrame, ignore=()) -> pd.DataFrame:
    keep = [c for c in df.columns if c not in (*TIMING_COLUMNS, *ignore)]
    return df[keep].sort_values(["model_id", "prompt_id", "seed"]).reset_index(drop=True)


def _check_same_run(sharded: pd.DataFrame, single: pd.DataFrame, folders, ignore=()) -> None:
    pd.testing.assert_frame_equal(_comparable(sharded, ignore), _comparable(single, ignore))
    for path in single["image_path"]:
        assert np.array_equal(_pixels(folders[0] / path), _pixels(folders[1] / path))


@pytest.fixture(scope="module")
def single_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("single")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        evaluator = ModelEvaluator(PROMPTS, MODELS, [0, 1], CONFIG, output_dir=folder, scorer=CLIPScorer())
        return folder, evaluator.run()
    finally:
        torch.set_num_threads(threads)


@pytest.mark.slow
def test_two_local_workers_make_the_rows_and_images_of_one(single_run, tmp_path):
    folder, single = single_run
    evaluator = ModelEvaluator(
        PROMPTS, MODELS, [0, 1], CONFIG, output_dir=tmp_path, scorer=CLIPScorer(), workers=2, threads=1
    )
    sharded = evaluator.run()
    assert set(sharded["worker"]) == {"worker0:cpu", "worker1:cpu"}
    _check_same_run(sharded, single, (folder, tmp_path))
    lines = (tmp_path / "results.jsonl").read_text().splitlines()
    assert len(lines) == len(single)  # one writer: whole lines, none lost, none twice


@pytest.mark.slow
def test_two_ray_actors_make_the_rows_and_images_of_one(local_ray, single_run, tmp_path):
    folder, single = single_run
    evaluator = ModelEvaluator(
        PROMPTS, MODELS, [0, 1], CONFIG, output_dir=tmp_path, scorer=CLIPScorer(), workers=2, pool="ray", threads=1
    )
    sharded = evaluator.run()
    assert set(sharded["worker"]) == {"actor0:cpu", "actor1:cpu"}
    _check_same_run(sharded, single, (folder, tmp_path))


@pytest.mark.slow
def test_a_worker_killed_mid_batch_loses_only_its_batch_and_a_rerun_finishes(single_run, tmp_path):
    folder, single = single_run
    killed = threading.Event()

    def kill_a_worker(done, total):
        if not killed.is_set():  # the first batch is stored: kill one worker while it runs its next
            worker = psutil.Process().children()[-1]
            os.kill(worker.pid, signal.SIGKILL)
            killed.set()

    def evaluator():
        return ModelEvaluator(
            PROMPTS, MODELS, [0, 1], CONFIG, output_dir=tmp_path, scorer=CLIPScorer(), workers=2, threads=1
        )

    with pytest.raises(WorkerLost, match="run the study again"):
        evaluator().run(progress=kill_a_worker)
    stored = evaluator().results()
    assert 0 < len(stored) < len(single) and not stored.duplicated(["model_id", "prompt_id", "seed"]).any()
    finished = evaluator().run()  # the lost batch again, numbered on from the stored ones
    _check_same_run(finished, single, (folder, tmp_path), ignore=("batch_id", "batch_round"))
    new = finished[~finished["batch_started"].isin(stored["batch_started"])]
    assert new["batch_id"].min() > stored["batch_id"].max() and new["batch_round"].min() > stored["batch_round"].max()
    assert list(finished["model_id"].drop_duplicates()) == MODELS  # rows in the order the models were given


def test_pipeline_objects_cannot_be_sharded(tmp_path):
    pipe = load(MODELS[0], device="cpu")
    with pytest.raises(ConfigError, match="workers load their own pipelines: give model ids"):
        ModelEvaluator(PROMPTS[:1], [pipe], [0], CONFIG, output_dir=tmp_path, workers=2).run()


def test_a_routed_batch_spans_prompts_and_each_image_keeps_its_own_decision(tmp_path):
    from workbench.generation import read_settings
    from workbench.routing import Router

    prompts = ["a watercolor of a red circle", "an oil painting of a blue square"]  # one route, two reasons
    router = Router("toyworld", "keyword")
    df = ModelEvaluator(prompts, [router], [0], CONFIG, output_dir=tmp_path).run()
    assert df["batch_id"].nunique() == 1 and list(df["route"]) == ["artistic", "artistic"]
    assert "'watercolor'" in df.loc[0, "route_reason"] and "'oil painting'" in df.loc[1, "route_reason"]
    for row in df.itertuples():
        assert read_settings(tmp_path / row.image_path)["context"]["route_reason"] == row.route_reason


def test_a_failed_batch_becomes_error_rows_and_a_rerun_makes_it_again(tiny_model_dir, tmp_path):
    pipe = load(str(tiny_model_dir), device="cpu", cache=None)
    forward, calls = pipe.unet.forward, []

    def fails_once(*args, **kwargs):  # the first UNet call of the study fails (not out of memory: no split)
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("device-side assert triggered")
        return forward(*args, **kwargs)

    pipe.unet.forward = fails_once
    config = GenerationConfig(steps=2, batch_size=2)
    first = ModelEvaluator(PROMPTS[:2], [pipe], [0], config, output_dir=tmp_path, warmup=False).run()
    assert list(first["status"]) == ["error: RuntimeError: device-side assert triggered"] * 2
    assert not (tmp_path / "images").exists()  # no image, and no PNG pretending to be one
    again = ModelEvaluator(PROMPTS[:2], [pipe], [0], config, output_dir=tmp_path, warmup=False).run()
    assert list(again["status"]) == ["ok", "ok"] and len(again) == 2  # the error rows are superseded
    assert len((tmp_path / "results.jsonl").read_text().splitlines()) == 4  # and kept in the store


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"pool": "dask"}, r"pool must be one of \['local', 'ray'\], got 'dask'"),
        ({"workers": 0}, "workers must be a count >= 1 or a list of devices, got 0"),
        ({"workers": ["cpu", "cuda:7"]}, "device 'cuda:7' is not available here"),
        ({"workers": "2", "pool": "ray"}, "with pool='ray', workers must be a count >= 1, got '2'"),
        ({"threads": 0}, r"threads must be a whole number >= 1 \(CPU threads per worker\), got 0"),
        ({"seeds": [0, 1, 0]}, r"seeds must not repeat, got \[0, 1, 0\]"),
        ({"seeds": [-1]}, "seeds must be from 0 to"),
    ],
)
def test_bad_sharding_and_seed_options_are_refused_before_anything_runs(tmp_path, options, message):
    seeds = options.pop("seeds", [0])
    with pytest.raises(ConfigError, match=message):
        ModelEvaluator(PROMPTS[:1], MODELS[:1], seeds, CONFIG, output_dir=tmp_path / "run", **options)
    assert not (tmp_path / "run" / "results.jsonl").exists()


def test_the_old_backend_keyword_and_constant_still_work_and_warn(tmp_path):
    import workbench.engine

    old = r"ModelEvaluator\(backend=...\) is deprecated; use .*\(pool=...\)"
    with pytest.warns(DeprecationWarning, match=old), pytest.raises(ConfigError, match="pool must be one of"):
        ModelEvaluator(PROMPTS[:1], MODELS[:1], [0], CONFIG, output_dir=tmp_path / "run", backend="dask")
    with pytest.warns(DeprecationWarning, match="workbench.engine.WORKER_POOLS"):
        assert workbench.engine.WORKER_BACKENDS is workbench.engine.WORKER_POOLS


def test_a_context_column_that_would_overwrite_a_row_column_is_refused_before_any_image():
    plan = Plan("m1", GenerationConfig(), context={"arm": "a"})
    Unit("m1", "p0", "a red circle", "shapes", 0, plan, columns={"rung": 1})  # distinct names: fine
    with pytest.raises(ConfigError, match=r"the row column 'arm' is given twice") as error:
        Unit("m1", "p0", "a red circle", "shapes", 0, plan, columns={"arm": "b"})
    assert error.value.field == "arm"
    for taken in ("prompt", "steps", "image_path"):  # a row's own column, a setting
        with pytest.raises(ConfigError, match=rf"may not name a column the row has already, got \['{taken}'\]"):
            Unit("m1", "p0", "a red circle", "shapes", 0, replace(plan, context={taken: "x"}))
