"""Real text-to-image architectures with seeded random weights: speed, memory and FLOP work without downloads.

``ARCHITECTURES`` holds each pipeline's parts as their published configs (denoiser, VAE, text encoders,
scheduler). ``build_architecture`` makes the diffusers pipeline with random weights on the CPU (the model id
``arch/<name>`` loads it through ``workbench.models``) and refuses one whose weights would not fit in memory;
``architecture_parameters`` and ``architecture_bytes`` size every part on the meta device (no memory, about a
second). The toy world's tokenizer serves every tokenizer slot: its ids are valid in any vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from workbench.errors import ConfigError, UnknownModelError

__all__ = ["ARCHITECTURES", "Architecture", "architecture_bytes", "architecture_parameters", "build_architecture"]


@dataclass(frozen=True)
class Architecture:
    """A pipeline as configs. ``pipeline``, ``denoiser`` and ``scheduler[0]`` name diffusers classes; each text
    encoder is (kind, config), kind "clip" (CLIPTextModel), "clip-projection" (CLIPTextModelWithProjection) or
    "t5" (T5EncoderModel), a config without ``vocab_size`` taking the toy tokenizer's. ``t5_tokens`` is the T5
    tokenizer's ``model_max_length`` (the pipeline's default T5 length; calls may ask for fewer)."""

    description: str
    pipeline: str
    denoiser: str
    denoiser_config: dict
    vae: dict
    text_encoders: tuple[tuple[str, dict], ...]
    scheduler: tuple[str, dict]
    t5_tokens: int = 0

    @property
    def denoiser_slot(self) -> str:
        """The pipeline's name for the denoiser: "unet" or "transformer"."""
        return "unet" if self.denoiser == "UNet2DConditionModel" else "transformer"


_SD_VAE = dict(
    block_out_channels=(128, 256, 512, 512),
    layers_per_block=2,
    latent_channels=4,
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
)
# SD3's and FLUX's VAE: 16 latent channels, no quant convs, latents shifted then scaled.
_VAE_16 = dict(_SD_VAE, latent_channels=16, sample_size=1024, use_quant_conv=False, use_post_quant_conv=False)
_CLIP_L = dict(
    vocab_size=49408,
    hidden_size=768,
    intermediate_size=3072,
    num_hidden_layers=12,
    num_attention_heads=12,
    hidden_act="quick_gelu",
    projection_dim=768,
)
_CLIP_G = dict(
    vocab_size=49408,
    hidden_size=1280,
    intermediate_size=5120,
    num_hidden_layers=32,
    num_attention_heads=20,
    hidden_act="gelu",
    projection_dim=1280,
)
_T5_XXL = dict(  # google/t5-v1_1-xxl's encoder: 4.76B parameters
    vocab_size=32128, d_model=4096, d_ff=10240, d_kv=64, num_heads=64, num_layers=24, feed_forward_proj="gated-gelu"
)
_CLIP_TINY = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, projection_dim=16)
_SD_SCHEDULER = (
    "EulerDiscreteScheduler",
    dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1),
)
_FLUX_SCHEDULER = (
    "FlowMatchEulerDiscreteScheduler",
    dict(
        shift=3.0,
        use_dynamic_shifting=True,
        base_shift=0.5,
        max_shift=1.15,
        base_image_seq_len=256,
        max_image_seq_len=4096,
    ),
)

