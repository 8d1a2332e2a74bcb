"""Train the toy world family from scratch: a CLIP, a shared VAE, two UNets and a diffusion transformer,
saved in standard formats.

Order of work (CLIP and VAE are independent, the generators need both)::

    1. clip         CLIPModel, contrastive on hard-negative batches (scenes that differ in one attribute)
    2. vae          AutoencoderKL, MSE + L1 + a little KL
    3. unets        UNet2DConditionModel x2, epsilon prediction on pre-encoded latents, conditioned on
                    the frozen CLIP text tower, min-SNR loss weights, 10% captions dropped for
                    classifier-free guidance, EMA weights kept
       dit-small    FluxTransformer2DModel and a small T5 encoder trained together by flow matching
                    (rectified flow, logit-normal times), the frozen CLIP's pooled text as the
                    second condition, 10% captions dropped, EMA weights kept; saved as a FluxPipeline
       clip-vision  more training of the CLIP's image side against its frozen text tower
    4. assemble     StableDiffusionPipeline folders (fp16 safetensors) plus the CLIP scorer folder

Phases 1-2, then the jobs of phase 3, run in two processes side by side.
Everything is seeded; a JSON-lines log of losses and timings is written next to the weights.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import json
import math
import multiprocessing
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from workbench.errors import ConfigError
from workbench.toyworld import scenes
from workbench.toyworld.tokenizer import MAX_LENGTH, build_tokenizer

__all__ = ["DIT_SPECS", "T5_LENGTH", "UNET_SPECS", "TrainSettings", "phase_trainers", "train_family"]

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

# The two generators: sd-small is fast and weaker, sd-base slower and better. Both attend at the
# 16x16 latent level on the way down (where ToMe merges tokens), and once more on the way up.
UNET_SPECS = {
    "sd-small": {"block_out_channels": (32, 64), "layers_per_block": 1},
    "sd-base": {"block_out_channels": (48, 96), "layers_per_block": 1},
}

# The diffusion transformer: FLUX.1's architecture (2 double-stream and 4 single-stream blocks instead of
# 19 and 38, width 128 instead of 3,072) on the VAE's 16x16x4 latents packed into 8x8 tokens of 16 channels.
DIT_SPECS = {
    "dit-small": {
        "num_layers": 2,
        "num_single_layers": 4,
        "attention_head_dim": 32,
        "num_attention_heads": 4,
        "axes_dims_rope": (4, 14, 14),  # text index (always 0 for images), row, column
    },
}
T5_LENGTH = 32  # the T5 slot's tokens: every toy caption fits; FLUX pads its T5 input to 512


@dataclass(frozen=True)
class TrainSettings:
    """Sizes and step counts; ``scale`` multiplies every step count (a tiny scale is a smoke test)."""

    seed: int = 0
    clip_steps: int = 2500
    clip_batch: int = 128
    clip_vision_steps: int = 3000
    vae_steps: int = 1500
    vae_batch: int = 32
    unet_steps: dict = field(default_factory=lambda: {"sd-small": 8000, "sd-base": 12000})
    unet_batch: int = 32
    dit_steps: dict = field(default_factory=lambda: {"dit-small": 16000})
    dit_batch: int = 32
    dit_snapshots: tuple = ()  # steps after which the DiT's EMA weights are also saved (<out>/<name>-step<N>)
    images: int = 40_000
    scale: float = 1.0
    budget_minutes: float | None = None  # wall-clock cap: phases 1-2 stop at 25% of it, phase 3 at 95%
    workers: int = 2

    def steps(self, n: int) -> int:
        return max(1, round(n * self.scale))


def _log(out: Path, event: str, **values) -> None:
    with open(out / "train_log.jsonl", "a") as fh:
        fh.write(json.dumps({"event": event, "time": round(time.time(), 1), **values}) + "\n")


def _render(settings: TrainSettings, seed_offset: int, *, exclude_held_out: bool = False, every_scene: bool = False):
    """Images (N,3,32,32 in [-1,1]) and their scenes from a seeded draw; ``every_scene`` puts one of each
    scene first, so the pool covers the whole world."""
    draw = scenes.sample_scenes(settings.images, settings.seed + seed_offset, exclude_held_out=exclude_held_out)
    if every_scene:
        draw = scenes.all_scenes() + draw
    rng = np.random.default_rng(settings.seed + seed_offset + 1)
    pixels = np.stack([np.asarray(scenes.render(s, rng)) for s in draw])
    images = torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    return images, draw


def _scene_indices(draw: list[scenes.Scene]) -> torch.Tensor:
    """Each scene's position in ``scenes.all_scenes()`` (its caption's index)."""
    index = _world_tables()[1]
    return torch.tensor([index[s] for s in draw])


def _images_by_scene(keys: torch.Tensor) -> dict[int, torch.Tensor]:
    """For each scene index, the positions of its images in the drawn pool."""
    order = torch.argsort(keys)
    values, counts = torch.unique_consecutive(keys[order], return_counts=True)
    return dict(zip(values.tolist(), order.split(counts.tolist()), strict=True))


@functools.lru_cache(maxsize=1)
def _world_tables():
    """Every scene, each scene's index, and each attribute's values."""
    all_scenes = scenes.all_scenes()
    values = {a: sorted({getattr(s, a) for s in all_scenes}) for a in scenes.ATTRIBUTES}
    return all_scenes, {scene: i for i, scene in enumerate(all_scenes)}, values


def _hard_negative_batch(size: int, generator: torch.Generator) -> torch.Tensor:
    """Scene indices in groups of four: a random scene and three scenes that differ from it in one
    attribute each. Such near misses make the contrastive loss tell every attribute apart (with
    uniform batches, two captions that differ only in the shape rarely meet)."""
    all_scenes, index, values = _world_tables()
    keys = []
    for anchor in torch.randint(0, len(all_scenes), (size // 4,), generator=generator).tolist():
        scene = all_scenes[anchor]
        keys.append(anchor)
        for _ in range(3):
            attribute = scenes.ATTRIBUTES[int(torch.randint(0, len(scenes.ATTRIBUTES), (), generator=generator))]
            others = [v for v in values[attribute] if v != getattr(scene, attribute)]
            other = others[int(torch.randint(0, len(others), (), generator=generator))]
            keys.append(index[dataclasses.replace(scene, **{attribute: other})])
    return torch.tensor(keys)


def _contrastive_batch(by_scene: dict[int, torch.Tensor], size: int, generator: torch.Generator) -> torch.Tensor:
    """Pool positions of one image for each scene of a hard-negative batch."""
    picks = []
    for key in _hard_negative_batch(size, generator).tolist():
        choices = by_scene[key]
        picks.append(choices[torch.randint(0, len(choices), (), generator=generator)])
    return torch.stack(picks)


def _contrastive_loss(logits_per_image: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """Symmetric InfoNCE where every image of the same scene (caption) in the batch is a positive."""
    same = (keys[:, None] == keys[None, :]).float()
    target = same / same.sum(dim=1, keepdim=True)
    return (F.cross_entropy(logits_per_image, target) + F.cross_entropy(logits_per_image.T, target)) / 2


def _caption_tokens(tokenizer) -> list[torch.Tensor]:
    """Token ids of every scene's caption, padded to the window: [canonical, synonym] wording."""
    return [
        tokenizer(
            [scenes.caption(s, k) for s in scenes.all_scenes()],
            padding="max_length",
            max_length=MAX_LENGTH,
            return_tensors="pt",
        ).input_ids
        for k in (0, 1)
    ]


