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

import functools
import multiprocessing
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path

import torch

from workbench.errors import ConfigError
from workbench.toyworld.train_encoders import refine_clip_vision, train_clip, train_vae
from workbench.toyworld.train_generators import train_dit, train_unet
from workbench.toyworld.training import (
    DIT_SPECS,
    T5_LENGTH,
    UNET_SPECS,
    TrainSettings,
    drop_source_paths,
    log_event,
    text_encoder,
)

__all__ = ["DIT_SPECS", "T5_LENGTH", "UNET_SPECS", "TrainSettings", "phase_trainers", "train_family"]


def assemble(out: Path, names: Sequence[str] = tuple(UNET_SPECS)) -> None:
    """Phase 4: a StableDiffusionPipeline folder per UNet (shared VAE and text tower, fp16 safetensors)."""
    from diffusers import AutoencoderKL, DPMSolverMultistepScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTokenizer

    vae = AutoencoderKL.from_pretrained(out / "vae", dtype=torch.float16)
    encoder = text_encoder(out).to(torch.float16)
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
        drop_source_paths(out / name)


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
    out: str | Path, settings: TrainSettings | None = None, phases: Sequence[str] | None = None
) -> list[dict]:
    """Run the phases into ``out`` (all, or the named ones: their inputs from earlier phases must be there) and
    return one summary per phase (also in ``out/train_log.jsonl``)."""
    out, settings = Path(out), settings or TrainSettings()
    unknown = sorted(set(phases or ()) - set(phase_trainers()))
    if unknown:
        raise ConfigError(f"unknown training phase(s) {unknown}; phases: {sorted(phase_trainers())}")
    out.mkdir(parents=True, exist_ok=True)
    log_event(out, "start", settings=asdict(settings), phases=phases)
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
    log_event(out, "done", results=results)
    return results
