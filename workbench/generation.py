"""Generating images reproducibly on any backend, and saving each with everything needed to redo it.

``generate(pipe, prompts, config, seeds)`` makes one image per (prompt, seed), prompts outer, seeds inner
(or per ``zip(prompts, seeds)`` with ``pairs=True``), on an ``ImageBackend`` (a diffusers pipeline is wrapped
in a ``LocalPipeline``; a ``RemoteModel`` is one).
``accelerate(pipe, config)`` applies acceleration toggles for a block. Each image comes back as a
``GenerationRecord``; ``save_image`` writes it as a PNG with its settings, ``reproduce`` makes it again.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from PIL.PngImagePlugin import PngInfo

from workbench.backends import Cancel, ImageBackend, ProgressCallback
from workbench.config import AUTO_BATCH_SIZE, AccelerationConfig, GenerationConfig
from workbench.errors import ConfigError, ImageMetadataError
from workbench.local_pipeline import LocalPipeline, measure_mag_ratios
from workbench.models import load, pick_device
from workbench.records import GenerationRecord

__all__ = [
    "MAX_SEED",
    "ReproduceResult",
    "accelerate",
    "as_backend",
    "as_list",
    "calibrate_mag_ratios",
    "check_seeds",
    "generate",
    "image_file_name",
    "png_with_settings",
    "read_settings",
    "reproduce",
    "reproduction_code",
    "save_image",
]

PNG_KEY = "workbench"  # the PNG text chunk holding the settings as JSON
MAX_SEED = 2**63 - 1


# --- inputs ---------------------------------------------------------------------------------------


def as_list(value, kind: type, name: str) -> list:
    """``value`` or its items as a non-empty list of ``kind`` (str or int), checked. A table is refused: its
    items would be its column names."""
    if hasattr(value, "columns"):
        raise ConfigError(f"{name} must be a list, got a table with columns {list(value.columns)}", name)
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


def check_seeds(seeds: list[int]) -> None:
    """Every seed within 0 .. MAX_SEED."""
    for seed in seeds:
        if not 0 <= seed <= MAX_SEED:
            raise ConfigError(f"seeds must be from 0 to {MAX_SEED}, got {seed}")


def as_backend(pipe, model_id: str | None = None) -> ImageBackend:
    """``pipe`` as an ``ImageBackend``: a backend as it is, a diffusers pipeline wrapped in a ``LocalPipeline``
    (recording ``model_id``, default the id it was loaded under)."""
    if isinstance(pipe, ImageBackend):
        return pipe
    if not callable(pipe) or not hasattr(pipe, "components"):
        raise ConfigError(
            f"expected a diffusers pipeline or an ImageBackend (such as a RemoteModel), got {type(pipe).__name__}"
        )
    return LocalPipeline(pipe, model_id)


# --- generating -----------------------------------------------------------------------------------


def generate(
    pipe,
    prompts: str | Sequence[str],
    config: GenerationConfig | None = None,
    seeds: int | Sequence[int] = 0,
    *,
    model_id: str | None = None,
    progress: ProgressCallback | None = None,
    cancel: Cancel = None,
    context: dict[str, Any] | None = None,
    pairs: bool = False,
) -> list[GenerationRecord]:
    """One image for every prompt with every seed (prompts outer, seeds inner), as ``GenerationRecord``s
    (``prompts``: a string, a list, or a prompt table's ``prompt`` column);
    with ``pairs=True`` one image per ``(prompts[i], seeds[i])`` (how the evaluation engine batches across
    prompts).

    ``config.batch_size`` images go through the pipeline per call; the images do not depend on it beyond
    floating-point rounding (some CPUs' kernels round a batch differently), but under the first-block cache,
    which decides per batch, they do: such images record their batch (see ``reproduce``).
    ``progress(step, total)`` is called after every denoising step, counted over the whole request.
    ``cancel`` (a ``threading.Event`` or a callable returning True) stops at the next step, before the
    VAE decode; ``GenerationCancelled.records`` then holds the images already finished.
    ``context`` (e.g. a routing decision) is recorded with every image, in its row and its PNG.
    ``pipe`` may be any ``ImageBackend``, e.g. a ``RemoteModel``: its server then makes the images
    (``model_id`` is not used; records carry the server's; ``config`` None means the server's route settings).
    """
    if config is not None and not isinstance(config, GenerationConfig):
        raise ConfigError(f"config must be a GenerationConfig, got {type(config).__name__}")
    if config is not None and config.batch_size == AUTO_BATCH_SIZE:
        raise ConfigError(
            "batch_size 'auto' is chosen by the evaluation engine's probe (ModelEvaluator, studies, A/B tests); "
            "generate takes a number of images per call", "batch_size",
        )  # fmt: skip
    if hasattr(prompts, "columns") and "prompt" in prompts.columns:  # a prompt table (load_prompts): its texts
        prompts = list(prompts["prompt"])
    prompts = as_list(prompts, str, "prompts")
    seeds = as_list(seeds, int, "seeds")
    check_seeds(seeds)
    if pairs and len(prompts) != len(seeds):
        raise ConfigError(f"pairs=True needs one seed per prompt, got {len(prompts)} prompts and {len(seeds)} seeds")
    jobs = list(zip(prompts, seeds, strict=True)) if pairs else [(p, s) for p in prompts for s in seeds]
    backend = as_backend(pipe, model_id)
    return list(backend.make_images(jobs, config, progress=progress, cancel=cancel, context=context))


@contextmanager
def accelerate(pipe, config: AccelerationConfig | None = None) -> Iterator[AccelerationConfig]:
    """Apply ``config``'s toggles to ``pipe`` for the block and undo every one on exit (even after an error).
    On a diffusers pipeline they change the pipeline (see ``workbench.acceleration``); on a ``RemoteModel``
    they go with each request of the block, and its server applies them."""
    config = config or AccelerationConfig()
    if not isinstance(config, AccelerationConfig):
        raise ConfigError(f"config must be an AccelerationConfig, got {type(config).__name__}")
    with as_backend(pipe).accelerated(config) as applied:
        yield applied


def calibrate_mag_ratios(
    pipe, prompts: str | Sequence[str], config: GenerationConfig | None = None, seeds: int | Sequence[int] = 0
) -> tuple[float, ...]:
    """MagCache's magnitude ratios for ``pipe``'s transformer (``workbench.mag_cache``): ``prompts`` x ``seeds``
    generated under ``config`` (its steps are the ratios' length) with no cache, each step's ratio averaged
    over the images and guidance branches. Use them as ``AccelerationConfig(mag_cache=..., mag_ratios=...)``."""
    backend = as_backend(pipe)
    pipe = getattr(backend, "pipe", None)  # a backend in this process shows its pipeline (backends.py)
    if pipe is None:
        raise ConfigError(f"MagCache's ratios are measured on a pipeline in this process, got {type(backend).__name__}")
    seeds = as_list(seeds, int, "seeds")
    check_seeds(seeds)
    jobs = [(p, s) for p in as_list(prompts, str, "prompts") for s in seeds]
    return measure_mag_ratios(pipe, jobs, config or GenerationConfig())


# --- saving and reproducing ----------------------------------------------------------------------


def image_file_name(record: GenerationRecord) -> str:
    """The PNG's name: the seed and a hash of the settings (never prompt text)."""
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
    path = folder / image_file_name(record)
    if not path.resolve().is_relative_to(folder.resolve()):  # the name has no user text, but stay sure
        raise ConfigError(f"refusing to write outside {folder}: {path}")
    partial = path.with_suffix(".partial")
    partial.write_bytes(png_with_settings(record))
    partial.replace(path)  # whole or absent: a crash never leaves a torn PNG
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
    ``tolerance`` (0-255) allows for the last-bit differences between batched and single calls. An image
    whose acceleration made it depend on its batch mates (the first-block cache) is made again with its
    recorded batch, in one call; without that record it is refused, saying why.
    """
    settings = read_settings(path)
    fields = {k: settings[k] for k in GenerationConfig.__dataclass_fields__ if k in settings}
    config = GenerationConfig.from_dict(fields).replace(batch_size=1)
    if device is None:  # the recorded device and dtype where that device exists here, else automatic
        try:
            device = str(pick_device(settings.get("device")))
            dtype = dtype or settings.get("dtype")
        except ConfigError:
            device = None
    acceleration = AccelerationConfig.from_dict(settings["acceleration"]) if "acceleration" in settings else None
    jobs = [(prompt, seed) for prompt, seed in settings.get("batch") or [(settings["prompt"], settings["seed"])]]
    if acceleration and acceleration.batch_dependent and "batch" not in settings:
        raise ConfigError(
            f"{path} was made with {acceleration.label()}, which makes an image depend on the other images of "
            f"its batch, and its metadata does not name them: it cannot be made again"
        )
    pipe = load(settings["model_id"], device=device, dtype=dtype)
    with accelerate(pipe, acceleration):  # the image's whole batch where its batch mates mattered, in one call
        batch = generate(
            pipe,
            [prompt for prompt, _ in jobs],
            config.replace(batch_size=len(jobs)),
            [seed for _, seed in jobs],
            model_id=settings["model_id"],
            pairs=True,
        )
    record = next(r for r in batch if (r.prompt, r.seed) == (settings["prompt"], settings["seed"]))
    with Image.open(path) as saved:
        diff = np.abs(np.asarray(saved.convert("RGB"), dtype=np.int16) - np.asarray(record.image, dtype=np.int16))
    return ReproduceResult(Path(path), record, int(diff.max()), float(diff.mean()), tolerance)


def reproduction_code(record: GenerationRecord) -> str:
    """Python that makes ``record``'s image again with the workbench (what "copy settings" gives)."""
    fields = {k: v for k, v in record.config.to_dict().items() if v != getattr(GenerationConfig(), k)}
    prompts, seeds, pairs = repr(record.prompt), f"[{record.seed}]", ""
    if record.batch:  # the image depends on its batch mates: make the whole batch, in one call
        fields["batch_size"] = len(record.batch)
        prompts, seeds, pairs = repr([p for p, _ in record.batch]), repr([s for _, s in record.batch]), ", pairs=True"
    config = ", ".join(f"{k}={v!r}" for k, v in fields.items())
    calls = [f"records = wb.generate(pipe, {prompts}, wb.GenerationConfig({config}), seeds={seeds}{pairs})"]
    if record.batch:
        calls.append(f"records = [r for r in records if (r.prompt, r.seed) == {(record.prompt, record.seed)!r}]")
    lines = ["import workbench as wb", "", f"pipe = wb.load({record.model_id!r})"]
    if record.acceleration:
        changes = ", ".join(f"{k}={v!r}" for k, v in record.acceleration.changes().items())
        lines += [f"with wb.accelerate(pipe, wb.AccelerationConfig({changes})):", *(f"    {c}" for c in calls)]
    else:
        lines += calls
    return "\n".join(lines) + "\n"