ARCHITECTURES = {
    "sd15": Architecture(
        "Stable Diffusion 1.5 (860M-param UNet, 512x512), random weights",
        pipeline="StableDiffusionPipeline",
        denoiser="UNet2DConditionModel",
        denoiser_config=dict(
            sample_size=64,
            block_out_channels=(320, 640, 1280, 1280),
            layers_per_block=2,
            cross_attention_dim=768,
            attention_head_dim=8,
            down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
            up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        ),
        vae=dict(_SD_VAE, sample_size=512, scaling_factor=0.18215),
        text_encoders=(("clip", _CLIP_L),),
        scheduler=_SD_SCHEDULER,
    ),
    "sdxl": Architecture(
        "Stable Diffusion XL base (2.6B-param UNet, 1024x1024), random weights",
        pipeline="StableDiffusionXLPipeline",
        denoiser="UNet2DConditionModel",
        denoiser_config=dict(
            sample_size=128,
            block_out_channels=(320, 640, 1280),
            layers_per_block=2,
            cross_attention_dim=2048,
            attention_head_dim=(5, 10, 20),
            transformer_layers_per_block=(1, 2, 10),
            use_linear_projection=True,
            addition_embed_type="text_time",
            addition_time_embed_dim=256,
            projection_class_embeddings_input_dim=2816,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        ),
        vae=dict(_SD_VAE, sample_size=1024, scaling_factor=0.13025),
        text_encoders=(("clip", _CLIP_L), ("clip-projection", _CLIP_G)),
        scheduler=_SD_SCHEDULER,
    ),
    "flux": Architecture(
        "FLUX.1-dev (11.9B-param transformer, guidance-distilled; CLIP-L and T5-XXL; 1024x1024), random weights",
        pipeline="FluxPipeline",
        denoiser="FluxTransformer2DModel",
        denoiser_config=dict(
            patch_size=1,
            in_channels=64,
            num_layers=19,
            num_single_layers=38,
            attention_head_dim=128,
            num_attention_heads=24,
            joint_attention_dim=4096,
            pooled_projection_dim=768,
            guidance_embeds=True,
            axes_dims_rope=(16, 56, 56),
        ),
        vae=dict(_VAE_16, scaling_factor=0.3611, shift_factor=0.1159),
        text_encoders=(("clip", _CLIP_L), ("t5", _T5_XXL)),
        scheduler=_FLUX_SCHEDULER,
        t5_tokens=512,
    ),
    # stabilityai/stable-diffusion-3.5-medium's transformer/config.json. Announced as 2.5B: the MMDiT-X
    # transformer's 2.24B parameters plus its 0.23B fixed position-embedding table (a buffer in diffusers).
    "sd3": Architecture(
        "Stable Diffusion 3.5 Medium (2.5B-param MMDiT-X transformer; CLIP-L, CLIP-G and T5-XXL; 1024x1024), "
        "random weights",
        pipeline="StableDiffusion3Pipeline",
        denoiser="SD3Transformer2DModel",
        denoiser_config=dict(
            sample_size=128,
            patch_size=2,
            in_channels=16,
            num_layers=24,
            attention_head_dim=64,
            num_attention_heads=24,
            joint_attention_dim=4096,
            caption_projection_dim=1536,
            pooled_projection_dim=2048,
            out_channels=16,
            pos_embed_max_size=384,
            dual_attention_layers=tuple(range(13)),
            qk_norm="rms_norm",
        ),
        vae=dict(_VAE_16, scaling_factor=1.5305, shift_factor=0.0609),
        text_encoders=(("clip-projection", _CLIP_L), ("clip-projection", _CLIP_G), ("t5", _T5_XXL)),
        scheduler=("FlowMatchEulerDiscreteScheduler", dict(shift=3.0)),
        t5_tokens=256,
    ),
    # PixArt-alpha/PixArt-Sigma-XL-2-1024-MS: a transformer without diffusers' CacheMixin (as SD3's, unlike FLUX's).
    "pixart-sigma": Architecture(
        "PixArt-Sigma XL (0.6B-param transformer; T5-XXL; 1024x1024), random weights",
        pipeline="PixArtSigmaPipeline",
        denoiser="PixArtTransformer2DModel",
        denoiser_config=dict(
            sample_size=128,
            patch_size=2,
            in_channels=4,
            out_channels=8,
            num_layers=28,
            num_attention_heads=16,
            attention_head_dim=72,
            cross_attention_dim=1152,
            caption_channels=4096,
            attention_bias=True,
            activation_fn="gelu-approximate",
            norm_type="ada_norm_single",
            norm_elementwise_affine=False,
            norm_eps=1e-6,
            num_embeds_ada_norm=1000,
            interpolation_scale=2,
            use_additional_conditions=False,
        ),
        vae=dict(_SD_VAE, sample_size=1024, scaling_factor=0.13025),
        text_encoders=(("t5", _T5_XXL),),
        scheduler=(
            "DPMSolverMultistepScheduler",
            dict(beta_start=0.0001, beta_end=0.02, beta_schedule="linear", algorithm_type="dpmsolver++"),
        ),
        t5_tokens=300,
    ),
    "tiny": Architecture(
        "a few-channel Stable Diffusion for tests (16x16 pixels), random weights",
        pipeline="StableDiffusionPipeline",
        denoiser="UNet2DConditionModel",
        denoiser_config=dict(
            sample_size=8,
            block_out_channels=(8, 16),
            layers_per_block=1,
            cross_attention_dim=16,
            attention_head_dim=2,
            norm_num_groups=4,
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        ),
        vae=dict(
            block_out_channels=(8, 16),
            layers_per_block=1,
            latent_channels=4,
            norm_num_groups=4,
            sample_size=16,
            down_block_types=("DownEncoderBlock2D",) * 2,
            up_block_types=("UpDecoderBlock2D",) * 2,
        ),
        text_encoders=(("clip", _CLIP_TINY),),
        scheduler=_SD_SCHEDULER,
    ),
    "tiny-flux": Architecture(
        "a few-channel FLUX.1 pipeline for tests (16x16 pixels), random weights",
        pipeline="FluxPipeline",
        denoiser="FluxTransformer2DModel",
        denoiser_config=dict(
            patch_size=1,
            in_channels=16,
            num_layers=1,
            num_single_layers=1,
            attention_head_dim=16,
            num_attention_heads=2,
            joint_attention_dim=32,
            pooled_projection_dim=16,
            guidance_embeds=True,
            axes_dims_rope=(4, 6, 6),
        ),
        vae=dict(
            block_out_channels=(8, 16),
            layers_per_block=1,
            latent_channels=4,
            norm_num_groups=4,
            sample_size=16,
            scaling_factor=1.0,
            shift_factor=0.0,
            use_quant_conv=False,
            use_post_quant_conv=False,
            down_block_types=("DownEncoderBlock2D",) * 2,
            up_block_types=("UpDecoderBlock2D",) * 2,
        ),
        text_encoders=(
            ("clip", _CLIP_TINY),
            ("t5", dict(d_model=32, d_ff=64, d_kv=16, num_heads=2, num_layers=1, feed_forward_proj="gated-gelu")),
        ),
        scheduler=_FLUX_SCHEDULER,
        t5_tokens=32,
    ),
}

