"""FLOPs per image, and the share of a device's peak that a time per image reaches.

``image_flops`` counts what one image costs, with torch's FlopCounterMode on meta tensors (no memory, a second or
two even for FLUX): the denoiser (a UNet or a diffusion transformer) per step, times the steps, plus the VAE
decode. ``share_of_peak`` turns a measured time per image into achieved TFLOP/s and a share of the peak.
"""

from __future__ import annotations

import torch

from workbench.architectures import ARCHITECTURES
from workbench.errors import ConfigError
from workbench.local_pipeline import max_sequence_length
from workbench.models import denoiser

__all__ = ["PEAK_TFLOPS", "TEXT_TOKENS", "image_flops", "share_of_peak"]

# Dense fp16/bf16 tensor-core peaks (TFLOP/s) from the vendors' data sheets, by device-name fragment.
PEAK_TFLOPS = {
    "H200": 989.0,
    "H100 SXM": 989.0,
    "H100 PCIe": 756.0,
    "H100": 989.0,
    "A100": 312.0,
    "L40S": 362.0,
    "A10G": 125.0,
    "RTX 4090": 165.0,
    "RTX 3090": 71.0,
    "T4": 65.0,
}

# The text tokens each denoiser attends to at its pipeline's defaults: CLIP's 77; FLUX's T5 512; SD3's 77 CLIP
# and 256 T5 (max_sequence_length=256); PixArt-Sigma's T5 300.
TEXT_TOKENS = {
    "UNet2DConditionModel": 77,
    "FluxTransformer2DModel": 512,
    "SD3Transformer2DModel": 77 + 256,
    "PixArtTransformer2DModel": 300,
}


def _forward_flops(module: torch.nn.Module, *args, **kwargs) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.no_grad():
        module(*args, **kwargs)
    return counter.get_total_flops()


def _text_tokens(kind: str, t5_window: int | None) -> int:
    """Text tokens a ``kind`` of denoiser attends to: its pipeline's default, or with the T5 window a
    pipeline really uses (``local_pipeline.max_sequence_length``)."""
    if kind not in TEXT_TOKENS:
        raise ConfigError(f"cannot count the FLOPs of a {kind}; denoisers counted: {sorted(TEXT_TOKENS)}")
    if t5_window is None or kind == "UNet2DConditionModel":
        return TEXT_TOKENS[kind]
    return 77 + t5_window if kind == "SD3Transformer2DModel" else t5_window


