import json

import numpy as np
import pytest
import torch

from workbench.acceleration_benchmark import benchmark_acceleration
from workbench.config import AccelerationConfig, GenerationConfig
from workbench.errors import ConfigError
from workbench.generation import accelerate, generate, reproduce, save_image
from workbench.models import load
from workbench.stats import bounded_ci

PROMPT = "a large red circle on the left, on a white background"
FAST = GenerationConfig(steps=6)


@pytest.fixture(scope="module")
def pipe():
    return load("toyworld/sd-small", device="cpu", cache=None)


def pixels(pipe, config=FAST, seed=0):
    return np.asarray(generate(pipe, PROMPT, config, seed)[0].image)


TOGGLES = [
    AccelerationConfig(tome_ratio=0.5),
    AccelerationConfig(deepcache_interval=3),
    AccelerationConfig(dtype="bfloat16"),
    AccelerationConfig(attention_backend="eager"),
    AccelerationConfig(attention_backend="sdpa-math"),
    AccelerationConfig(channels_last=True),
    AccelerationConfig(vae_tiling=True, vae_slicing=True),
    AccelerationConfig(tgate_step=3),
    AccelerationConfig(tome_ratio=0.5, deepcache_interval=2, channels_last=True, dtype="bfloat16"),
    AccelerationConfig(tome_ratio=0.5, tgate_step=4),
]


@pytest.mark.parametrize("config", TOGGLES, ids=lambda c: c.label())
def test_each_toggle_applies_and_reverts_bit_identically(pipe, config):
    before = pixels(pipe)
    with accelerate(pipe, config) as applied:
        assert applied == config
        inside = generate(pipe, PROMPT, FAST, 0)[0]
    assert np.array_equal(pixels(pipe), before)  # undone exactly
    assert inside.to_row()["acceleration"] == config.label() and inside.acceleration == config
    if config.changes().keys() & {"tome_ratio", "deepcache_interval", "dtype", "tgate_step"}:  # pixels move
        assert not np.array_equal(np.asarray(inside.image), before)


def test_tome_is_active_on_the_toy_world_at_its_highest_resolution(pipe):
    # Both toy UNets attend at the 16x16 latent level, so ToMe merges tokens there (outputs change).
    before = pixels(pipe)
    with accelerate(pipe, AccelerationConfig(tome_ratio=0.3)):
        assert not np.array_equal(pixels(pipe), before)


def test_a_tome_image_depends_only_on_its_settings_and_seed(pipe):
    # tomesd draws its token partitions from a generator; the workbench seeds it afresh for every pipeline call.
    config = AccelerationConfig(tome_ratio=0.5)
    with accelerate(pipe, config):
        first = pixels(pipe)
        torch.rand(100)  # unrelated draws from torch's global generator
        state = torch.get_rng_state()
        again = pixels(pipe)
        assert torch.equal(torch.get_rng_state(), state)  # generating draws nothing from it
    torch.manual_seed(1234)
    with accelerate(pipe, config):
        fresh = pixels(pipe)
    assert np.array_equal(again, first) and np.array_equal(fresh, first)


def test_reverts_after_an_error_inside_the_block(pipe):
    before = pixels(pipe)
    with pytest.raises(RuntimeError, match="boom"), accelerate(pipe, AccelerationConfig(tome_ratio=0.5)):
        raise RuntimeError("boom")
    assert np.array_equal(pixels(pipe), before)
    with accelerate(pipe):  # usable again: the first block left nothing behind
        assert generate(pipe, PROMPT, FAST, 0)[0].to_row()["acceleration"] == "baseline"


def test_known_pitfalls_are_refused_before_anything_changes(pipe):
    cases = [
        (AccelerationConfig(tome_ratio=0.5, compile=True), "ToMe and torch.compile"),
        (AccelerationConfig(deepcache_interval=3, compile=True), "DeepCache and torch.compile"),
        (
            AccelerationConfig(deepcache_interval=3, cpu_offload=True),
            "DeepCache cannot wrap a pipeline with CPU offload",
        ),
        (AccelerationConfig(cpu_offload=True), "cpu_offload needs the pipeline on a CUDA device, it is on cpu"),
        (AccelerationConfig(tgate_step=3, deepcache_interval=2), "T-GATE and DeepCache do not combine"),
        (AccelerationConfig(tgate_step=3, compile=True), "T-GATE and torch.compile do not combine"),
        (AccelerationConfig(first_block_cache=0.2), "first_block_cache is a cache for transformers"),
        (AccelerationConfig(dtype="float16"), "float16 on the CPU"),
        (AccelerationConfig(attention_backend="sdpa-flash"), "needs CUDA"),
    ]
    before = pixels(pipe)
    for config, message in cases:
        with pytest.raises(ConfigError, match=message), accelerate(pipe, config):
            pass
    assert np.array_equal(pixels(pipe), before) and not hasattr(pipe, "_workbench_acceleration")
    with accelerate(pipe), pytest.raises(ConfigError, match="already accelerated"), accelerate(pipe):
        pass