def _clip_pixels(images: torch.Tensor) -> torch.Tensor:
    """[-1,1] images to the CLIP image processor's normalisation."""
    mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    return ((images + 1) / 2 - mean) / std


def _one_cycle(optimizer, steps: int, lr: float):
    return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps, pct_start=0.1)


def _train_step(loss: torch.Tensor, optimizer, schedule, clip_gradients_of=None) -> None:
    """One optimiser step: gradients (clipped to norm 1 when parameters are given), update, next learning rate."""
    optimizer.zero_grad()
    loss.backward()
    if clip_gradients_of is not None:
        torch.nn.utils.clip_grad_norm_(clip_gradients_of, 1.0)
    optimizer.step()
    schedule.step()


def _report(out: Path, event: str, bar, step: int, loss: torch.Tensor, deadline: _Deadline) -> bool:
    """Log the loss every 100 steps; True when the phase's wall-clock deadline has passed."""
    if step % 100 == 0:
        bar.set_postfix(loss=f"{loss.item():.4f}")
        _log(out, event, step=step, loss=loss.item())
    return deadline.passed()


class _Deadline:
    """A wall-clock time (seconds since the epoch) after which a phase stops early; None = never."""

    def __init__(self, end: float | None):
        self.end = end if end is not None else math.inf

    def passed(self) -> bool:
        return time.time() > self.end


