from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pytest
import torch

from workbench.architectures import build_architecture
from workbench.errors import ConfigError
from workbench.models import load
from workbench.tgate import TGate

PROMPTS = ["a large red circle on the left, on a white background", "a small blue square at the top"]
STEPS = 6


@pytest.fixture(scope="module")
def pipe():
    return load("toyworld/sd-small", device="cpu", cache=None)


@pytest.fixture(scope="module")
def baseline(pipe):
    """The pipeline's images before any T-GATE (guidance 5)."""
    return images(pipe)


@pytest.fixture(scope="module")
def sdxl():
    """A tiny random SDXL pipeline: the toy tokenizer, two 16-wide text encoders, a text-time UNet."""
    from diffusers import StableDiffusionXLPipeline, UNet2DConditionModel
    from transformers import CLIPTextModelWithProjection

    base = build_architecture("tiny", seed=0)
    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=8,
        block_out_channels=(8, 16),
        layers_per_block=1,
        cross_attention_dim=32,  # both encoders' hidden states side by side
        attention_head_dim=2,
        norm_num_groups=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        addition_embed_type="text_time",
        addition_time_embed_dim=4,
        projection_class_embeddings_input_dim=16 + 6 * 4,  # pooled text + 6 size ids
    )
    return StableDiffusionXLPipeline(
        vae=base.vae,
        text_encoder=base.text_encoder,
        text_encoder_2=CLIPTextModelWithProjection(base.text_encoder.config),
        tokenizer=base.tokenizer,
        tokenizer_2=base.tokenizer,
        unet=unet,
        scheduler=base.scheduler,
        add_watermarker=False,
    )


def images(pipe, tgate=None, guidance=5.0, steps=STEPS, callback=None):
    """Images for PROMPTS, seeds 0 and 1, called as LocalPipeline calls (T-GATE's callback when given)."""
    kwargs = {}
    if tgate is not None:
        kwargs = dict(callback_on_step_end=tgate.step_end, callback_on_step_end_tensor_inputs=[*tgate.tensor_inputs])
    if callback is not None:
        kwargs["callback_on_step_end"] = callback
    generators = [torch.Generator("cpu").manual_seed(seed) for seed in range(len(PROMPTS))]
    return pipe(
        prompt=PROMPTS,
        num_inference_steps=steps,
        guidance_scale=guidance,
        generator=generators,
        output_type="np",
        **kwargs,
    ).images


@contextmanager
def unet_batches(pipe) -> Iterator[list[int]]:
    """The batch size of every UNet forward in the block."""
    sizes: list[int] = []
    hook = pipe.unet.register_forward_pre_hook(lambda module, args: sizes.append(args[0].shape[0]))
    try:
        yield sizes
    finally:
        hook.remove()


@pytest.fixture
def installed():
    """Installs T-GATE; removes every T-GATE installed in the test afterwards, even after a failure."""
    gates: list[TGate] = []

    def install(pipe, gate_step: int) -> TGate:
        tgate = TGate(pipe, gate_step)
        tgate.install()
        gates.append(tgate)
        return tgate

    yield install
    for tgate in gates:
        tgate.remove()


def test_a_gate_at_or_past_the_last_step_changes_nothing(pipe, baseline, installed):
    for gate_step in (STEPS, STEPS + 3):
        tgate = installed(pipe, gate_step)
        assert np.array_equal(images(pipe, tgate), baseline)
        assert pipe.guidance_scale == 5.0
        tgate.remove()


def test_an_early_gate_halves_the_unet_batch_and_changes_images_a_little(pipe, baseline, installed):
    with unet_batches(pipe) as sizes:
        after = images(pipe, installed(pipe, gate_step=4))
    assert sizes == [4] * 4 + [2] * 2  # 2 prompts: CFG doubles the batch until the gate
    assert 0 < np.abs(after - baseline).mean() < 0.05
    assert pipe.guidance_scale == 5.0  # the dropped guidance is put back after the call


