"""What every phase of the toy world's training shares: its sizes and step counts (``TrainSettings``), the
generators' architectures, the drawn scenes, an optimiser step, the log and the wall-clock deadline."""

from __future__ import annotations

import functools
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from workbench.toyworld import scenes

__all__ = [
    "DIT_SPECS",
    "T5_LENGTH",
    "UNET_SPECS",
    "Deadline",
    "TrainSettings",
    "drop_source_paths",
    "images_by_scene",
    "log_event",
    "one_cycle",
    "render_scenes",
    "report_step",
    "scene_indices",
    "text_encoder",
    "train_step",
    "world_tables",
]

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


def log_event(out: Path, event: str, **values) -> None:
    with open(out / "train_log.jsonl", "a") as fh:
        fh.write(json.dumps({"event": event, "time": round(time.time(), 1), **values}) + "\n")


def render_scenes(
    settings: TrainSettings, seed_offset: int, *, exclude_held_out: bool = False, every_scene: bool = False
):
    """Images (N,3,32,32 in [-1,1]) and their scenes from a seeded draw; ``every_scene`` puts one of each
    scene first, so the pool covers the whole world."""
    draw = scenes.sample_scenes(settings.images, settings.seed + seed_offset, exclude_held_out=exclude_held_out)
    if every_scene:
        draw = scenes.all_scenes() + draw
    rng = np.random.default_rng(settings.seed + seed_offset + 1)
    pixels = np.stack([np.asarray(scenes.render(s, rng)) for s in draw])
    images = torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    return images, draw


def scene_indices(draw: list[scenes.Scene]) -> torch.Tensor:
    """Each scene's position in ``scenes.all_scenes()`` (its caption's index)."""
    index = world_tables()[1]
    return torch.tensor([index[s] for s in draw])


def images_by_scene(keys: torch.Tensor) -> dict[int, torch.Tensor]:
    """For each scene index, the positions of its images in the drawn pool."""
    order = torch.argsort(keys)
    values, counts = torch.unique_consecutive(keys[order], return_counts=True)
    return dict(zip(values.tolist(), order.split(counts.tolist()), strict=True))


@functools.lru_cache(maxsize=1)
def world_tables():
    """Every scene, each scene's index, and each attribute's values."""
    all_scenes = scenes.all_scenes()
    values = {a: sorted({getattr(s, a) for s in all_scenes}) for a in scenes.ATTRIBUTES}
    return all_scenes, {scene: i for i, scene in enumerate(all_scenes)}, values


def one_cycle(optimizer, steps: int, lr: float):
    return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps, pct_start=0.1)


def train_step(loss: torch.Tensor, optimizer, schedule, clip_gradients_of=None) -> None:
    """One optimiser step: gradients (clipped to norm 1 when parameters are given), update, next learning rate."""
    optimizer.zero_grad()
    loss.backward()
    if clip_gradients_of is not None:
        torch.nn.utils.clip_grad_norm_(clip_gradients_of, 1.0)
    optimizer.step()
    schedule.step()


def report_step(out: Path, event: str, bar, step: int, loss: torch.Tensor, deadline: Deadline) -> bool:
    """Log the loss every 100 steps; True when the phase's wall-clock deadline has passed."""
    if step % 100 == 0:
        bar.set_postfix(loss=f"{loss.item():.4f}")
        log_event(out, event, step=step, loss=loss.item())
    return deadline.passed()


class Deadline:
    """A wall-clock time (seconds since the epoch) after which a phase stops early; None = never."""

    def __init__(self, end: float | None):
        self.end = end if end is not None else math.inf

    def passed(self) -> bool:
        return time.time() > self.end


def text_encoder(out: Path):
    """The CLIP text tower as a stand-alone CLIPTextModel (what the pipelines condition on)."""
    from transformers import CLIPModel, CLIPTextModel

    clip = CLIPModel.from_pretrained(out / "clip", dtype=torch.float32)
    encoder = CLIPTextModel(clip.config.text_config)
    encoder.load_state_dict(clip.text_model.state_dict())
    return encoder.eval()


def drop_source_paths(folder: Path) -> None:
    """Drop ``_name_or_path`` from a saved pipeline's configs: where the parts were read from is not theirs."""
    for config in folder.rglob("config.json"):
        data = json.loads(config.read_text())
        if data.pop("_name_or_path", None) is not None:
            config.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
