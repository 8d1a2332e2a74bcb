"""The toy world's CLIP (contrastive on hard-negative batches, then its image side refined against the frozen
text tower) and its VAE: the phases the generators are trained on."""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from workbench.toyworld import scenes
from workbench.toyworld.tokenizer import MAX_LENGTH, build_tokenizer
from workbench.toyworld.training import (
    Deadline,
    TrainSettings,
    images_by_scene,
    log_event,
    one_cycle,
    render_scenes,
    report_step,
    scene_indices,
    train_step,
    world_tables,
)

__all__ = ["refine_clip_vision", "train_clip", "train_vae"]

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def _hard_negative_batch(size: int, generator: torch.Generator) -> torch.Tensor:
    """Scene indices in groups of four: a random scene and three scenes that differ from it in one
    attribute each. Such near misses make the contrastive loss tell every attribute apart (with
    uniform batches, two captions that differ only in the shape rarely meet)."""
    all_scenes, index, values = world_tables()
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
    images, draw = render_scenes(settings, 100, every_scene=True)
    keys = scene_indices(draw)
    tokens = _caption_tokens(tokenizer)
    pixels = _clip_pixels(images)
    by_scene = images_by_scene(keys)
    steps = settings.steps(settings.clip_steps)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
    schedule = one_cycle(optimizer, steps, 1e-3)
    deadline, start = Deadline(stop_at), time.time()
    generator = torch.Generator().manual_seed(settings.seed)
    model.train()
    for step in (bar := tqdm(range(steps), desc="clip", mininterval=5)):
        idx = _contrastive_batch(by_scene, settings.clip_batch, generator)
        synonym = torch.randint(0, 2, (len(idx),), generator=generator)
        ids = torch.where(synonym[:, None] == 1, tokens[1][keys[idx]], tokens[0][keys[idx]])
        output = model(input_ids=ids, pixel_values=pixels[idx])
        loss = _contrastive_loss(output.logits_per_image, keys[idx])
        train_step(loss, optimizer, schedule)
        if report_step(out, "clip", bar, step, loss, deadline):
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
    log_event(out, "clip_done", **result)
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
    images, draw = render_scenes(settings, 400, every_scene=True)
    keys = scene_indices(draw)
    pixels = _clip_pixels(images)
    by_scene = images_by_scene(keys)
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
    schedule = one_cycle(optimizer, steps, 5e-4)
    deadline, start = Deadline(stop_at), time.time()
    generator = torch.Generator().manual_seed(settings.seed + 4)
    model.train()
    for step in (bar := tqdm(range(steps), desc="clip-vision", mininterval=5)):
        idx = _contrastive_batch(by_scene, settings.clip_batch, generator)
        synonym = torch.randint(0, 2, (len(idx),), generator=generator)
        image = F.normalize(model.get_image_features(pixel_values=pixels[idx]).pooler_output, dim=-1)
        loss = _contrastive_loss(model.logit_scale.exp() * image @ bank[synonym, keys[idx]].T, keys[idx])
        train_step(loss, optimizer, schedule)
        if report_step(out, "clip-vision", bar, step, loss, deadline):
            break
    model.eval().to(torch.float16).save_pretrained(out / "clip")
    result = {"phase": "clip-vision", "steps": step + 1, "seconds": round(time.time() - start, 1)}
    log_event(out, "clip-vision_done", **result)
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
    images, _ = render_scenes(settings, 200)
    steps = settings.steps(settings.vae_steps)
    optimizer = torch.optim.AdamW(vae.parameters(), lr=2e-3)
    schedule = one_cycle(optimizer, steps, 2e-3)
    deadline, start = Deadline(stop_at), time.time()
    generator = torch.Generator().manual_seed(settings.seed + 1)
    for step in (bar := tqdm(range(steps), desc="vae", mininterval=5)):
        batch = images[torch.randint(0, len(images), (settings.vae_batch,), generator=generator)]
        posterior = vae.encode(batch).latent_dist
        recon = vae.decode(posterior.sample(generator=generator)).sample
        loss = F.mse_loss(recon, batch) + 0.5 * F.l1_loss(recon, batch) + 1e-6 * posterior.kl().mean()
        train_step(loss, optimizer, schedule)
        if report_step(out, "vae", bar, step, loss, deadline):
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
    log_event(out, "vae_done", **result)
    return result