_FIT_SHARE = 0.8  # build only what needs at most this share of the memory available


def _architecture(name: str) -> Architecture:
    if name not in ARCHITECTURES:
        ids = [f"arch/{known}" for known in ARCHITECTURES]
        raise UnknownModelError(f"arch/{name}", f"architectures are {sorted(ARCHITECTURES)}", ids)
    return ARCHITECTURES[name]


def _tokenizer(max_length: int | None = None):
    from workbench.toyworld.scenes import vocabulary
    from workbench.toyworld.tokenizer import MAX_LENGTH, build_tokenizer

    return build_tokenizer(vocabulary(), max_length or MAX_LENGTH)


def _text_encoder(kind: str, config: dict, tokenizer) -> torch.nn.Module:
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection, T5Config, T5EncoderModel

    config = {"vocab_size": len(tokenizer), **config}
    pad, eos = tokenizer.pad_token_id, tokenizer.eos_token_id
    if kind == "t5":
        return T5EncoderModel(T5Config(pad_token_id=pad, eos_token_id=eos, decoder_start_token_id=pad, **config))
    ids = dict(bos_token_id=tokenizer.bos_token_id, eos_token_id=eos, pad_token_id=pad)
    model = CLIPTextModel if kind == "clip" else CLIPTextModelWithProjection
    return model(CLIPTextConfig(max_position_embeddings=77, **ids, **config))


