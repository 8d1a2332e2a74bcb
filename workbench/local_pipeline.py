"""``LocalPipeline``: the ``ImageBackend`` for a diffusers pipeline in this process.

``make_images`` makes one image per (prompt, seed) job, ``config.batch_size`` jobs per pipeline call (a
batch may hold several prompts). Every image gets its own CPU ``torch.Generator`` seeded with its seed, so a
batch of N gives the same images as N single calls, on any device (within the last bits; not under the
first-block cache, which decides per batch: those images record their batch). ``accelerated`` applies
``acceleration``'s toggles.
"""

from __future__ import annotations

import inspect
import sys
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from workbench.acceleration import (
    accelerate_pipeline,
    active_acceleration,
    check_guidance,
    check_scheduler,
    prepare_call,
    step_end_hooks,
)
from workbench.backends import Cancel, ProgressCallback, is_cancelled
from workbench.config import SCHEDULERS, AccelerationConfig, GenerationConfig
from workbench.errors import ConfigError, GenerationCancelled
from workbench.mag_cache import MagRatioMeter
from workbench.models import denoiser, guidance_distilled, model_id_of, separate_guidance_calls
from workbench.records import GenerationRecord, TokenBudget
from workbench.resources import package_version

__all__ = [
    "BLACK_LEVEL",
    "LocalPipeline",
    "default_size",
    "guidance_arguments",
    "max_sequence_length",
    "measure_mag_ratios",
    "pipeline_tokenizers",
    "token_budget",
]

BLACK_LEVEL = 2 / 255  # an image whose brightest pixel is below this counts as black


TOKENIZER_SLOTS = ("tokenizer", "tokenizer_2", "tokenizer_3")


def pipeline_tokenizers(pipe) -> list:
    """The pipeline's prompt tokenizers: one for SD 1.x/2.x, two for SDXL and FLUX (CLIP, T5), three for SD3
    (none for a remote model)."""
    return [t for t in (getattr(pipe, slot, None) for slot in TOKENIZER_SLOTS) if t is not None]


def max_sequence_length(pipe) -> int | None:
    """The T5 window passed to pipelines that take ``max_sequence_length`` (FLUX, SD3, PixArt): the pipeline's
    default, or the window of its last tokenizer (the T5's) where shorter. None for pipelines without one."""
    parameter = inspect.signature(type(pipe).__call__).parameters.get("max_sequence_length")
    tokenizers = pipeline_tokenizers(pipe)
    if parameter is None or not tokenizers:
        return None
    return min(parameter.default, tokenizers[-1].model_max_length)


def token_budget(pipe, prompt: str) -> TokenBudget:
    """How ``prompt`` fits the pipeline's tokenizer(s); with several (SDXL, FLUX, SD3), the tighter one counts.
    A T5 tokenizer's window is the ``max_sequence_length`` the pipeline is called with."""
    tokenizers = pipeline_tokenizers(pipe)
    windows = [t.model_max_length for t in tokenizers]
    longest = max_sequence_length(pipe)
    if longest is not None:  # the last tokenizer is the T5's
        windows[-1] = longest
    worst = None
    for tokenizer, limit in zip(tokenizers, windows, strict=True):
        ids = tokenizer(prompt, truncation=False, verbose=False).input_ids
        dropped = tokenizer.decode(ids[limit - 1 : -1], skip_special_tokens=True) if len(ids) > limit else ""
        budget = TokenBudget(len(ids), limit, dropped)
        if worst is None or len(budget.dropped_text) > len(worst.dropped_text):
            worst = budget
    return worst or TokenBudget(0, 0, "")


def default_size(pipe) -> int:
    """The pipeline's native image side in pixels: the denoiser's sample size in latent pixels, or (FLUX's
    transformer has none) the VAE's sample size."""
    sample = getattr(denoiser(pipe).config, "sample_size", None)
    return sample * pipe.vae_scale_factor if sample else pipe.vae.config.sample_size


