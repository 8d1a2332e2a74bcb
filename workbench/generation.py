"""Generating images reproducibly, measuring each one, and saving it with everything needed to redo it.

``generate(pipe, prompts, config, seeds)`` makes one image per (prompt, seed), prompts outer, seeds
inner. Every image gets its own CPU ``torch.Generator`` seeded with its seed, so a batch of N gives the
same images as N single calls, on any device. Each image comes back as a ``GenerationRecord``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import resource
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from workbench.config import SCHEDULERS, AccelerationConfig, GenerationConfig
from workbench.errors import ConfigError, GenerationCancelled, ImageMetadataError
from workbench.models import model_id_of

__all__ = [
    "GenerationRecord",
    "ReproduceResult",
    "TokenBudget",
    "default_size",
    "generate",
    "pipeline_tokenizers",
    "png_with_settings",
    "read_settings",
    "reproduce",
    "reproduction_code",
    "save_image",
    "token_budget",
]

PNG_KEY = "workbench"  # the PNG text chunk holding the settings as JSON
MAX_SEED = 2**63 - 1
BLACK_LEVEL = 2 / 255  # an image whose brightest pixel is below this counts as black

ProgressCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class TokenBudget:
    """How a prompt fits the text encoder's window: tokens used, the window, and the text cut off."""

    count: int  # tokens, start and end markers included
    limit: int
    dropped_text: str  # what the encoder will not see ("" when it fits)

    @property
    def truncated(self) -> bool:
        return bool(self.dropped_text)


@dataclass
class GenerationRecord:
    """One generated image with its seed, the settings that made it, and what it cost."""

    image: Image.Image
    prompt: str
    seed: int
    model_id: str
    config: GenerationConfig  # as used: width, height and scheduler filled in
    scheduler_class: str
    device: str
    dtype: str
    latency_s: float  # wall time of its pipeline call divided by the images in that call
    peak_mem_mb: float
    mem_kind: str  # what peak_mem_mb measures: cuda_allocated, cpu_rss_peak, ...
    status: str  # ok | nan | black
    tokens: TokenBudget
    versions: dict[str, str] = field(default_factory=dict)
    context: dict[str, Any] = field(default_factory=dict)  # what chose the settings: a route, an arm, ...
    acceleration: AccelerationConfig | None = None  # the toggles applied (acceleration.accelerate)

    def settings(self) -> dict[str, Any]:
        """Everything needed to make this image again (what goes into the PNG)."""
        return {
            "model_id": self.model_id,
            "prompt": self.prompt,
            "seed": self.seed,
            **self.config.to_dict(),
            "scheduler_class": self.scheduler_class,
            "device": self.device,
            "dtype": self.dtype,
            "versions": self.versions,
            **({"context": self.context} if self.context else {}),
            **({"acceleration": self.acceleration.to_dict()} if self.acceleration else {}),
        }

    def to_dict(self) -> dict[str, Any]:
        """The settings and the measurements, as JSON-ready data (no image); ``from_dict`` reads it back."""
        measured = {k: getattr(self, k) for k in ("latency_s", "peak_mem_mb", "mem_kind", "status")}
        return {**self.settings(), **measured, "tokens": dataclasses.asdict(self.tokens)}

    @classmethod
    def from_dict(cls, data: dict[str, Any], image: Image.Image) -> GenerationRecord:
        """The record that ``to_dict`` wrote, with its image."""
        fields = {k: data[k] for k in GenerationConfig.__dataclass_fields__ if k in data}
        acceleration = data.get("acceleration")
        return cls(
            image=image,
            config=GenerationConfig.from_dict(fields),
            tokens=TokenBudget(**data["tokens"]),
            context=dict(data.get("context") or {}),
            acceleration=AccelerationConfig.from_dict(acceleration) if acceleration else None,
            versions=dict(data.get("versions") or {}),
            **{k: data[k] for k in ("prompt", "seed", "model_id", "scheduler_class", "device", "dtype")},
            **{k: data[k] for k in ("latency_s", "peak_mem_mb", "mem_kind", "status")},
        )

    def to_row(self) -> dict[str, Any]:
        """A flat dict for a results table (no image)."""
        row = {k: v for k, v in self.settings().items() if k not in {"versions", "context", "acceleration"}}
        return {
            **row,
            **self.context,
            "acceleration": self.acceleration.label() if self.acceleration else "baseline",
            "latency_s": self.latency_s,
            "peak_mem_mb": self.peak_mem_mb,
            "mem_kind": self.mem_kind,
            "status": self.status,
            "token_count": self.tokens.count,
            "token_limit": self.tokens.limit,
            "prompt_truncated": self.tokens.truncated,
            "dropped_text": self.tokens.dropped_text,
        }


