"""Diffusion transformers: the toy DiT through the same code as the UNets, guidance, and the transformer caches
(applied and reverted bit-identically, refused where they do not apply, batch mates recorded)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import workbench as wb
from workbench.acceleration import accelerate_pipeline
from workbench.architectures import build_architecture
from workbench.config import AccelerationConfig, GenerationConfig
from workbench.errors import ConfigError
from workbench.generation import read_settings, reproduce, reproduction_code, save_image
from workbench.local_pipeline import default_size, guidance_arguments, max_sequence_length, token_budget
from workbench.mag_cache import mag_ratios_for
from workbench.metric_validity import toy_prompts
from workbench.plan import resolve, run_plan
from workbench.prompts import PromptOptimizer
from workbench.toyworld.judge import judge_images

DIT = "toyworld/dit-small"
PROMPTS = ["a red circle on a white background", "a photo of a small blue square on the left, on a black background"]
# (cache, guidance): FasterCache and PAB keep one state for all calls, so they run without true CFG.
CACHES = [
    (AccelerationConfig(first_block_cache=0.3), 5.0),
    (AccelerationConfig(taylorseer_interval=3), 5.0),
    (AccelerationConfig(mag_cache=0.24), 5.0),  # the ratios the toy DiT ships (a state per branch)
    (AccelerationConfig(faster_cache_interval=2), 1.0),
    (AccelerationConfig(pab_interval=2), 1.0),
]


@pytest.fixture(scope="module")
def dit():
    return wb.load(DIT, device="cpu", cache=None)


def _pixels(records) -> list[np.ndarray]:
    return [np.asarray(r.image, dtype=np.int16) for r in records]


def _refused(pipe, config: AccelerationConfig, match: str) -> None:
    with pytest.raises(ConfigError, match=match), accelerate_pipeline(pipe, config):
        pass


def _make(pipe, steps: int = 8, batch_size: int = 2, **settings):
    config = GenerationConfig(steps=steps, batch_size=batch_size, **settings)
    return wb.generate(pipe, PROMPTS, config, seeds=[0, 1])


def test_the_toy_dit_loads_like_any_model_and_is_listed(dit):
    assert type(dit).__name__ == "FluxPipeline" and type(dit.transformer).__name__ == "FluxTransformer2DModel"
    assert DIT in wb.available_models()
    assert default_size(dit) == 32
    assert max_sequence_length(dit) == dit.tokenizer_2.model_max_length < 512  # the T5 is not padded to 512
    records = _make(dit, steps=4)
    assert [r.image.size for r in records] == [(32, 32)] * 4 and {r.status for r in records} == {"ok"}


def test_guidance_is_true_cfg_on_the_toy_dit_and_steers_it(dit):
    assert guidance_arguments(dit, 5.0, None, 2) == {"true_cfg_scale": 5.0, "negative_prompt": ["", ""]}
    assert guidance_arguments(dit, 5.0, "blurry", 1) == {"true_cfg_scale": 5.0, "negative_prompt": ["blurry"]}
    assert guidance_arguments(dit, 1.0, None, 1) == {"true_cfg_scale": 1.0}
    # Guidance steers it: more of what the prompts ask for is drawn (the judge, 32 toy captions).
    prompts = list(toy_prompts(32, seed=3)["prompt"])
    accuracy = {}
    for guidance in (5.0, 1.0):
        images = [r.image for r in wb.generate(dit, prompts, GenerationConfig(guidance=guidance, batch_size=32))]
        judged = judge_images(images, prompts)
        accuracy[guidance] = np.mean([j.composition for j in judged if j.composition is not None])
    assert accuracy[5.0] > accuracy[1.0], accuracy


def test_a_guidance_distilled_flux_takes_guidance_as_its_embedding_and_refuses_negative_prompts():
    pipe = build_architecture("tiny-flux")
    assert pipe.transformer.config.guidance_embeds
    assert guidance_arguments(pipe, 3.5, None, 1) == {"guidance_scale": 3.5}
    with pytest.raises(ConfigError, match="guidance-distilled"):
        guidance_arguments(pipe, 3.5, "blurry", 1)
    # the prompt optimizer's negative prompt is left out for it (a user's own is refused, above)
    assert PromptOptimizer(pipe).optimize("a red circle").negative_prompt
    plan = resolve(pipe, "a red circle", GenerationConfig(steps=2, guidance=3.5))
    [record] = run_plan(plan, "a red circle", 0, optimize=True)
    assert record.status == "ok" and record.prompt != "a red circle" and not record.config.negative_prompt


def test_the_token_budget_counts_the_t5_window(dit):
    window = dit.tokenizer_2.model_max_length
    long_prompt = " ".join(["red"] * (window + 5))
    budget = token_budget(dit, long_prompt)
    assert budget.limit == window and budget.truncated


def test_batches_do_not_change_the_toy_dit_images(dit):
    batched, single = _pixels(_make(dit, batch_size=4)), _pixels(_make(dit, batch_size=1))
    assert all(np.abs(a - b).max() <= 2 for a, b in zip(batched, single, strict=True))


@pytest.mark.parametrize(("config", "guidance"), CACHES, ids=lambda c: c.label() if hasattr(c, "label") else c)
def test_each_cache_changes_images_inside_its_block_and_reverts_bit_identically(dit, config, guidance):
    before = _pixels(_make(dit, steps=12, guidance=guidance))
    with wb.accelerate(dit, config):
        cached = _make(dit, steps=12, guidance=guidance)
        again = _make(dit, steps=12, guidance=guidance)  # the state is cleared before each call: nothing carries over
    after = _pixels(_make(dit, steps=12, guidance=guidance))
    assert not dit.transformer.is_cache_enabled
    assert all(np.array_equal(a, b) for a, b in zip(before, after, strict=True))
    assert all(np.array_equal(a, b) for a, b in zip(_pixels(cached), _pixels(again), strict=True))
    assert {r.to_row()["acceleration"] for r in cached} == {config.label()}
    assert any(np.abs(a - b).max() > 0 for a, b in zip(before, _pixels(cached), strict=True))


@pytest.mark.parametrize("config", [AccelerationConfig(faster_cache_interval=2), AccelerationConfig(pab_interval=2)])
def test_one_state_caches_are_refused_under_true_cfg(dit, config):
    with wb.accelerate(dit, config), pytest.raises(ConfigError, match=r"guidance 5\.0.*true CFG.*guidance <= 1"):
        _make(dit, steps=4)


def test_a_scheduler_name_is_refused_on_a_flow_matching_model(dit):
    with pytest.raises(ConfigError, match=r"scheduler 'dpm\+\+'.*flow-matching.*FlowMatchEulerDiscreteScheduler"):
        _make(dit, steps=4, scheduler="dpm++")


def test_unet_methods_are_refused_on_a_transformer(dit):
    for config, named in [
        (AccelerationConfig(tome_ratio=0.5), "ToMe"),
        (AccelerationConfig(deepcache_interval=3), "DeepCache"),
        (AccelerationConfig(tgate_step=5), "T-GATE"),
        (AccelerationConfig(channels_last=True), "channels-last"),
        (AccelerationConfig(attention_backend="eager"), "attention_backend 'eager'"),
    ]:
        _refused(dit, config, f"{named}.*apply to UNets.*FluxTransformer2DModel")
    assert not dit.transformer.is_cache_enabled


def test_transformer_caches_are_refused_on_a_unet_and_without_cache_mixin(tiny_pipe):
    _refused(
        tiny_pipe, AccelerationConfig(first_block_cache=0.2), r"first_block_cache is a cache.*UNet2DConditionModel"
    )
    from diffusers import SD3Transformer2DModel

    sd3 = SD3Transformer2DModel(
        sample_size=8, patch_size=2, in_channels=4, num_layers=1, attention_head_dim=8, num_attention_heads=2,
        joint_attention_dim=16, caption_projection_dim=16, pooled_projection_dim=16, out_channels=4,
    )  # fmt: skip
    pipe = SimpleNamespace(transformer=sd3, device=torch.device("cpu"))
    _refused(pipe, AccelerationConfig(pab_interval=2), r"pab_interval is a cache.*SD3Transformer2DModel has none")


def test_caches_refuse_compile_a_second_cache_and_a_cache_already_on(dit):
    with pytest.raises(ConfigError, match="one transformer cache at a time"):
        AccelerationConfig(first_block_cache=0.2, taylorseer_interval=3)
    _refused(dit, AccelerationConfig(first_block_cache=0.2, compile=True), r"torch\.compile")
    from diffusers import FirstBlockCacheConfig

    dit.transformer.enable_cache(FirstBlockCacheConfig(threshold=0.1))
    try:
        _refused(dit, AccelerationConfig(pab_interval=2), "already has a cache enabled")
    finally:
        dit.transformer.disable_cache()


def test_mag_cache_ratios_match_diffusers_calibration_and_the_toy_dit_ships_its_own(dit, capsys):
    from diffusers import MagCacheConfig

    config = GenerationConfig(steps=6)
    ratios = wb.calibrate_mag_ratios(dit, PROMPTS[0], config)
    assert len(ratios) == 6 and ratios[0] == 1.0
    dit.transformer.enable_cache(MagCacheConfig(calibrate=True, num_inference_steps=6))
    try:
        wb.generate(dit, PROMPTS[0], config)  # diffusers prints one list per branch (cond, uncond)
    finally:
        dit.transformer.disable_cache()
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("[1.0")]
    assert len(printed) == 2 and np.allclose(ratios, np.mean(printed, axis=0), atol=1e-4)
    shipped = mag_ratios_for(dit)  # written by its training
    assert shipped is not None and len(shipped) == 20
    with wb.accelerate(dit, AccelerationConfig(mag_cache=0.24)) as applied:
        [record] = wb.generate(dit, PROMPTS[0], config)
    assert applied.mag_ratios == shipped and record.acceleration.mag_ratios == shipped  # recorded: reproducible
    assert record.to_row()["acceleration"] == "mag_cache=0.24"


def test_mag_cache_skips_steps_at_every_step_count_and_is_refused_without_ratios(dit):
    ratios = wb.calibrate_mag_ratios(dit, PROMPTS, GenerationConfig(steps=12))
    computed = []  # the tail block's inner norm runs only where the blocks compute
    handle = dit.transformer.single_transformer_blocks[-1].norm.register_forward_hook(lambda *_: computed.append(1))
    try:
        with wb.accelerate(dit, AccelerationConfig(mag_cache=1.0, mag_ratios=ratios)):
            for n in (5, 12, 5):  # ratios of 12 steps, interpolated to each call's steps, in one block
                computed.clear()
                _make(dit, steps=n, batch_size=4)
                # steps under retention (20%) compute, then at most 3 skipped in a row; 2 calls a step (true CFG)
                assert 2 * (n // 4 + 1) <= len(computed) < 2 * n, (n, len(computed))
    finally:
        handle.remove()
    tiny = build_architecture("tiny-flux")
    _refused(tiny, AccelerationConfig(mag_cache=0.1), r"mag_cache needs magnitude ratios.*calibrate_mag_ratios")
    with wb.accelerate(dit, AccelerationConfig(mag_cache=0.1)), pytest.raises(ConfigError, match="outside an accel"):
        wb.calibrate_mag_ratios(dit, PROMPTS[0])


def test_the_private_diffusers_names_the_mag_ratio_meter_uses_are_still_there():
    import diffusers
    from diffusers.models.transformers.transformer_flux import FluxSingleTransformerBlock, FluxTransformerBlock

    from workbench.mag_cache import _diffusers_blocks

    try:
        block_lists, registry = _diffusers_blocks()
        meta = [registry.get(block) for block in (FluxTransformerBlock, FluxSingleTransformerBlock)]
        found = [(m.hidden_states_argument_name, m.return_hidden_states_index) for m in meta]
    except (ImportError, AttributeError, ValueError) as error:
        pytest.fail(
            f"diffusers {diffusers.__version__} moved or changed private names that workbench.mag_cache's "
            "MagRatioMeter uses (diffusers.hooks._common._ALL_TRANSFORMER_BLOCK_IDENTIFIERS; "
            "diffusers.hooks._helpers.TransformerBlockRegistry.get(cls), with hidden_states_argument_name and "
            f"return_hidden_states_index): {type(error).__name__}: {error}. See workbench.mag_cache._diffusers_blocks."
        )
    assert {"transformer_blocks", "single_transformer_blocks"} <= set(block_lists), block_lists
    assert found == [("hidden_states", 1), ("hidden_states", 1)], found


@pytest.mark.parametrize("text", ["{not json", '{"ratios": [1.0, 0.9]}', '{"mag_ratios": [1.0, -0.9]}'])
def test_a_bad_mag_ratios_file_is_named(tmp_path, text):
    (tmp_path / "mag_ratios.json").write_text(text)
    with pytest.raises(ConfigError, match=r"mag_ratios\.json does not hold MagCache ratios"):
        mag_ratios_for(SimpleNamespace(name_or_path=str(tmp_path)))


def test_the_first_block_cache_records_each_images_batch_and_reproduce_rebuilds_it(dit, tmp_path):
    config = AccelerationConfig(first_block_cache=0.3)
    assert config.batch_dependent and not AccelerationConfig(pab_interval=2).batch_dependent
    with wb.accelerate(dit, config):
        records = _make(dit, steps=12, batch_size=4)
    jobs = tuple((p, s) for p in PROMPTS for s in (0, 1))
    assert all(r.batch == jobs for r in records)
    assert json.loads(records[1].to_row()["batch"]) == [list(job) for job in jobs]  # one JSON column
    namespace = {}
    exec(reproduction_code(records[1]), namespace)  # "copy settings" makes the batch again, and picks the image
    assert namespace["records"][0].image.tobytes() == records[1].image.tobytes()
    path = save_image(records[1], tmp_path)
    assert read_settings(path)["batch"] == [list(job) for job in jobs]
    result = reproduce(path, tolerance=0)
    assert result.matches and result.max_abs_diff == 0

    # Without its batch in the metadata the image cannot be made again, and reproduce says why.
    bare = save_image(records[1].__class__(**{**records[1].__dict__, "batch": ()}), tmp_path / "bare")
    with pytest.raises(ConfigError, match="depend on the other images of its batch"):
        reproduce(bare)


def test_toggles_that_do_not_depend_on_batch_mates_record_no_batch(dit):
    with wb.accelerate(dit, AccelerationConfig(taylorseer_interval=2)):
        records = _make(dit, steps=6)
    assert all(r.batch == () for r in records) and "batch" not in records[0].to_row()