def guidance_arguments(pipe, guidance: float, negative_prompt: str | None, n: int) -> dict[str, Any]:
    """How the workbench's ``guidance`` reaches the pipeline's call for ``n`` images.

    Most pipelines take classifier-free guidance as ``guidance_scale``. FLUX-type pipelines (those with
    ``true_cfg_scale``) feed ``guidance_scale`` to a guidance embedding that only a guidance-distilled
    transformer has (FLUX.1-dev: ``guidance_embeds``); without one, classifier-free guidance is their
    ``true_cfg_scale`` with a negative prompt ("" where none is given).
    """
    negative = {"negative_prompt": [negative_prompt] * n} if negative_prompt else {}
    if not separate_guidance_calls(pipe):
        return {"guidance_scale": guidance, **negative}
    if guidance_distilled(pipe):
        if negative:
            raise ConfigError(
                f"{model_id_of(pipe)} is guidance-distilled (guidance is an embedding, not classifier-free "
                f"guidance): it has no use for a negative prompt, got {negative_prompt!r}; leave negative_prompt empty"
            )
        return {"guidance_scale": guidance}
    if guidance <= 1:
        return {"true_cfg_scale": 1.0}
    return {"true_cfg_scale": guidance, "negative_prompt": [negative_prompt or ""] * n}


class PeakMemory:
    """Peak memory over a block: CUDA's allocator peak on CUDA; on the CPU the process's peak resident set
    (Linux resets it through /proc/self/clear_refs; elsewhere it is the lifetime peak, and says so)."""

    def __init__(self, device: torch.device):
        self.device = device

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.kind = "cuda_allocated"
        elif self.device.type == "mps":
            self.kind = "mps_driver_allocated"
        else:
            try:
                Path("/proc/self/clear_refs").write_text("5")
                self.kind = "cpu_rss_peak"
            except OSError:
                self.kind = "cpu_rss_lifetime_peak"
        return self

    def __exit__(self, *exc) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.mb = torch.cuda.max_memory_allocated(self.device) / 2**20
        elif self.device.type == "mps":
            self.mb = torch.mps.driver_allocated_memory() / 2**20
        elif self.kind == "cpu_rss_peak":
            status = Path("/proc/self/status").read_text()
            self.mb = int(next(ln.split()[1] for ln in status.splitlines() if ln.startswith("VmHWM"))) / 1024
        else:
            import resource  # Unix only; Windows has neither /proc nor this module

            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            self.mb = peak / 2**20 if sys.platform == "darwin" else peak / 1024


@contextmanager
def _scheduler(pipe, name: str | None) -> Iterator[str]:
    """Use scheduler ``name`` (a key of SCHEDULERS) for the block, then put the pipeline's own back."""
    original = pipe.scheduler
    if name is not None:
        import diffusers

        if type(original).__name__.startswith("FlowMatch"):
            raise ConfigError(
                f"scheduler {name!r} samples noise-prediction models; {model_id_of(pipe)} is a flow-matching "
                f"model and samples with its own {type(original).__name__}: leave scheduler unset (None)",
                "scheduler",
            )
        pipe.scheduler = getattr(diffusers, SCHEDULERS[name]).from_config(original.config)
    try:
        yield type(pipe.scheduler).__name__
    finally:
        pipe.scheduler = original


def _versions() -> dict[str, str]:
    import diffusers
    import transformers

    return {
        "workbench": package_version(),
        "diffusers": diffusers.__version__,
        "transformers": transformers.__version__,
        "torch": torch.__version__,
    }


def _status(pixels: np.ndarray) -> str:
    if np.isnan(pixels).any():
        return "nan"
    return "black" if pixels.max() < BLACK_LEVEL else "ok"


