"""The toy world's generators, on its CLIP and VAE: the UNets (epsilon prediction, min-SNR weights) and the
diffusion transformer with its T5 (flow matching), each with EMA weights and 10% captions dropped."""

from __future__ import annotations

import copy
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from workbench.toyworld import scenes
from workbench.toyworld.tokenizer import MAX_LENGTH, build_tokenizer
from workbench.toyworld.training import (
    DIT_SPECS,
    T5_LENGTH,
    UNET_SPECS,
    Deadline,
    TrainSettings,
    drop_source_paths,
    log_event,
    one_cycle,
    render_scenes,
    report_step,
    scene_indices,
    text_encoder,
    train_step,
    world_tables,
)

__all__ = ["train_dit", "train_unet"]


def _captioned_batch(keys: torch.Tensor, size: int, empty: int, generator: torch.Generator):
    """A random batch of the pool (positions) and a caption for each: its scene's canonical or synonym wording
    (caption index scene or scene + all scenes), 10% of them the empty caption (for classifier-free guidance)."""
    idx = torch.randint(0, len(keys), (size,), generator=generator)
    caption = keys[idx] + len(world_tables()[0]) * torch.randint(0, 2, idx.shape, generator=generator)
    caption[torch.rand(idx.shape, generator=generator) < 0.1] = empty
    return idx, caption


def _update_ema(ema: dict, module: torch.nn.Module, step: int) -> None:
    """Move the EMA weights towards ``module``'s (decay warming up to 0.998)."""
    decay = min(0.998, (1 + step) / (10 + step))
    with torch.no_grad():
        for k, v in module.state_dict().items():
            ema[k].lerp_(v, 1 - decay) if v.is_floating_point() else ema[k].copy_(v)


def _generator_latents(vae, settings: TrainSettings) -> tuple[torch.Tensor, list[scenes.Scene]]:
    """The generators' training set: drawn scenes (held-out pairs excluded) and their VAE latent means."""
    images, draw = render_scenes(settings, 300, exclude_held_out=True)
    with torch.no_grad():
        return torch.cat([vae.encode(chunk).latent_dist.mean for chunk in images.split(500)]), draw


def train_unet(out: Path, settings: TrainSettings, name: str, stop_at: float | None = None) -> dict:
    """Phase 3: one UNet on pre-encoded latents, saved as ``out/unet-<name>`` (the EMA weights)."""
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTokenizer

    torch.manual_seed(settings.seed + 2)
    vae = AutoencoderKL.from_pretrained(out / "vae", dtype=torch.float32).eval()
    tokenizer = CLIPTokenizer.from_pretrained(out / "clip")
    encoder = text_encoder(out)
    latents, draw = _generator_latents(vae, settings)
    with torch.no_grad():
        latents *= vae.config.scaling_factor
        all_scenes = scenes.all_scenes()
        texts = [scenes.caption(s, k) for k in (0, 1) for s in all_scenes] + [""]
        ids = tokenizer(texts, padding="max_length", max_length=MAX_LENGTH, return_tensors="pt").input_ids
        embeddings = torch.cat([encoder(chunk).last_hidden_state for chunk in ids.split(256)])
    keys = scene_indices(draw)
    empty = len(texts) - 1

    spec = UNET_SPECS[name]
    unet = UNet2DConditionModel(
        sample_size=latents.shape[-1],
        in_channels=4,
        out_channels=4,
        layers_per_block=spec["layers_per_block"],
        block_out_channels=spec["block_out_channels"],
        down_block_types=("CrossAttnDownBlock2D",) * 2,
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=encoder.config.hidden_size,
        attention_head_dim=4,
        norm_num_groups=8,
    )
    ema = {k: v.detach().clone() for k, v in unet.state_dict().items()}
    noise_schedule = DDPMScheduler(
        num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear"
    )
    # Min-SNR-5 loss weighting (Hang et al., 2023): easy, low-noise steps stop dominating; trains faster.
    snr = noise_schedule.alphas_cumprod / (1 - noise_schedule.alphas_cumprod)
    snr_weight = snr.clamp(max=5.0) / snr
    steps = settings.steps(settings.unet_steps[name])
    optimizer = torch.optim.AdamW(unet.parameters(), lr=1e-3, weight_decay=0.01)
    schedule = one_cycle(optimizer, steps, 1e-3)
    deadline, start = Deadline(stop_at), time.time()
    generator = torch.Generator().manual_seed(settings.seed + 3)
    for step in (bar := tqdm(range(steps), desc=name, mininterval=5)):
        idx, caption = _captioned_batch(keys, settings.unet_batch, empty, generator)
        noise = torch.randn(latents[idx].shape, generator=generator)
        t = torch.randint(0, 1000, idx.shape, generator=generator)
        noisy = noise_schedule.add_noise(latents[idx], noise, t)
        error = F.mse_loss(unet(noisy, t, encoder_hidden_states=embeddings[caption]).sample, noise, reduction="none")
        loss = (error.mean(dim=(1, 2, 3)) * snr_weight[t]).mean()
        train_step(loss, optimizer, schedule, clip_gradients_of=unet.parameters())
        _update_ema(ema, unet, step)
        if report_step(out, name, bar, step, loss, deadline):
            break
    unet.load_state_dict(ema)
    unet.eval().to(torch.float16).save_pretrained(out / f"unet-{name}")
    result = {
        "phase": name,
        "steps": step + 1,
        "seconds": round(time.time() - start, 1),
        "params": sum(p.numel() for p in unet.parameters()),
    }
    log_event(out, f"{name}_done", **result)
    return result


