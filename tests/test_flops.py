"""FLOPs per image, counted on meta tensors, against the published sizes and a hand count."""

from dataclasses import replace

import pytest

from workbench.architectures import ARCHITECTURES, build_architecture
from workbench.errors import ConfigError
from workbench.flops import image_flops, share_of_peak


def test_sd15_flops_match_the_published_size():
    sd15 = image_flops("sd15", 512, 512, steps=30, guidance=7.5)
    # SD 1.5's UNet is about 0.4 TMACs (0.8 TFLOPs) per 512x512 image per step; guidance doubles it.
    assert 1.5e12 < sd15["unet_step_flops"] < 1.8e12 and sd15["denoiser_step_flops"] == sd15["unet_step_flops"]
    assert sd15["image_flops"] == 30 * sd15["unet_step_flops"] + sd15["vae_decode_flops"]
    figures = share_of_peak(1.0, 989e12, "NVIDIA H100 80GB HBM3")
    assert figures["peak_tflops"] == 989.0 and figures["share_of_peak"] == pytest.approx(1.0)
    assert share_of_peak(1.0, 1e12, "cpu")["share_of_peak"] is None


def test_flux_flops_match_a_hand_count():
    """FLUX.1-dev at 1024x1024: 4096 image tokens (64x64 latents packed 2x2) and 512 T5 tokens in one sequence
    through 19 double- and 38 single-stream blocks of width 3072. Each block's linear layers are 12 d^2 MACs per
    token (a double block's two streams each take their own tokens), its attention 2 L^2 d. The adaLN
    modulation, over a quarter of the parameters, sees one vector, which is why 2 x 11.9B x 4608 (1.1e14) overshoots."""
    flux = image_flops("flux", 1024, 1024, steps=28, guidance=3.5)
    d, tokens = 3072, 4096 + 512
    by_hand = 2 * 57 * (12 * d * d * tokens + 2 * tokens * tokens * d)  # 7.44e13
    assert flux["transformer_step_flops"] == pytest.approx(by_hand, rel=0.01)
    assert flux["denoiser_step_flops"] == flux["transformer_step_flops"] and "unet_step_flops" not in flux
    assert flux["image_flops"] == 28 * flux["transformer_step_flops"] + flux["vae_decode_flops"]


def test_guidance_doubles_the_step_unless_the_transformer_is_guidance_distilled(monkeypatch):
    distilled = [image_flops("tiny-flux", 16, 16, 2, g)["transformer_step_flops"] for g in (1.0, 3.5)]
    assert distilled[0] == distilled[1]  # FLUX.1-dev: the scale is an input, one pass
    config = dict(ARCHITECTURES["tiny-flux"].denoiser_config, guidance_embeds=False)
    monkeypatch.setitem(ARCHITECTURES, "tiny-flux", replace(ARCHITECTURES["tiny-flux"], denoiser_config=config))
    true_cfg = [image_flops("tiny-flux", 16, 16, 2, g)["transformer_step_flops"] for g in (1.0, 3.5)]
    assert true_cfg[1] == 2 * true_cfg[0]


@pytest.mark.parametrize(("name", "low", "high"), [("sd3", 2.0e13, 2.5e13), ("pixart-sigma", 1.2e13, 1.45e13)])
def test_sd3_and_pixart_are_counted_with_their_text_and_guidance(name, low, high):
    """At 1024x1024, twice per step (guidance): SD 3.5 Medium with 77 CLIP + 256 T5 tokens about 1.1e13 a
    pass; PixArt-Sigma (0.6B) with 300 T5 tokens about 6.6e12 (2 x 0.52B image-side x 4096 + attention)."""
    flops = image_flops(name, 1024, 1024, steps=20, guidance=4.5)
    assert low < flops["transformer_step_flops"] < high


def test_a_pipeline_counts_as_its_architecture():
    assert image_flops(build_architecture("tiny-flux"), 16, 16, 2, 3.5) == image_flops("tiny-flux", 16, 16, 2, 3.5)
    assert image_flops(build_architecture("tiny"), 16, 16, 2, 5.0) == image_flops("tiny", 16, 16, 2, 5.0)
    with pytest.raises(ConfigError, match=r"'sd99'.*'flux'"):
        image_flops("sd99", 512, 512, 30, 7.5)