def test_remove_restores_the_processors_and_bit_identical_images(pipe, baseline):
    processors = dict(pipe.unet.attn_processors)
    hooks = len(pipe.unet._forward_pre_hooks)
    tgate = TGate(pipe, gate_step=3)
    tgate.install()
    gated = pipe.unet.attn_processors
    assert sum(gated[name] is not processors[name] for name in processors) == len(tgate.layers) > 0
    assert all(name.endswith("attn2.processor") for name in tgate.layers)
    assert not np.array_equal(images(pipe, tgate), baseline)
    tgate.remove()
    assert all(pipe.unet.attn_processors[name] is p for name, p in processors.items())
    assert len(pipe.unet._forward_pre_hooks) == hooks
    assert np.array_equal(images(pipe), baseline)


def test_each_call_starts_afresh_even_after_an_aborted_one(pipe, installed):
    tgate = installed(pipe, gate_step=3)
    first = images(pipe, tgate)
    assert np.array_equal(images(pipe, tgate), first)

    def abort_after_the_gate(pipeline, step, timestep, callback_kwargs):
        callback_kwargs = tgate.step_end(pipeline, step, timestep, callback_kwargs)
        if step == 4:
            raise KeyboardInterrupt
        return callback_kwargs

    with pytest.raises(KeyboardInterrupt):
        images(pipe, tgate, callback=abort_after_the_gate)
    assert np.array_equal(images(pipe, tgate), first)


def test_without_guidance_it_still_gates_cross_attention(pipe, installed):
    before = images(pipe, guidance=1.0)
    with unet_batches(pipe) as sizes:
        after = images(pipe, installed(pipe, gate_step=3), guidance=1.0)
    assert sizes == [2] * STEPS
    assert not np.array_equal(after, before)


def test_sdxl_halves_its_text_and_time_inputs_at_the_gate(sdxl, installed):
    before = images(sdxl)
    tgate = installed(sdxl, gate_step=STEPS)
    assert tgate.tensor_inputs == ["prompt_embeds", "add_text_embeds", "add_time_ids"]
    assert np.array_equal(images(sdxl, tgate), before)
    tgate.remove()
    pooled = []
    hook = sdxl.unet.register_forward_pre_hook(
        lambda module, args, kwargs: pooled.append(kwargs["added_cond_kwargs"]["text_embeds"]), with_kwargs=True
    )
    with unet_batches(sdxl) as sizes:
        gated = images(sdxl, installed(sdxl, gate_step=2))
    hook.remove()
    assert sizes == [4] * 2 + [2] * (STEPS - 2)
    assert not np.array_equal(gated, before)
    # As in the official code, after the gate the pooled text is the unconditional one (zeros: no negative prompt).
    assert pooled[1][2:].abs().sum() > 0 and torch.all(pooled[-1] == 0)


def test_refuses_what_it_cannot_gate(pipe):
    with pytest.raises(ConfigError, match=r"needs a UNet pipeline.*object has no UNet"):
        TGate(object(), gate_step=5)
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ConfigError, match="gate_step must be an integer >= 1") as error:
            TGate(pipe, gate_step=bad)
        assert error.value.field == "gate_step"


def test_refuses_a_unet_without_cross_attention():
    from diffusers import UNet2DConditionModel

    class Pipe:
        unet = UNet2DConditionModel(
            sample_size=8,
            block_out_channels=(8, 16),
            layers_per_block=1,
            norm_num_groups=4,
            down_block_types=("DownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "UpBlock2D"),
            mid_block_type=None,
        )

    with pytest.raises(ConfigError, match="needs cross-attention layers"):
        TGate(Pipe(), gate_step=5)


def test_misuse_fails_clearly(pipe, installed):
    tgate = installed(pipe, gate_step=3)
    with pytest.raises(ConfigError, match="already installed"):
        tgate.install()
    with pytest.raises(ConfigError, match="callback_on_step_end_tensor_inputs"):
        images(pipe, callback=tgate.step_end)  # the callback without its tensors
    with pytest.raises(RuntimeError, match="guidance was not dropped"):
        images(pipe)  # no callback at all