def train_dit(out: Path, settings: TrainSettings, name: str, stop_at: float | None = None) -> dict:
    """Phase 3: a diffusion transformer and its T5 encoder by flow matching, saved as the FluxPipeline
    folder ``out/<name>`` (EMA weights; the CLIP text tower and the VAE as in the UNet pipelines)."""
    from diffusers import AutoencoderKL, FluxPipeline, FluxTransformer2DModel
    from transformers import CLIPTokenizer, T5Config, T5EncoderModel

    torch.manual_seed(settings.seed + 5)
    vae = AutoencoderKL.from_pretrained(out / "vae", dtype=torch.float32).eval()
    clip_tokenizer = CLIPTokenizer.from_pretrained(out / "clip")
    t5_tokenizer = build_tokenizer(scenes.vocabulary(), max_length=T5_LENGTH)
    clip_text = text_encoder(out)
    latents, draw = _generator_latents(vae, settings)
    # FluxPipeline decodes latents / scaling_factor + shift_factor: centre and scale them to unit variance.
    shift = latents.mean().item()
    scale = 1.0 / (latents - shift).std().item()
    tokens = FluxPipeline._pack_latents((latents - shift) * scale, len(latents), *latents.shape[1:])
    height, width = latents.shape[-2:]
    image_ids = FluxPipeline._prepare_latent_image_ids(1, height // 2, width // 2, "cpu", torch.float32)
    text_ids = torch.zeros(T5_LENGTH, 3)
    all_scenes = scenes.all_scenes()
    texts = [scenes.caption(s, k) for k in (0, 1) for s in all_scenes] + [""]
    t5_ids = t5_tokenizer(texts, padding="max_length", max_length=T5_LENGTH, truncation=True, return_tensors="pt")
    clip_ids = clip_tokenizer(texts, padding="max_length", max_length=MAX_LENGTH, truncation=True, return_tensors="pt")
    with torch.no_grad():
        pooled = torch.cat([clip_text(chunk).pooler_output for chunk in clip_ids.input_ids.split(256)])
    keys = scene_indices(draw)
    empty = len(texts) - 1

    width_ = clip_text.config.hidden_size
    t5 = T5EncoderModel(
        T5Config(
            vocab_size=len(t5_tokenizer),
            d_model=width_,
            d_kv=16,
            d_ff=4 * width_,
            num_layers=2,
            num_heads=4,
            dropout_rate=0.0,
            feed_forward_proj="gated-gelu",
            pad_token_id=t5_tokenizer.pad_token_id,
            eos_token_id=t5_tokenizer.eos_token_id,
            decoder_start_token_id=t5_tokenizer.pad_token_id,
        )
    )
    spec = DIT_SPECS[name]
    transformer = FluxTransformer2DModel(
        patch_size=1,
        in_channels=tokens.shape[-1],
        out_channels=tokens.shape[-1],
        joint_attention_dim=width_,
        pooled_projection_dim=width_,
        guidance_embeds=False,
        **spec,
    )
    trained = torch.nn.ModuleDict({"transformer": transformer, "t5": t5})
    ema = {k: v.detach().clone() for k, v in trained.state_dict().items()}
    steps = settings.steps(settings.dit_steps[name])
    optimizer = torch.optim.AdamW(trained.parameters(), lr=6e-4, weight_decay=0.01)
    schedule = one_cycle(optimizer, steps, 6e-4)
    deadline, start = Deadline(stop_at), time.time()
    generator = torch.Generator().manual_seed(settings.seed + 5)
    for step in (bar := tqdm(range(steps), desc=name, mininterval=5)):
        idx, caption = _captioned_batch(keys, settings.dit_batch, empty, generator)
        x0 = tokens[idx]
        noise = torch.randn(x0.shape, generator=generator)
        # Rectified flow: x_t = (1 - t) x0 + t noise, velocity noise - x0; t logit-normal (SD3's choice).
        t = torch.sigmoid(torch.randn(idx.shape, generator=generator))
        noisy = (1 - t[:, None, None]) * x0 + t[:, None, None] * noise
        prediction = transformer(
            hidden_states=noisy,
            timestep=t,
            pooled_projections=pooled[caption],
            encoder_hidden_states=t5(t5_ids.input_ids[caption]).last_hidden_state,
            txt_ids=text_ids,
            img_ids=image_ids,
        ).sample
        loss = F.mse_loss(prediction, noise - x0)
        train_step(loss, optimizer, schedule, clip_gradients_of=trained.parameters())
        _update_ema(ema, trained, step)
        if step + 1 in settings.dit_snapshots:  # an early look at the EMA weights, as a pipeline of its own
            vae.register_to_config(shift_factor=shift, scaling_factor=scale)
            parts = dict(vae=vae, text_encoder=clip_text, tokenizer=clip_tokenizer, tokenizer_2=t5_tokenizer)
            _save_dit(out / f"{name}-step{step + 1}", copy.deepcopy(trained), ema, parts)
        if report_step(out, name, bar, step, loss, deadline):
            break
    vae.register_to_config(shift_factor=shift, scaling_factor=scale)
    parts = dict(vae=vae, text_encoder=clip_text, tokenizer=clip_tokenizer, tokenizer_2=t5_tokenizer)
    _save_dit(out / name, trained, ema, parts)
    _write_mag_ratios(out / name)
    result = {
        "phase": name,
        "steps": step + 1,
        "seconds": round(time.time() - start, 1),
        "params": sum(p.numel() for p in transformer.parameters()),
        "t5_params": sum(p.numel() for p in t5.parameters()),
    }
    log_event(out, f"{name}_done", **result)
    return result


def _save_dit(folder: Path, trained: torch.nn.ModuleDict, ema: dict, parts: dict) -> None:
    """The transformer and T5 in ``trained``, given the ``ema`` weights, saved with the other ``parts`` as a
    FluxPipeline folder (fp16)."""
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline

    trained.load_state_dict(ema)
    pipe = FluxPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=1.0, use_dynamic_shifting=False),
        transformer=trained["transformer"].eval(),
        text_encoder_2=trained["t5"].eval(),
        **parts,
    )
    pipe.to(torch.float16).save_pretrained(folder)
    drop_source_paths(folder)


def _write_mag_ratios(folder: Path, prompts: int = 16) -> None:
    """MagCache's magnitude ratios of the DiT saved in ``folder`` (``workbench.mag_cache``), measured on
    ``prompts`` seen captions at the default settings and written beside it."""
    from workbench.config import GenerationConfig
    from workbench.local_pipeline import measure_mag_ratios
    from workbench.mag_cache import write_mag_ratios
    from workbench.models import load_uncached

    pipe = load_uncached(str(folder), torch.device("cpu"), torch.float32)
    seen = [s for s in scenes.all_scenes() if not s.held_out]
    captions = [scenes.caption(s) for s in seen[:: len(seen) // prompts][:prompts]]
    ratios = measure_mag_ratios(
        pipe, [(caption, 0) for caption in captions], GenerationConfig(batch_size=len(captions))
    )
    write_mag_ratios(folder, ratios, len(captions))