def train_clip(out: Path, settings: TrainSettings, stop_at: float | None = None) -> dict:
    """Phase 1: the toy CLIP, saved with its tokenizer and image processor under ``out/clip``."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    torch.manual_seed(settings.seed)
    tokenizer = build_tokenizer(scenes.vocabulary())
    config = CLIPConfig(
        text_config=dict(
            vocab_size=len(tokenizer),
            hidden_size=64,
            intermediate_size=256,
            num_hidden_layers=3,
            num_attention_heads=4,
            max_position_embeddings=MAX_LENGTH,
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
        ),
        vision_config=dict(
            image_size=scenes.IMAGE_SIZE,
            patch_size=4,
            hidden_size=64,
            intermediate_size=256,
            num_hidden_layers=3,
            num_attention_heads=4,
        ),
        projection_dim=64,
    )
    model = CLIPModel(config)
    images, draw = _render(settings, 100, every_scene=True)
    keys = _scene_indices(draw)
    tokens = _caption_tokens(tokenizer)
    pixels = _clip_pixels(images)
    by_scene = _images_by_scene(keys)
    steps = settings.steps(settings.clip_steps)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
    schedule = _one_cycle(optimizer, steps, 1e-3)
    deadline, start = _Deadline(stop_at), time.time()
    generator = torch.Generator().manual_seed(settings.seed)
    model.train()
    for step in (bar := tqdm(range(steps), desc="clip", mininterval=5)):
        idx = _contrastive_batch(by_scene, settings.clip_batch, generator)
        synonym = torch.randint(0, 2, (len(idx),), generator=generator)
        ids = torch.where(synonym[:, None] == 1, tokens[1][keys[idx]], tokens[0][keys[idx]])
        output = model(input_ids=ids, pixel_values=pixels[idx])
        loss = _contrastive_loss(output.logits_per_image, keys[idx])
        _train_step(loss, optimizer, schedule)
        if _report(out, "clip", bar, step, loss, deadline):
            break
    folder = out / "clip"
    model.eval().to(torch.float16).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    CLIPImageProcessor(
        size={"shortest_edge": scenes.IMAGE_SIZE},
        crop_size={"height": scenes.IMAGE_SIZE, "width": scenes.IMAGE_SIZE},
        image_mean=list(CLIP_MEAN),
        image_std=list(CLIP_STD),
    ).save_pretrained(folder)
    result = {
        "phase": "clip",
        "steps": step + 1,
        "seconds": round(time.time() - start, 1),
        "params": sum(p.numel() for p in model.parameters()),
    }
    _log(out, "clip_done", **result)
    return result


def refine_clip_vision(out: Path, settings: TrainSettings, stop_at: float | None = None) -> dict:
    """Phase 3b: train the CLIP's image side further against its frozen text tower.

    The text tower is what the UNets condition on, so it stays bit-identical; only the vision tower,
    its projection and the temperature learn (the text embeddings of every caption are computed once).
    """
    from transformers import CLIPModel, CLIPTokenizer

    torch.manual_seed(settings.seed + 4)
    model = CLIPModel.from_pretrained(out / "clip", dtype=torch.float32)
    tokenizer = CLIPTokenizer.from_pretrained(out / "clip")
    for parameter in [*model.text_model.parameters(), *model.text_projection.parameters()]:
        parameter.requires_grad_(False)
    images, draw = _render(settings, 400, every_scene=True)
    keys = _scene_indices(draw)
    pixels = _clip_pixels(images)
    by_scene = _images_by_scene(keys)
    with torch.no_grad():
        bank = torch.stack(
            [
                F.normalize(model.get_text_features(input_ids=ids).pooler_output, dim=-1)
                for ids in _caption_tokens(tokenizer)
            ]
        )
    trainable = [p for p in model.parameters() if p.requires_grad]
    steps = settings.steps(settings.clip_vision_steps)
    optimizer = torch.optim.AdamW(trainable, lr=5e-4, weight_decay=0.05)
    schedule = _one_cycle(optimizer, steps, 5e-4)
    deadline, start = _Deadline(stop_at), time.time()
    generator = torch.Generator().manual_seed(settings.seed + 4)
    model.train()
    for step in (bar := tqdm(range(steps), desc="clip-vision", mininterval=5)):
        idx = _contrastive_batch(by_scene, settings.clip_batch, generator)
        synonym = torch.randint(0, 2, (len(idx),), generator=generator)
        image = F.normalize(model.get_image_features(pixel_values=pixels[idx]).pooler_output, dim=-1)
        loss = _contrastive_loss(model.logit_scale.exp() * image @ bank[synonym, keys[idx]].T, keys[idx])
        _train_step(loss, optimizer, schedule)
        if _report(out, "clip-vision", bar, step, loss, deadline):
            break
    model.eval().to(torch.float16).save_pretrained(out / "clip")
    result = {"phase": "clip-vision", "steps": step + 1, "seconds": round(time.time() - start, 1)}
    _log(out, "clip-vision_done", **result)
    return result


def train_vae(out: Path, settings: TrainSettings, stop_at: float | None = None) -> dict:
    """Phase 2: the shared VAE (32x32 pixels <-> 16x16x4 latents), saved under ``out/vae``."""
    from diffusers import AutoencoderKL

    torch.manual_seed(settings.seed + 1)
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        block_out_channels=(16, 32),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=8,
        sample_size=scenes.IMAGE_SIZE,
        mid_block_add_attention=False,
    )
    images, _ = _render(settings, 200)
    steps = settings.steps(settings.vae_steps)
    optimizer = torch.optim.AdamW(vae.parameters(), lr=2e-3)
    schedule = _one_cycle(optimizer, steps, 2e-3)
    deadline, start = _Deadline(stop_at), time.time()
    generator = torch.Generator().manual_seed(settings.seed + 1)
    for step in (bar := tqdm(range(steps), desc="vae", mininterval=5)):
        batch = images[torch.randint(0, len(images), (settings.vae_batch,), generator=generator)]
        posterior = vae.encode(batch).latent_dist
        recon = vae.decode(posterior.sample(generator=generator)).sample
        loss = F.mse_loss(recon, batch) + 0.5 * F.l1_loss(recon, batch) + 1e-6 * posterior.kl().mean()
        _train_step(loss, optimizer, schedule)
        if _report(out, "vae", bar, step, loss, deadline):
            break
    vae.eval()
    with torch.no_grad():
        sample = images[:2000]
        latents = vae.encode(sample).latent_dist.mean
        recon = vae.decode(latents).sample.clamp(-1, 1)
        mse = F.mse_loss((recon + 1) / 2, (sample + 1) / 2).item()
        vae.register_to_config(scaling_factor=float(1.0 / latents.std()))
    vae.to(torch.float16).save_pretrained(out / "vae")
    result = {
        "phase": "vae",
        "steps": step + 1,
        "seconds": round(time.time() - start, 1),
        "psnr_db": round(10 * math.log10(1 / mse), 2),
        "scaling_factor": vae.config.scaling_factor,
        "params": sum(p.numel() for p in vae.parameters()),
    }
    _log(out, "vae_done", **result)
    return result


def _text_encoder(out: Path):
    """The CLIP text tower as a stand-alone CLIPTextModel (what the pipelines condition on)."""
    from transformers import CLIPModel, CLIPTextModel

    clip = CLIPModel.from_pretrained(out / "clip", dtype=torch.float32)
    encoder = CLIPTextModel(clip.config.text_config)
    encoder.load_state_dict(clip.text_model.state_dict())
    return encoder.eval()


def _captioned_batch(keys: torch.Tensor, size: int, empty: int, generator: torch.Generator):
    """A random batch of the pool (positions) and a caption for each: its scene's canonical or synonym wording
    (caption index scene or scene + all scenes), 10% of them the empty caption (for classifier-free guidance)."""
    idx = torch.randint(0, len(keys), (size,), generator=generator)
    caption = keys[idx] + len(_world_tables()[0]) * torch.randint(0, 2, idx.shape, generator=generator)
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
    images, draw = _render(settings, 300, exclude_held_out=True)
    with torch.no_grad():
        return torch.cat([vae.encode(chunk).latent_dist.mean for chunk in images.split(500)]), draw


def train_unet(out: Path, settings: TrainSettings, name: str, stop_at: float | None = None) -> dict:
    """Phase 3: one UNet on pre-encoded latents, saved as ``out/unet-<name>`` (the EMA weights)."""
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTokenizer

    torch.manual_seed(settings.seed + 2)
    vae = AutoencoderKL.from_pretrained(out / "vae", dtype=torch.float32).eval()
    tokenizer = CLIPTokenizer.from_pretrained(out / "clip")
    encoder = _text_encoder(out)
    latents, draw = _generator_latents(vae, settings)
    with torch.no_grad():
        latents *= vae.config.scaling_factor
        all_scenes = scenes.all_scenes()
        texts = [scenes.caption(s, k) for k in (0, 1) for s in all_scenes] + [""]
        ids = tokenizer(texts, padding="max_length", max_length=MAX_LENGTH, return_tensors="pt").input_ids
        embeddings = torch.cat([encoder(chunk).last_hidden_state for chunk in ids.split(256)])
    keys = _scene_indices(draw)
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
    schedule = _one_cycle(optimizer, steps, 1e-3)
    deadline, start = _Deadline(stop_at), time.time()
    generator = torch.Generator().manual_seed(settings.seed + 3)
    for step in (bar := tqdm(range(steps), desc=name, mininterval=5)):
        idx, caption = _captioned_batch(keys, settings.unet_batch, empty, generator)
        noise = torch.randn(latents[idx].shape, generator=generator)
        t = torch.randint(0, 1000, idx.shape, generator=generator)
        noisy = noise_schedule.add_noise(latents[idx], noise, t)
        error = F.mse_loss(unet(noisy, t, encoder_hidden_states=embeddings[caption]).sample, noise, reduction="none")
        loss = (error.mean(dim=(1, 2, 3)) * snr_weight[t]).mean()
        _train_step(loss, optimizer, schedule, clip_gradients_of=unet.parameters())
        _update_ema(ema, unet, step)
        if _report(out, name, bar, step, loss, deadline):
            break
    unet.load_state_dict(ema)
    unet.eval().to(torch.float16).save_pretrained(out / f"unet-{name}")
    result = {
        "phase": name,
        "steps": step + 1,
        "seconds": round(time.time() - start, 1),
        "params": sum(p.numel() for p in unet.parameters()),
    }
    _log(out, f"{name}_done", **result)
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
    clip_text = _text_encoder(out)
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
    keys = _scene_indices(draw)
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
    schedule = _one_cycle(optimizer, steps, 6e-4)
    deadline, start = _Deadline(stop_at), time.time()
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
        _train_step(loss, optimizer, schedule, clip_gradients_of=trained.parameters())
        _update_ema(ema, trained, step)
        if step + 1 in settings.dit_snapshots:  # an early look at the EMA weights, as a pipeline of its own
            vae.register_to_config(shift_factor=shift, scaling_factor=scale)
            parts = dict(vae=vae, text_encoder=clip_text, tokenizer=clip_tokenizer, tokenizer_2=t5_tokenizer)
            _save_dit(out / f"{name}-step{step + 1}", copy.deepcopy(trained), ema, parts)
        if _report(out, name, bar, step, loss, deadline):
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
    _log(out, f"{name}_done", **result)
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
    _drop_source_paths(folder)


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


def _drop_source_paths(folder: Path) -> None:
    """Drop ``_name_or_path`` from a saved pipeline's configs: where the parts were read from is not theirs."""
    for config in folder.rglob("config.json"):
        data = json.loads(config.read_text())
        if data.pop("_name_or_path", None) is not None:
            config.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def assemble(out: Path, names: Sequence[str] = tuple(UNET_SPECS)) -> None:
    """Phase 4: a StableDiffusionPipeline folder per UNet (shared VAE and text tower, fp16 safetensors)."""
    from diffusers import AutoencoderKL, DPMSolverMultistepScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTokenizer

    vae = AutoencoderKL.from_pretrained(out / "vae", dtype=torch.float16)
    encoder = _text_encoder(out).to(torch.float16)
    tokenizer = CLIPTokenizer.from_pretrained(out / "clip")
    scheduler = DPMSolverMultistepScheduler(
        num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", steps_offset=1
    )
    for name in names:
        pipe = StableDiffusionPipeline(
            vae=vae,
            text_encoder=encoder,
            tokenizer=tokenizer,
            unet=UNet2DConditionModel.from_pretrained(out / f"unet-{name}", dtype=torch.float16),
            scheduler=scheduler,
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )
        pipe.save_pretrained(out / name)
        _drop_source_paths(out / name)