# --- inputs ---------------------------------------------------------------------------------------


def _as_list(value, kind: type, name: str) -> list:
    """``value`` or its items as a non-empty list of ``kind`` (str or int), checked."""
    is_kind = (
        (lambda v: isinstance(v, str))
        if kind is str
        else (lambda v: isinstance(v, (int, np.integer)) and not isinstance(v, bool))
    )
    items = [value] if is_kind(value) else list(value)
    if not items:
        raise ConfigError(f"{name} must not be empty")
    for item in items:
        if not is_kind(item):
            raise ConfigError(f"every one of {name} must be {kind.__name__}, got {item!r}")
    return [kind(item) for item in items]


def _check_seeds(seeds: list[int]) -> None:
    for seed in seeds:
        if not 0 <= seed <= MAX_SEED:
            raise ConfigError(f"seeds must be from 0 to {MAX_SEED}, got {seed}")


def pipeline_tokenizers(pipe) -> list:
    """The pipeline's prompt tokenizers: one for SD 1.x/2.x, two for SDXL."""
    return [t for t in (getattr(pipe, "tokenizer", None), getattr(pipe, "tokenizer_2", None)) if t is not None]


def token_budget(pipe, prompt: str) -> TokenBudget:
    """How ``prompt`` fits the pipeline's tokenizer(s); with two (SDXL), the tighter one counts."""
    worst = None
    for tokenizer in pipeline_tokenizers(pipe):
        ids = tokenizer(prompt, truncation=False, verbose=False).input_ids
        limit = tokenizer.model_max_length
        dropped = tokenizer.decode(ids[limit - 1 : -1], skip_special_tokens=True) if len(ids) > limit else ""
        budget = TokenBudget(len(ids), limit, dropped)
        if worst is None or len(budget.dropped_text) > len(worst.dropped_text):
            worst = budget
    return worst or TokenBudget(0, 0, "")


def default_size(pipe) -> int:
    """The pipeline's native image side in pixels."""
    latent = getattr(pipe, "default_sample_size", None) or pipe.unet.config.sample_size
    return latent * pipe.vae_scale_factor


# --- measuring ----------------------------------------------------------------------------------------


class _PeakMemory:
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
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            self.mb = peak / 2**20 if sys.platform == "darwin" else peak / 1024


@contextmanager
def _scheduler(pipe, name: str | None) -> Iterator[str]:
    """Use scheduler ``name`` (a key of SCHEDULERS) for the block, then put the pipeline's own back."""
    original = pipe.scheduler
    if name is not None:
        import diffusers

        pipe.scheduler = getattr(diffusers, SCHEDULERS[name]).from_config(original.config)
    try:
        yield type(pipe.scheduler).__name__
    finally:
        pipe.scheduler = original


def _is_cancelled(cancel) -> bool:
    if cancel is None:
        return False
    return cancel.is_set() if hasattr(cancel, "is_set") else bool(cancel())


def _versions() -> dict[str, str]:
    import diffusers
    import transformers

    from workbench import __version__

    return {
        "workbench": __version__,
        "diffusers": diffusers.__version__,
        "transformers": transformers.__version__,
        "torch": torch.__version__,
    }


def _status(pixels: np.ndarray) -> str:
    if np.isnan(pixels).any():
        return "nan"
    return "black" if pixels.max() < BLACK_LEVEL else "ok"


# --- generating -----------------------------------------------------------------------------------