def _denoiser_inputs(network: torch.nn.Module, latent_height: int, latent_width: int, tokens: int) -> dict:
    """Meta tensors for one forward of ``network`` on one image's latents and ``tokens`` text tokens."""
    kind, config = type(network).__name__, network.config
    empty = lambda *shape: torch.empty(*shape, device="meta")
    timestep = empty(1)
    if kind == "FluxTransformer2DModel":  # latents packed 2x2 into tokens; positions of image and text tokens
        patches = (latent_height // 2) * (latent_width // 2)
        return {
            "hidden_states": empty(1, patches, config.in_channels),
            "timestep": timestep,
            "encoder_hidden_states": empty(1, tokens, config.joint_attention_dim),
            "pooled_projections": empty(1, config.pooled_projection_dim),
            "img_ids": empty(patches, 3),
            "txt_ids": empty(tokens, 3),
            "guidance": empty(1) if config.guidance_embeds else None,
        }
    latents = empty(1, config.in_channels, latent_height, latent_width)
    if kind == "SD3Transformer2DModel":
        return {
            "hidden_states": latents,
            "timestep": timestep,
            "encoder_hidden_states": empty(1, tokens, config.joint_attention_dim),
            "pooled_projections": empty(1, config.pooled_projection_dim),
        }
    if kind == "PixArtTransformer2DModel":  # Sigma has no size conditioning, Alpha's 1024 models have
        sizes = network.use_additional_conditions
        return {
            "hidden_states": latents,
            "timestep": timestep,
            "encoder_hidden_states": empty(1, tokens, config.caption_channels),
            "added_cond_kwargs": {
                "resolution": empty(1, 2) if sizes else None,
                "aspect_ratio": empty(1, 1) if sizes else None,
            },
        }
    inputs = {
        "sample": latents,
        "timestep": timestep,
        "encoder_hidden_states": empty(1, tokens, config.cross_attention_dim),
    }
    if config.addition_embed_type == "text_time":  # SDXL: pooled text and size conditioning
        pooled = config.projection_class_embeddings_input_dim - 6 * config.addition_time_embed_dim
        inputs["added_cond_kwargs"] = {"text_embeds": empty(1, pooled), "time_ids": empty(1, 6)}
    return inputs


def image_flops(model, height: int, width: int, steps: int, guidance: float) -> dict[str, float]:
    """FLOPs to make one image with ``model``: a pipeline, or an architecture name ("sd15", "sdxl", "flux",
    "sd3", "pixart-sigma", ...; see ``workbench.architectures.ARCHITECTURES``).

    Per step, the denoiser runs once, or twice under classifier-free guidance (``guidance`` > 1): UNets, SD3,
    PixArt and a FLUX transformer without a guidance embedding (true CFG). A guidance-distilled FLUX (FLUX.1-dev:
    ``guidance_embeds``) takes the scale as an input and runs once. Text: CLIP's 77 tokens, and the T5 window
    the pipeline runs with (512 for FLUX, 77 + 256 for SD3, 300 for PixArt; 32 for the toy DiT). Returns
    ``denoiser_step_flops`` (also as ``unet_step_flops`` or ``transformer_step_flops``), ``vae_decode_flops``
    and ``image_flops`` = steps x step + decode.
    """
    import diffusers

    if isinstance(model, str):
        if model not in ARCHITECTURES:
            raise ConfigError(f"unknown architecture {model!r}; architectures: {sorted(ARCHITECTURES)}")
        arch = ARCHITECTURES[model]
        denoiser_class, denoiser_config = getattr(diffusers, arch.denoiser), arch.denoiser_config
        vae_class, vae_config = diffusers.AutoencoderKL, arch.vae
        t5_window = arch.t5_tokens or None
    else:
        network = denoiser(model)
        denoiser_class, denoiser_config = type(network), dict(network.config)
        vae_class, vae_config = type(model.vae), dict(model.vae.config)
        t5_window = max_sequence_length(model)
    with torch.device("meta"):
        network = denoiser_class.from_config(denoiser_config)
        vae = vae_class.from_config(vae_config)
    factor = 2 ** (len(vae.config.block_out_channels) - 1)
    latent_height, latent_width = height // factor, width // factor
    tokens = _text_tokens(type(network).__name__, t5_window)
    one_pass = _forward_flops(network, **_denoiser_inputs(network, latent_height, latent_width, tokens))
    distilled = network.config.get("guidance_embeds", False)
    step = one_pass * (2 if guidance > 1 and not distilled else 1)
    decode = _forward_flops(
        vae.decode, torch.empty(1, vae.config.latent_channels, latent_height, latent_width, device="meta")
    )
    slot = "unet" if isinstance(network, diffusers.UNet2DConditionModel) else "transformer"
    return {
        "denoiser_step_flops": step,
        f"{slot}_step_flops": step,
        "vae_decode_flops": decode,
        "image_flops": step * steps + decode,
    }


def share_of_peak(seconds_per_image: float, flops_per_image: float, device_name: str | None = None) -> dict:
    """Achieved TFLOP/s and its share of the device's peak (None where the device's peak is unknown)."""
    if device_name is None and torch.cuda.is_available():
        device_name = torch.cuda.get_device_name()
    peak = next((v for k, v in PEAK_TFLOPS.items() if device_name and k in device_name), None)
    achieved = flops_per_image / seconds_per_image / 1e12
    return {"device": device_name or "cpu", "achieved_tflops": achieved, "peak_tflops": peak,
            "share_of_peak": achieved / peak if peak else None}  # fmt: skip