class LocalPipeline:
    """A diffusers pipeline as an ``ImageBackend``; ``model_id`` (default: the id it was loaded under) is
    what its records carry."""

    def __init__(self, pipe, model_id: str | None = None):
        self.pipe = pipe
        self.workbench_model_id = model_id or model_id_of(pipe)

    def accelerated(self, config: AccelerationConfig) -> AbstractContextManager[AccelerationConfig]:
        return accelerate_pipeline(self.pipe, config)

    def make_images(
        self,
        jobs: list[tuple[str, int]],
        config: GenerationConfig | None,
        *,
        progress: ProgressCallback | None = None,
        cancel: Cancel = None,
        context: dict[str, Any] | None = None,
    ) -> list[GenerationRecord]:
        # 1. Settings: the pipeline's native size where none is given; one batch per batch_size images.
        pipe = self.pipe
        config = config or GenerationConfig()
        side = default_size(pipe)
        config = config.replace(width=config.width or side, height=config.height or side)
        batches = [jobs[i : i + config.batch_size] for i in range(0, len(jobs), config.batch_size)]
        budgets = {prompt: token_budget(pipe, prompt) for prompt, _ in jobs}
        versions = _versions()
        batch_dependent = getattr(active_acceleration(pipe), "batch_dependent", False)
        longest = max_sequence_length(pipe)
        sequence = {"max_sequence_length": longest} if longest else {}

        def call_arguments(n: int) -> dict[str, Any]:
            arguments = guidance_arguments(pipe, config.guidance, config.negative_prompt, n)
            check_guidance(pipe, arguments.get("true_cfg_scale", 1.0))
            return {**arguments, **sequence}

        records: list[GenerationRecord] = []
        done_batches = 0

        hooks = step_end_hooks(pipe)
        tensor_inputs = {"callback_on_step_end_tensor_inputs": [n for h in hooks for n in h.tensor_inputs]}

        def on_step_end(pipeline, step: int, timestep, callback_kwargs: dict) -> dict:
            if is_cancelled(cancel):
                raise GenerationCancelled([])
            if progress is not None:
                per_batch = pipeline.num_timesteps
                progress(done_batches * per_batch + step + 1, len(batches) * per_batch)
            for hook in hooks:
                callback_kwargs = hook.step_end(pipeline, step, timestep, callback_kwargs)
            return callback_kwargs

        # 2. Run the batches, each image with its own seeded generator.
        with _scheduler(pipe, config.scheduler) as scheduler_class:
            check_scheduler(pipe, pipe.scheduler)
            for batch in batches:
                if is_cancelled(cancel):
                    raise GenerationCancelled(records)
                generators = [torch.Generator("cpu").manual_seed(seed) for _, seed in batch]
                prepare_call(pipe, config.steps)
                with PeakMemory(pipe.device) as memory:
                    start = time.perf_counter()
                    try:
                        output = pipe(
                            prompt=[p for p, _ in batch],
                            num_inference_steps=config.steps,
                            width=config.width,
                            height=config.height,
                            generator=generators,
                            output_type="np",
                            callback_on_step_end=on_step_end,
                            **(tensor_inputs if hooks else {}),
                            **call_arguments(len(batch)),
                        )
                    except GenerationCancelled:
                        raise GenerationCancelled(records) from None
                    elapsed = time.perf_counter() - start

                # 3. Judge and keep each image.
                for (prompt, seed), pixels in zip(batch, output.images, strict=True):
                    image = Image.fromarray((np.clip(np.nan_to_num(pixels), 0, 1) * 255).round().astype(np.uint8))
                    records.append(
                        GenerationRecord(
                            image=image,
                            prompt=prompt,
                            seed=seed,
                            model_id=self.workbench_model_id,
                            config=config,
                            scheduler_class=scheduler_class,
                            device=str(pipe.device),
                            dtype=str(pipe.dtype).removeprefix("torch."),
                            latency_s=elapsed / len(batch),
                            peak_mem_mb=round(memory.mb, 1),
                            mem_kind=memory.kind,
                            status=_status(pixels),
                            tokens=budgets[prompt],
                            versions=versions,
                            context=dict(context or {}),
                            acceleration=active_acceleration(pipe),
                            batch=tuple(batch) if batch_dependent else (),
                        )
                    )
                done_batches += 1
        return records


def measure_mag_ratios(pipe, jobs: list[tuple[str, int]], config: GenerationConfig) -> tuple[float, ...]:
    """MagCache's magnitude ratios of ``pipe``'s transformer (``workbench.mag_cache``): the ``jobs`` (prompt,
    seed) made under ``config`` with no cache, each step's ratio averaged over the images and guidance branches
    (the negative prompt of true classifier-free guidance is a call of its own)."""
    if active_acceleration(pipe) is not None:
        raise ConfigError(f"calibrate outside an accelerate block: {active_acceleration(pipe).label()} is applied")
    arguments = guidance_arguments(pipe, config.guidance, config.negative_prompt, 1)
    with MagRatioMeter(pipe) as meter:
        LocalPipeline(pipe).make_images(jobs, config)
    return meter.ratios(config.steps, 2 if arguments.get("true_cfg_scale", 1.0) > 1 else 1)
