"""Real architectures with random weights: published sizes counted on the meta device, pipelines that generate,
and a clear refusal to build what would not fit in memory."""

from dataclasses import replace

import numpy as np
import pytest
import torch

import workbench as wb
from workbench import architectures
from workbench.architectures import ARCHITECTURES, architecture_bytes, architecture_parameters, build_architecture
from workbench.errors import ConfigError, UnknownModelError
from workbench.models import available_models, describe_models, load

T5_XXL = 4_762_310_656  # google/t5-v1_1-xxl's encoder


def test_architectures_have_the_published_sizes():
    """Counted on the meta device: the denoiser only (not the text encoders or the VAE)."""
    assert architecture_parameters("sd15")["unet"] == 859_520_964
    assert architecture_parameters("sdxl")["unet"] == 2_567_463_684
    flux = architecture_parameters("flux")
    assert flux["transformer"] == 11_901_408_320 and flux["text_encoder_2"] == T5_XXL
    # SD 3.5 Medium, announced as 2.5B: the MMDiT-X transformer's parameters; with its fixed 384x384x1536
    # position-embedding table (a buffer in diffusers, a tensor of the published checkpoint) it is 2.47B.
    sd3 = architecture_parameters("sd3")
    assert sd3["transformer"] == 2_243_171_520 and sd3["text_encoder_3"] == T5_XXL
    assert sd3["transformer"] + 384 * 384 * 1536 == 2_469_663_936
    assert architecture_parameters("pixart-sigma")["transformer"] == 610_856_096  # PixArt-Sigma XL: "0.6B"


def test_a_build_that_would_not_fit_is_refused_before_anything_is_built(monkeypatch):
    monkeypatch.setattr(architectures, "_available_memory", lambda device: 40e9)
    assert 67e9 < architecture_bytes("flux") < 68e9  # fp32, with T5-XXL
    with pytest.raises(ConfigError, match=r"arch/flux needs 67\.5 GB of cpu memory .* 40\.0 GB is available"):
        build_architecture("flux")
    with pytest.raises(ConfigError, match=r"arch/flux needs 33\.7 GB of cpu memory for its torch.bfloat16"):
        build_architecture("flux", dtype=torch.bfloat16)  # half the bytes, still over 80% of 40 GB
    with pytest.raises(ConfigError, match=r"arch/sd3 needs 32\.5 GB"):
        load("arch/sd3", device="cpu", cache=None)
    assert type(build_architecture("tiny")).__name__ == "StableDiffusionPipeline"
    half = build_architecture("tiny", dtype=torch.bfloat16)  # made in its dtype (as on a GPU), the default kept
    assert half.unet.dtype == half.text_encoder.dtype == torch.bfloat16 and torch.get_default_dtype() == torch.float32


def test_every_architecture_is_listed_and_unknown_ones_name_the_others():
    assert {f"arch/{name}" for name in ARCHITECTURES} <= set(available_models())
    assert ("arch/flux", ARCHITECTURES["flux"].description) in describe_models()
    with pytest.raises(UnknownModelError, match=r"'arch/sd99'.*'tiny-flux'"):
        build_architecture("sd99")
    with pytest.raises(UnknownModelError, match="arch/sd99"):
        architecture_parameters("sd99")


def _generate(pipe, **kwargs):
    import torch

    return pipe(
        prompt=["a red circle"],
        num_inference_steps=2,
        height=16,
        width=16,
        output_type="np",
        generator=torch.Generator().manual_seed(0),
        **kwargs,
    ).images


def test_tiny_flux_generates_the_same_image_twice():
    pipe = load("arch/tiny-flux", device="cpu", cache=None)
    assert type(pipe).__name__ == "FluxPipeline" and pipe.tokenizer_2.model_max_length == 32
    assert not any(m.training for m in pipe.components.values() if hasattr(m, "training"))  # T5 without dropout
    images = _generate(pipe, max_sequence_length=16)
    assert images.shape == (1, 16, 16, 3)
    np.testing.assert_array_equal(images, _generate(pipe, max_sequence_length=16))


_TINY_CLIP = ("clip-projection", dict(architectures._CLIP_TINY))
_TINY_T5 = ("t5", dict(d_model=32, d_ff=64, d_kv=16, num_heads=2, num_layers=1, feed_forward_proj="gated-gelu"))
_TINY_VAE = dict(ARCHITECTURES["tiny"].vae, scaling_factor=1.0, shift_factor=0.0)


@pytest.mark.parametrize(
    ("name", "denoiser_config", "text_encoders", "call"),
    [
        (
            "sd3",
            dict(
                sample_size=8,
                patch_size=2,
                in_channels=4,
                out_channels=4,
                num_layers=2,
                attention_head_dim=8,
                num_attention_heads=2,
                joint_attention_dim=32,
                caption_projection_dim=16,
                pooled_projection_dim=32,
                pos_embed_max_size=16,
                dual_attention_layers=(0,),
                qk_norm="rms_norm",
            ),
            (_TINY_CLIP, _TINY_CLIP, _TINY_T5),
            dict(max_sequence_length=16),
        ),
        (
            "pixart-sigma",
            dict(
                ARCHITECTURES["pixart-sigma"].denoiser_config,
                sample_size=8,
                num_layers=1,
                num_attention_heads=2,
                attention_head_dim=8,
                cross_attention_dim=16,
                caption_channels=32,
            ),
            (_TINY_T5,),
            dict(max_sequence_length=16, use_resolution_binning=False),
        ),
    ],
)
def test_the_sd3_and_pixart_pipelines_assemble_and_generate(monkeypatch, name, denoiser_config, text_encoders, call):
    """The real architectures' parts, slots and schedulers at a few channels (the real ones need 22-33 GB)."""
    tiny = replace(ARCHITECTURES[name], denoiser_config=denoiser_config, vae=_TINY_VAE, text_encoders=text_encoders)
    monkeypatch.setitem(ARCHITECTURES, name, tiny)
    pipe = build_architecture(name)
    assert type(pipe).__name__ == ARCHITECTURES[name].pipeline
    assert _generate(pipe, **call).shape == (1, 16, 16, 3)
    if name == "sd3":  # through the workbench too: guidance without a negative prompt, the T5 window
        (record,) = wb.generate(pipe, "a red circle", wb.GenerationConfig(steps=2), 0)
        assert record.image.size == (16, 16) and record.status == "ok"