def generate(
    pipe,
    prompts: str | Sequence[str],
    config: GenerationConfig | None = None,
    seeds: int | Sequence[int] = 0,
    *,
    model_id: str | None = None,
    progress: ProgressCallback | None = None,
    cancel=None,
    context: dict[str, Any] | None = None,
) -> list[GenerationRecord]:
    """One image for every prompt with every seed (prompts outer, seeds inner), as ``GenerationRecord``s.

    ``config.batch_size`` images go through the pipeline per call; the images do not depend on it.
    ``progress(step, total)`` is called after every denoising step, counted over the whole request.
    ``cancel`` (a ``threading.Event`` or a callable returning True) stops at the next step, before the
    VAE decode; ``GenerationCancelled.records`` then holds the images already finished.
    ``context`` (e.g. a routing decision) is recorded with every image, in its row and its PNG.
    ``pipe`` may be a ``RemoteModel``: the images are then made by its server (``model_id`` is not used;
    records carry the server's).
    """
    from workbench.serve.remote import RemoteModel

    if isinstance(pipe, RemoteModel):
        return pipe.generate(prompts, config, seeds, progress=progress, cancel=cancel, context=context)
    # 1. Check inputs.
    config = config or GenerationConfig()
    if not isinstance(config, GenerationConfig):
        raise ConfigError(f"config must be a GenerationConfig, got {type(config).__name__}")
    prompts = _as_list(prompts, str, "prompts")
    seeds = _as_list(seeds, int, "seeds")
    _check_seeds(seeds)
    side = default_size(pipe)
    config = config.replace(width=config.width or side, height=config.height or side)
    model_id = model_id or model_id_of(pipe)
    jobs = [(prompt, seed) for prompt in prompts for seed in seeds]
    batches = [jobs[i : i + config.batch_size] for i in range(0, len(jobs), config.batch_size)]
    budgets = {prompt: token_budget(pipe, prompt) for prompt in prompts}
    versions = _versions()
    records: list[GenerationRecord] = []
    done_batches = 0

    def on_step_end(pipeline, step: int, timestep, callback_kwargs: dict) -> dict:
        if _is_cancelled(cancel):
            raise GenerationCancelled([])
        if progress is not None:
            per_batch = pipeline.num_timesteps
            progress(done_batches * per_batch + step + 1, len(batches) * per_batch)
        return callback_kwargs

    # 2. Run the batches, each image with its own seeded generator.
    from workbench.acceleration import active_acceleration, check_scheduler

    with _scheduler(pipe, config.scheduler) as scheduler_class:
        check_scheduler(pipe, pipe.scheduler)
        for batch in batches:
            if _is_cancelled(cancel):
                raise GenerationCancelled(records)
            generators = [torch.Generator("cpu").manual_seed(seed) for _, seed in batch]
            negative = [config.negative_prompt] * len(batch) if config.negative_prompt else None
            with _PeakMemory(pipe.device) as memory:
                start = time.perf_counter()
                try:
                    output = pipe(
                        prompt=[p for p, _ in batch],
                        negative_prompt=negative,
                        num_inference_steps=config.steps,
                        guidance_scale=config.guidance,
                        width=config.width,
                        height=config.height,
                        generator=generators,
                        output_type="np",
                        callback_on_step_end=on_step_end,
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
                        model_id=model_id,
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
                    )
                )
            done_batches += 1
    return records


# --- saving and reproducing ----------------------------------------------------------------------


def _file_name(record: GenerationRecord) -> str:
    digest = hashlib.sha256(json.dumps(record.settings(), sort_keys=True).encode()).hexdigest()[:16]
    return f"s{record.seed}-{digest}.png"


