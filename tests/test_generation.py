import contextlib
import threading

import numpy as np
import pandas as pd
import pytest

from workbench.config import GenerationConfig
from workbench.errors import ConfigError, GenerationCancelled
from workbench.generation import calibrate_mag_ratios, generate
from workbench.local_pipeline import default_size, token_budget

FAST = GenerationConfig(steps=3, guidance=4.0)


def pixels(record):
    return np.asarray(record.image, dtype=np.int16)


def test_one_record_per_prompt_and_seed_in_order(tiny_pipe):
    records = generate(tiny_pipe, ["a red circle", "a blue square"], FAST, [3, 1, 2])
    assert [(r.prompt, r.seed) for r in records] == [
        ("a red circle", 3),
        ("a red circle", 1),
        ("a red circle", 2),
        ("a blue square", 3),
        ("a blue square", 1),
        ("a blue square", 2),
    ]


def test_record_holds_settings_and_measurements(tiny_pipe, tiny_model_dir):
    (record,) = generate(tiny_pipe, "a red circle", FAST.replace(negative_prompt="blurry"), 5)
    side = default_size(tiny_pipe)
    assert record.image.size == (side, side)
    assert (record.config.width, record.config.height) == (side, side)
    assert record.model_id == str(tiny_model_dir)
    assert record.scheduler_class == type(tiny_pipe.scheduler).__name__
    assert record.latency_s > 0 and record.peak_mem_mb > 0
    assert record.mem_kind in {"cpu_rss_peak", "cpu_rss_lifetime_peak"}
    assert record.status == "ok"
    row = record.to_row()
    assert row["negative_prompt"] == "blurry" and row["seed"] == 5 and row["steps"] == 3
    assert row["prompt_truncated"] is False


def test_same_seed_same_image_other_seed_other_image(tiny_pipe):
    a, b, c = generate(tiny_pipe, "a red circle", FAST, [7, 7, 8])
    assert np.array_equal(pixels(a), pixels(b))
    assert not np.array_equal(pixels(a), pixels(c))


def test_a_batch_gives_the_same_images_as_single_calls(tiny_pipe):
    seeds = [0, 1, 2, 3]
    batched = generate(tiny_pipe, "a red circle", FAST.replace(batch_size=4), seeds)
    single = generate(tiny_pipe, "a red circle", FAST, seeds)
    for b, s in zip(batched, single, strict=True):
        assert np.abs(pixels(b) - pixels(s)).max() <= 2


def test_a_scheduler_is_used_for_the_call_and_the_pipelines_own_is_restored(tiny_pipe):
    original = tiny_pipe.scheduler
    (record,) = generate(tiny_pipe, "x", FAST.replace(scheduler="ddim"), 0)
    assert record.scheduler_class == "DDIMScheduler"
    assert tiny_pipe.scheduler is original


def test_progress_counts_every_step_of_the_request(tiny_pipe):
    calls = []
    generate(tiny_pipe, ["a", "b"], FAST, [0, 1, 2], progress=lambda step, total: calls.append((step, total)))
    assert calls == [(i, 18) for i in range(1, 19)]


def test_cancel_stops_before_the_vae_decode_and_keeps_finished_images(tiny_pipe):
    decodes, cancel = [], threading.Event()
    original_decode = tiny_pipe.vae.decode

    def counting_decode(*args, **kwargs):
        decodes.append(1)
        return original_decode(*args, **kwargs)

    def progress(step, total):
        if step == 5:  # the second image, second step
            cancel.set()

    tiny_pipe.vae.decode = counting_decode
    with pytest.raises(GenerationCancelled) as error:
        generate(tiny_pipe, "a red circle", FAST, [0, 1, 2], progress=progress, cancel=cancel)
    assert len(error.value.records) == 1 and error.value.records[0].seed == 0
    assert len(decodes) == 1


def test_token_budget_reports_what_the_encoder_drops(tiny_pipe):
    fits = token_budget(tiny_pipe, "a red circle")
    assert not fits.truncated and fits.count == 5 and fits.limit == 77
    words = [f"w{chr(97 + i % 26)}{chr(97 + i // 26)}" for i in range(120)]  # letters only: one word each
    long = token_budget(tiny_pipe, " ".join(words))
    assert long.truncated and long.count > 77
    assert long.dropped_text.split()[-1] == words[-1]
    (record,) = generate(tiny_pipe, " ".join(words), FAST, 0)
    assert record.to_row()["prompt_truncated"] and record.tokens == long


def test_black_and_nan_images_are_flagged(tiny_pipe):
    from workbench.local_pipeline import _status

    assert _status(np.zeros((4, 4, 3))) == "black"
    assert _status(np.full((4, 4, 3), np.nan)) == "nan"
    assert _status(np.full((4, 4, 3), 0.5)) == "ok"


@pytest.mark.parametrize(
    ("prompts", "seeds", "named"),
    [
        ([], 0, "prompts"),
        (["ok", 3], 0, "prompts"),
        ("ok", [-1], "seeds"),
        ("ok", [], "seeds"),
        ("ok", ["1"], "seeds"),
        ("ok", [True], "seeds"),
    ],
)
def test_bad_inputs_are_refused(tiny_pipe, prompts, seeds, named):
    with pytest.raises(ConfigError, match=named):
        generate(tiny_pipe, prompts, FAST, seeds)


def test_a_prompt_table_gives_its_prompts_and_any_other_table_is_refused(tiny_pipe):
    table = pd.DataFrame({"prompt_id": ["p0", "p1"], "prompt": ["a red circle", "a blue square"]})
    assert [r.prompt for r in generate(tiny_pipe, table, FAST, 0)] == ["a red circle", "a blue square"]
    with pytest.raises(ConfigError, match=r"seeds must be a list, got a table with columns \['seed'\]"):
        generate(tiny_pipe, table, FAST, pd.DataFrame({"seed": [0]}))
    with pytest.raises(ConfigError, match=r"prompts must be a list, got a table with columns \['text'\]"):
        generate(tiny_pipe, pd.DataFrame({"text": ["a red circle"]}), FAST, 0)


class ElsewhereBackend:
    """An ImageBackend without a pipeline in this process (as a server's client is)."""

    workbench_model_id = "elsewhere"

    def make_images(self, jobs, config, **kwargs):
        return []

    def accelerated(self, config):
        return contextlib.nullcontext(config)


def test_mag_cache_ratios_need_a_backend_with_a_pipeline_in_this_process():
    with pytest.raises(ConfigError, match="pipeline in this process, got ElsewhereBackend"):
        calibrate_mag_ratios(ElsewhereBackend(), "a prompt")