@pytest.mark.parametrize("config", [AccelerationConfig(deepcache_interval=3), AccelerationConfig(tgate_step=3)])
def test_step_counting_methods_refuse_schedulers_that_repeat_timesteps(pipe, config):
    name = "DeepCache" if config.deepcache_interval > 1 else "T-GATE"
    with accelerate(pipe, config):
        with pytest.raises(ConfigError, match=f"{name} cannot run with HeunDiscreteScheduler"):
            generate(pipe, PROMPT, FAST.replace(scheduler="heun"), 0)
        generate(pipe, PROMPT, FAST.replace(scheduler="euler"), 0)  # a single-step scheduler is fine


def test_tome_refuses_a_unet_without_attention_at_the_merge_level(pipe):
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel

    unet = UNet2DConditionModel(
        sample_size=16, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(8, 16),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=pipe.text_encoder.config.hidden_size, norm_num_groups=8,
    )  # fmt: skip
    like_sdxl = StableDiffusionPipeline(**{**pipe.components, "unet": unet})
    with (
        pytest.raises(ConfigError, match=r"would change nothing.*attention only at downsampling \[2\]"),
        accelerate(like_sdxl, AccelerationConfig(tome_ratio=0.5)),
    ):
        pass
    with accelerate(like_sdxl, AccelerationConfig(tome_ratio=0.5, tome_max_downsample=2)):
        pass


def test_bad_settings_are_named():
    with pytest.raises(ConfigError, match="deepcache_interval must be an integer from 1 to 50, got 0"):
        AccelerationConfig(deepcache_interval=0)
    with pytest.raises(ConfigError, match="attention_backend must be one of"):
        AccelerationConfig(attention_backend="flash3")
    with pytest.raises(ConfigError, match="unknown AccelerationConfig field"):
        AccelerationConfig.from_dict({"tome": 0.5})
    with pytest.raises(ConfigError, match=r"first_block_cache must be a number from 0\.0 to 10\.0, got -0\.1"):
        AccelerationConfig(first_block_cache=-0.1)
    for name in ("taylorseer_interval", "faster_cache_interval", "pab_interval"):
        with pytest.raises(ConfigError, match=f"{name} must be an integer from 1 to 50, got 0"):
            AccelerationConfig(**{name: 0})
    with pytest.raises(ConfigError, match=r"tgate_step must be an integer from 0 \(off\) to 1000, got True"):
        AccelerationConfig(tgate_step=True)
    with pytest.raises(ConfigError, match=r"mag_ratios must be positive numbers.*got \(1\.0, -1\.0\)"):
        AccelerationConfig(mag_cache=0.1, mag_ratios=(1.0, -1.0))
    with pytest.raises(ConfigError, match=r"set mag_cache > 0 with them, got 3 ratios and mag_cache=0\.0"):
        AccelerationConfig(mag_ratios=[1.0, 0.9, 0.9])
    assert AccelerationConfig(mag_cache=0.1, mag_ratios=[1, 0.9]).mag_ratios == (1.0, 0.9)  # a list from JSON


def test_an_accelerated_image_reproduces_with_its_toggles(pipe, tmp_path):
    with accelerate(pipe, AccelerationConfig(deepcache_interval=2)):
        record = generate(pipe, PROMPT, FAST, 7, model_id="toyworld/sd-small")[0]
    result = reproduce(save_image(record, tmp_path), device="cpu")
    assert result.record.acceleration == AccelerationConfig(deepcache_interval=2) and result.max_abs_diff <= 2