def png_with_settings(record: GenerationRecord) -> bytes:
    """``record.image`` as PNG bytes with its settings in the metadata (what ``read_settings`` reads)."""
    info = PngInfo()
    info.add_text(PNG_KEY, json.dumps(record.settings(), sort_keys=True))
    # The common "parameters" convention, so other tools show the settings too.
    info.add_text(
        "parameters",
        f"{record.prompt}\nNegative prompt: {record.config.negative_prompt or ''}\n"
        f"Steps: {record.config.steps}, Sampler: {record.scheduler_class}, "
        f"CFG scale: {record.config.guidance}, Seed: {record.seed}, "
        f"Size: {record.config.width}x{record.config.height}, Model: {record.model_id}",
    )
    buffer = io.BytesIO()
    record.image.save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def save_image(record: GenerationRecord, folder: str | Path) -> Path:
    """Write ``record.image`` as a PNG with its settings in the metadata; the name is seed + settings hash."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / _file_name(record)
    if not path.resolve().is_relative_to(folder.resolve()):  # the name has no user text, but stay sure
        raise ConfigError(f"refusing to write outside {folder}: {path}")
    path.write_bytes(png_with_settings(record))
    return path


def read_settings(path: str | Path) -> dict[str, Any]:
    """The generation settings stored in a PNG written by ``save_image``."""
    try:
        with Image.open(path) as image:
            text = image.text.get(PNG_KEY) if hasattr(image, "text") else None
    except (OSError, ValueError) as error:
        raise ImageMetadataError(f"cannot read {path} as a PNG: {error}") from None
    if text is None:
        raise ImageMetadataError(f"{path} has no {PNG_KEY!r} metadata (not saved by workbench.save_image)")
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise ImageMetadataError(f"{path}: unreadable {PNG_KEY!r} metadata ({error})") from None


@dataclass(frozen=True)
class ReproduceResult:
    """The outcome of regenerating a saved image from its metadata."""

    path: Path
    record: GenerationRecord
    max_abs_diff: int  # largest per-channel difference, 0-255
    mean_abs_diff: float
    tolerance: int

    @property
    def matches(self) -> bool:
        return self.max_abs_diff <= self.tolerance


def reproduce(
    path: str | Path, *, device: str | None = None, dtype: str | None = None, tolerance: int = 2
) -> ReproduceResult:
    """Regenerate the PNG at ``path`` from its metadata and compare it pixel by pixel.

    By default the device and dtype recorded in the PNG are used when present here. Matching within
    ``tolerance`` (0-255) allows for the last-bit differences between batched and single calls.
    """
    from workbench.models import load, pick_device

    settings = read_settings(path)
    fields = {k: settings[k] for k in GenerationConfig.__dataclass_fields__ if k in settings}
    config = GenerationConfig.from_dict(fields).replace(batch_size=1)
    if device is None:  # the recorded device and dtype where that device exists here, else automatic
        try:
            device = str(pick_device(settings.get("device")))
            dtype = dtype or settings.get("dtype")
        except ConfigError:
            device = None
    from workbench.acceleration import accelerate

    pipe = load(settings["model_id"], device=device, dtype=dtype)
    acceleration = AccelerationConfig.from_dict(settings["acceleration"]) if "acceleration" in settings else None
    with accelerate(pipe, acceleration):
        record = generate(pipe, settings["prompt"], config, settings["seed"], model_id=settings["model_id"])[0]
    with Image.open(path) as saved:
        diff = np.abs(np.asarray(saved.convert("RGB"), dtype=np.int16) - np.asarray(record.image, dtype=np.int16))
    return ReproduceResult(Path(path), record, int(diff.max()), float(diff.mean()), tolerance)


def reproduction_code(record: GenerationRecord) -> str:
    """Python that makes ``record``'s image again with the workbench (what "copy settings" gives)."""
    fields = {k: v for k, v in record.config.to_dict().items() if v != getattr(GenerationConfig(), k)}
    config = ", ".join(f"{k}={v!r}" for k, v in fields.items())
    call = f"records = wb.generate(pipe, {record.prompt!r}, wb.GenerationConfig({config}), seeds=[{record.seed}])"
    lines = ["import workbench as wb", "", f"pipe = wb.load({record.model_id!r})"]
    if record.acceleration:
        changes = ", ".join(f"{k}={v!r}" for k, v in record.acceleration.changes().items())
        lines += [f"with wb.accelerate(pipe, wb.AccelerationConfig({changes})):", f"    {call}"]
    else:
        lines.append(call)
    return "\n".join(lines) + "\n"