def phase_trainers() -> dict[str, Callable]:
    """Training phase name -> its function ``(out, settings, stop_at)``: the CLIP, the VAE, the CLIP's vision
    refinement, and one UNet per ``UNET_SPECS`` entry."""
    unets = {name: functools.partial(_train_named, train_unet, name) for name in UNET_SPECS}
    dits = {name: functools.partial(_train_named, train_dit, name) for name in DIT_SPECS}
    return {"clip": train_clip, "vae": train_vae, "clip-vision": refine_clip_vision, **unets, **dits}


def _train_named(trainer: Callable, name: str, out: Path, settings: TrainSettings, stop_at: float | None) -> dict:
    return trainer(out, settings, name, stop_at)


def _run_phase(args):
    phase, out, settings, stop_at = args
    trainers = phase_trainers()
    if phase not in trainers:
        raise ConfigError(f"unknown training phase {phase!r}; phases: {sorted(trainers)}")
    torch.set_num_threads(max(1, (os.cpu_count() or 2) // settings.workers))
    return trainers[phase](out, settings, stop_at)


def train_family(
    out: str | Path, settings: TrainSettings = TrainSettings(), phases: Sequence[str] | None = None
) -> list[dict]:
    """Run the phases into ``out`` (all, or the named ones: their inputs from earlier phases must be there) and
    return one summary per phase (also in ``out/train_log.jsonl``)."""
    out = Path(out)
    unknown = sorted(set(phases or ()) - set(phase_trainers()))
    if unknown:
        raise ConfigError(f"unknown training phase(s) {unknown}; phases: {sorted(phase_trainers())}")
    out.mkdir(parents=True, exist_ok=True)
    _log(out, "start", settings=asdict(settings), phases=phases)
    budget = settings.budget_minutes * 60 if settings.budget_minutes else None
    start = time.time()
    waves = ((("clip", "vae"), 0.25), ((*UNET_SPECS, *DIT_SPECS, "clip-vision"), 0.95))
    results: list[dict] = []
    # "spawn": forking a process whose torch/OpenMP threads are running can deadlock the child.
    with ProcessPoolExecutor(settings.workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        for wave, share in waves:
            stop_at = start + share * budget if budget else None
            jobs = [(phase, out, settings, stop_at) for phase in wave if phases is None or phase in phases]
            results += list(pool.map(_run_phase, jobs))
    trained_unets = [name for name in UNET_SPECS if phases is None or name in phases]
    if trained_unets:
        assemble(out, trained_unets)
    _log(out, "done", results=results)
    return results