def _models(arch: Architecture, tokenizer) -> dict[str, torch.nn.Module]:
    """The pipeline's models, by component name, with random weights on the current default device, in eval
    mode (T5's dropout would otherwise make two identical calls differ)."""
    import diffusers

    models = {
        arch.denoiser_slot: getattr(diffusers, arch.denoiser)(**arch.denoiser_config),
        "vae": diffusers.AutoencoderKL(**arch.vae),
    }
    for i, (kind, config) in enumerate(arch.text_encoders):
        models["text_encoder" + (f"_{i + 1}" if i else "")] = _text_encoder(kind, config, tokenizer)
    return {name: model.eval() for name, model in models.items()}


def _meta_models(name: str) -> dict[str, torch.nn.Module]:
    with torch.device("meta"):
        return _models(_architecture(name), _tokenizer())


def architecture_parameters(name: str) -> dict[str, int]:
    """Parameters of each model of architecture ``name`` (by component: "transformer" or "unet", "vae",
    "text_encoder", ...), counted on the meta device: no memory, about a second even for FLUX."""
    return {part: sum(p.numel() for p in model.parameters()) for part, model in _meta_models(name).items()}


def architecture_bytes(name: str) -> int:
    """Bytes of architecture ``name``'s weights and buffers as ``build_architecture`` makes them (fp32)."""
    return sum(
        t.numel() * t.element_size()
        for model in _meta_models(name).values()
        for t in [*model.parameters(), *model.buffers()]
    )


def _available_memory(device: torch.device) -> int:
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    import psutil

    return psutil.virtual_memory().available


def build_architecture(
    name: str, seed: int = 0, *, device: str | torch.device = "cpu", dtype: torch.dtype | None = None
):
    """A pipeline of architecture ``name`` (a key of ARCHITECTURES) with seeded random weights, made on ``device``
    in ``dtype`` (default fp32; on a GPU, building in fp16 or bf16 there spares the CPU FLUX's 67 GB of fp32). The
    same seed gives the same weights on the same device and dtype only: a GPU's random numbers are not the CPU's.

    Prompts work (the toy tokenizer's ids are valid in every vocabulary); images are noise. SD 1.5 takes a few
    seconds to build on the CPU, SDXL about a minute. Raises ConfigError, before building anything, when the
    weights would need more than 80% of the memory available on ``device``.
    """
    import diffusers

    arch = _architecture(name)
    device, dtype = torch.device(device), dtype or torch.float32
    needed = architecture_bytes(name) * torch.finfo(dtype).bits // 32
    available = _available_memory(device)
    if needed > _FIT_SHARE * available:
        raise ConfigError(
            f"arch/{name} needs {needed / 1e9:.1f} GB of {device.type} memory for its {dtype} random weights, and "
            f"{available / 1e9:.1f} GB is available there (a build may take {_FIT_SHARE:.0%} of it); "
            f"architecture_parameters({name!r}) sizes it without building it"
        )
    previous = torch.get_default_dtype()
    torch.manual_seed(seed)
    tokenizer = _tokenizer()
    try:
        torch.set_default_dtype(dtype)
        with device:
            parts = _models(arch, tokenizer)
    finally:
        torch.set_default_dtype(previous)
    for i, (kind, _) in enumerate(arch.text_encoders):
        parts["tokenizer" + (f"_{i + 1}" if i else "")] = _tokenizer(arch.t5_tokens) if kind == "t5" else tokenizer
    scheduler, scheduler_config = arch.scheduler
    parts["scheduler"] = getattr(diffusers, scheduler)(**scheduler_config)
    if arch.pipeline == "StableDiffusionPipeline":
        parts.update(safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    return getattr(diffusers, arch.pipeline)(**parts)