def test_benchmark_compares_with_the_baseline_interleaved(pipe):
    configs = [AccelerationConfig(deepcache_interval=3), AccelerationConfig(vae_slicing=True)]
    result = benchmark_acceleration(pipe, [PROMPT], [0, 1], configs, config=FAST, rounds=1, metrics=["composition_all"])
    table = result.table.set_index("config")
    assert list(table.index) == ["baseline", "deepcache_interval=3", "vae_slicing"]
    assert table.loc["baseline", "speedup_total"] == 1.0 and table.loc["baseline", "ssim"] == pytest.approx(1.0)
    assert table.loc["deepcache_interval=3", "changed"] and not table.loc["vae_slicing", "changed"]
    assert (table["denoiser_s_per_image"] > 0).all() and (table["speedup_total"] > 0).all()  # speed: benchmarks/
    assert 0 < table.loc["deepcache_interval=3", "ssim"] < 1 and len(result.rows) == 6
    assert set(result.images) >= {("baseline", PROMPT, 0), ("deepcache_interval=3", PROMPT, 1)}
    # an image identical to its baseline reads as identical (inf dB), never NaN
    assert table.loc["baseline", "psnr"] == np.inf and table.loc["vae_slicing", "psnr"] == np.inf
    assert np.isfinite(table.loc["deepcache_interval=3", "psnr"])
    # composition's change: by its range, so identical images still get an interval; the baseline's is 0 by construction
    interval = ["composition_all_delta_ci_low", "composition_all_delta_ci_high"]
    assert tuple(table.loc["vae_slicing", interval]) == bounded_ci([0.0, 0.0], 1.0)
    assert tuple(table.loc["baseline", interval]) == (0.0, 0.0)
    rows = result.rows.set_index(["config", "seed"])["composition_all"]
    paired = (rows["deepcache_interval=3"] - rows["baseline"]).to_numpy()
    assert tuple(table.loc["deepcache_interval=3", interval]) == bounded_ci(paired, 1.0)


def test_mean_psnr_is_inf_for_identical_images_and_skips_them_otherwise():
    import pandas as pd

    from workbench.acceleration_benchmark import _mean_psnr

    assert _mean_psnr(pd.Series([np.inf, np.inf])) == np.inf
    assert _mean_psnr(pd.Series([np.inf, 30.0, 20.0])) == 25.0
    assert np.isnan(_mean_psnr(pd.Series([], dtype=float)))


@pytest.mark.slow
def test_compile_applies_and_reverts(pipe):
    """torch.compile of the UNet and VAE decoder (about a minute and a half to compile on a CPU)."""
    before = pixels(pipe)
    with accelerate(pipe, AccelerationConfig(compile=True)):
        assert type(pipe.unet).__name__ == "OptimizedModule"
        inside = pixels(pipe)
    assert type(pipe.unet).__name__ == "UNet2DConditionModel" and np.array_equal(pixels(pipe), before)
    assert np.abs(inside.astype(int) - before).max() <= 2  # the same model, compiled: last-bit differences only


@pytest.mark.slow
def test_the_acceleration_notebook_runs_headlessly_into_a_report(tmp_path):
    from pathlib import Path

    import pandas as pd

    from workbench.run_folder import RunFolder, read_summary
    from workbench.studies import run_study

    notebook = Path(__file__).parent.parent / "notebooks" / "05_acceleration.ipynb"
    params = {"models": ["toyworld/dit-small", "toyworld/sd-small"], "n_prompts": 2, "steps": 4, "rounds": 1}
    run = run_study(notebook, params, output_root=tmp_path, progress=False)
    table = pd.DataFrame(read_summary(run.folder)["rows"])
    configs = table.groupby("model")["config"].apply(set)
    dit_configs = {"baseline", "first_block_cache=0.05", "taylorseer_interval=2", "mag_cache=0.06", "steps=2"}
    assert dit_configs <= configs["toyworld/dit-small"]
    assert not any(c.startswith(("pab", "faster_cache")) for c in configs["toyworld/dit-small"])  # true CFG
    assert {"baseline", "deepcache_interval=3", "tgate_step=1", "tgate_step=2", "steps=2"} <= configs[
        "toyworld/sd-small"
    ]
    unet_methods, caches = ("deepcache", "tome", "tgate"), ("first_block", "taylorseer", "faster_cache", "pab", "mag")
    assert not any(c.startswith(unet_methods) for c in configs["toyworld/dit-small"])
    assert not any(c.startswith(caches) for c in configs["toyworld/sd-small"])
    assert table.loc[table["config"] == "steps=2", "changed"].all()
    assert table["composition_all"].between(0, 1).all() and table["speedup_denoiser"].gt(0).all()
    assert run.report.read_text().count("data:image/png;base64") >= 4  # the Pareto plots and the images
    rows = RunFolder(run.folder).results()  # every variant's images and rows, stored through the run folder
    assert set(rows["variant"]) == set(table["config"]) and rows["image_path"].notna().all()
    assert len(rows) == len(table) * 2 and set(rows["run_id"]) == {run.folder.name}
    assert {"clip_score", "composition"} <= set(json.loads((run.folder / "provenance.json").read_text()))
