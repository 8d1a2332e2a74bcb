"""Loading pipelines by id, choosing device and dtype, and caching what was loaded.

Model ids::

    toyworld/<name>     the packaged toy world (workbench/toyworld/weights/<name>)
    arch/<name>         a real architecture (sd15, sdxl, flux, sd3, ...) with random weights (workbench.architectures)
    ./some/folder       a local diffusers pipeline folder (with model_index.json)
    owner/name          a Hugging Face hub id; offline, only if it is already in the local cache
    model@http://host:port   a model on a ``workbench serve`` server (a ``RemoteModel``; a bare URL: its router picks)
    file.safetensors[?config=CONFIG]   a single-file checkpoint (also .ckpt), its configs from CONFIG
    BASE+lora:PATH[@SCALE]   a base model with LoRA adapters fused in (several ``+lora:`` parts allowed)

Each form is a ``ModelLoader`` in ``LOADERS`` (``register_loader`` adds one); forms whose code is heavy or
optional are "module:attribute" strings, imported on first use. Everything is loaded with diffusers'
``from_pretrained`` / ``from_single_file`` (``arch/`` ids are built from their configs).
"""

from __future__ import annotations

import gc
import importlib
import inspect
import os
import socket
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlparse

import torch

from workbench.architectures import ARCHITECTURES, build_architecture
from workbench.errors import ConfigError, UnknownModelError
from workbench.verbosity import apply_verbosity

__all__ = [
    "LOADERS",
    "TOYWORLD_DIR",
    "TOYWORLD_MODELS",
    "ModelLoader",
    "PipelineCache",
    "available_models",
    "default_cache",
    "denoiser",
    "denoiser_slot",
    "describe_models",
    "is_offline",
    "load",
    "load_uncached",
    "loader_for",
    "model_id_of",
    "pick_device",
    "pick_dtype",
    "pipeline_bytes",
    "register_loader",
    "separate_guidance_calls",
]

TOYWORLD_DIR = Path(__file__).parent / "toyworld" / "weights"
TOYWORLD_MODELS = {
    "toyworld/sd-small": "toy world generator, fast and weaker (32x32 pixels)",
    "toyworld/sd-base": "toy world generator, slower and better (32x32 pixels)",
    "toyworld/dit-small": "toy world diffusion transformer (FLUX.1 architecture, flow matching; 32x32 pixels)",
    "toyworld/clip": "toy world CLIP: the offline CLIP scorer (not a generation pipeline)",
}

DTYPES = {
    "fp32": torch.float32,
    "float32": torch.float32,
    "fp16": torch.float16,
    "float16": torch.float16,
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
}


# --- device and dtype -----------------------------------------------------------------------------


def _available_devices() -> list[str]:
    devices = ["cpu"]
    if torch.cuda.is_available():
        devices += ["cuda"] + [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if torch.backends.mps.is_available():
        devices.append("mps")
    return devices


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """The requested device, checked; or the best one present (cuda > mps > cpu)."""
    if device is None:
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps" if torch.backends.mps.is_available() else "cpu")
    if str(device) not in _available_devices():
        raise ConfigError(f"device {str(device)!r} is not available here; available: {_available_devices()}")
    return torch.device(device)


def pick_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """The requested dtype, checked; or fp16 on a GPU and fp32 on the CPU (fp16 is very slow on CPUs)."""
    if dtype is None:
        return torch.float32 if device.type == "cpu" else torch.float16
    if isinstance(dtype, torch.dtype) and dtype in DTYPES.values():
        return dtype
    if isinstance(dtype, str) and dtype in DTYPES:
        return DTYPES[dtype]
    raise ConfigError(f"dtype must be one of {sorted(DTYPES)} (or None for automatic), got {dtype!r}")


# --- what exists ------------------------------------------------------------------------------------


def _toyworld_pipelines() -> list[str]:
    if not TOYWORLD_DIR.is_dir():
        return []
    return sorted(f"toyworld/{p.name}" for p in TOYWORLD_DIR.iterdir() if (p / "model_index.json").is_file())


def _cached_hub_pipelines() -> list[str]:
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    try:
        info = scan_cache_dir()
    except CacheNotFound:
        return []
    return sorted(
        repo.repo_id
        for repo in info.repos
        if repo.repo_type == "model"
        and any(f.file_name == "model_index.json" for rev in repo.revisions for f in rev.files)
    )


def available_models() -> list[str]:
    """Pipeline ids that load without a network: the toy world, architectures, and the hub cache."""
    return _toyworld_pipelines() + [f"arch/{name}" for name in ARCHITECTURES] + _cached_hub_pipelines()


def describe_models() -> list[tuple[str, str]]:
    """(id, description) of every model that loads without a network, the toy CLIP included."""
    rows = [(m, TOYWORLD_MODELS.get(m, "")) for m in _toyworld_pipelines()]
    if (TOYWORLD_DIR / "clip" / "config.json").is_file():
        rows.append(("toyworld/clip", TOYWORLD_MODELS["toyworld/clip"]))
    rows += [(f"arch/{name}", arch.description) for name, arch in ARCHITECTURES.items()]
    return rows + [(m, "Hugging Face cache") for m in _cached_hub_pipelines()]


@lru_cache(maxsize=1)
def _hub_reachable() -> bool:
    from huggingface_hub import constants

    host = urlparse(constants.ENDPOINT).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=2).close()
    except OSError:
        return False
    return True


def is_offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` is set or the hub cannot be reached (checked once, in seconds)."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes", "on"}:
        return True
    return not _hub_reachable()


# --- loading: a registry of id forms -----------------------------------------------------------------


@dataclass(frozen=True)
class ModelLoader:
    """One form of model id: ``matches(id)`` says whether an id has this form, ``load(id, device, dtype)``
    makes the pipeline. Either may be a "module:attribute" string, imported on first use, so a form whose
    code has heavy or optional dependencies costs nothing until an id of that form is loaded. A ``local``
    loader gives a diffusers pipeline (put on the device, cached); a non-local one gives a backend that
    chooses its own device (a server), not cached."""

    name: str
    matches: Callable[[str], bool] | str
    load: Callable[[str, torch.device, torch.dtype], object] | str
    local: bool = True

    def accepts(self, model_id: str) -> bool:
        return bool(_resolved(self.matches)(model_id))

    def build(self, model_id: str, device: torch.device, dtype: torch.dtype):
        return _resolved(self.load)(model_id, device, dtype)


def _resolved(target):
    """A callable, or the one a "module:attribute" string names (imported now)."""
    if not isinstance(target, str):
        return target
    module, _, attribute = target.partition(":")
    value = importlib.import_module(module)
    for part in attribute.split("."):
        value = getattr(value, part)
    return value


LOADERS: list[ModelLoader] = []


def register_loader(loader: ModelLoader, *, before: str | None = None) -> None:
    """Add an id form; ``before`` (a loader's name) puts it ahead of that one (forms are tried in order)."""
    if any(existing.name == loader.name for existing in LOADERS):
        raise ConfigError(f"a model loader named {loader.name!r} is already registered")
    names = [existing.name for existing in LOADERS]
    if before is not None and before not in names:
        raise ConfigError(f"no model loader named {before!r}; loaders: {names}")
    LOADERS.insert(names.index(before) if before else len(LOADERS), loader)


def loader_for(model_id: str) -> ModelLoader:
    """The first registered form that takes ``model_id``."""
    for loader in LOADERS:
        if loader.accepts(model_id):
            return loader
    raise UnknownModelError(
        model_id, f"no model loader takes it (forms: {[m.name for m in LOADERS]})", available_models()
    )


def _load_arch(model_id: str, device: torch.device, dtype: torch.dtype):
    if device.type == "cuda":  # built there in its dtype: FLUX's fp32 weights would need 67 GB of RAM first
        return build_architecture(model_id.removeprefix("arch/"), device=device, dtype=dtype)
    pipe = build_architecture(model_id.removeprefix("arch/"))
    return pipe.to(dtype=dtype) if dtype != torch.float32 else pipe


def _load_toyworld(model_id: str, device: torch.device, dtype: torch.dtype):
    folder = TOYWORLD_DIR / model_id.removeprefix("toyworld/")
    if not (folder / "model_index.json").is_file():
        is_clip = model_id == "toyworld/clip"
        reason = "a CLIP scorer, not a generation pipeline" if is_clip else "no toy world pipeline of that name"
        raise UnknownModelError(model_id, reason, available_models())
    return _from_pretrained(str(folder), dtype, local_only=True)


def _is_folder(model_id: str) -> bool:
    return Path(model_id).expanduser().is_dir()


def _load_folder(model_id: str, device: torch.device, dtype: torch.dtype):
    path = Path(model_id).expanduser()
    if not (path / "model_index.json").is_file():
        raise UnknownModelError(
            model_id, "the folder has no model_index.json (not a diffusers pipeline)", available_models()
        )
    return _from_pretrained(str(path), dtype, local_only=True)


def _load_hub(model_id: str, device: torch.device, dtype: torch.dtype):
    from huggingface_hub import try_to_load_from_cache
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(model_id)
    except HFValidationError:
        raise UnknownModelError(
            model_id, "neither a folder nor a valid hub id (owner/name)", available_models()
        ) from None
    offline = is_offline()
    if offline and not isinstance(try_to_load_from_cache(model_id, "model_index.json"), str):
        raise UnknownModelError(model_id, "offline, and not in the local Hugging Face cache", available_models())
    return _from_pretrained(model_id, dtype, local_only=offline)


def _from_pretrained(source: str, dtype: torch.dtype, *, local_only: bool):
    from diffusers import DiffusionPipeline

    return DiffusionPipeline.from_pretrained(source, dtype=dtype, local_files_only=local_only)


for _loader in (
    ModelLoader("remote", "workbench.client:is_remote_id", "workbench.client:RemoteModel.load", local=False),
    ModelLoader("lora", "workbench.checkpoints:parse_lora_id", "workbench.checkpoints:load_lora_id"),
    ModelLoader("arch", lambda m: m.startswith("arch/"), _load_arch),
    ModelLoader("toyworld", lambda m: m.startswith("toyworld/"), _load_toyworld),
    ModelLoader(
        "single-file", "workbench.checkpoints:parse_single_file_id", "workbench.checkpoints:load_single_file_id"
    ),
    ModelLoader("folder", _is_folder, _load_folder),
    ModelLoader("hub", lambda m: True, _load_hub),
):
    register_loader(_loader)


# Loading is serialised across threads: diffusers builds models under accelerate's init_empty_weights, which
# patches torch.nn.Module process-wide; two loads at once can leave it patched (every later model on "meta").
_LOAD_LOCK = threading.Lock()


def load_uncached(model_id: str, device: torch.device, dtype: torch.dtype):
    """A fresh pipeline for a local id form, on ``device``, ready to call (no cache); diffusers and transformers
    say as much as ``workbench.verbosity`` lets them."""
    apply_verbosity()
    with _LOAD_LOCK:
        pipe = loader_for(model_id).build(model_id, device, dtype)
    pipe = pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    pipe.workbench_model_id = model_id
    return pipe


def denoiser_slot(pipe) -> str:
    """The pipeline's name for its denoising network: "unet", or "transformer" (FLUX, SD3, PixArt, ...)."""
    for name in ("unet", "transformer"):
        if isinstance(getattr(pipe, name, None), torch.nn.Module):
            return name
    raise ConfigError(f"{type(pipe).__name__} has neither a unet nor a transformer")


def denoiser(pipe) -> torch.nn.Module:
    """The pipeline's denoising network: its UNet, or its transformer."""
    return getattr(pipe, denoiser_slot(pipe))


def separate_guidance_calls(pipe) -> bool:
    """Whether the pipeline runs classifier-free guidance's negative prompt as a denoiser call of its own
    (FLUX-type pipelines' ``true_cfg_scale``), not as half of one batch."""
    return "true_cfg_scale" in inspect.signature(type(pipe).__call__).parameters


def guidance_distilled(pipe) -> bool:
    """Whether a FLUX-type pipeline's transformer takes guidance as an embedding (FLUX.1-dev:
    ``guidance_embeds``) instead of classifier-free guidance: it has no use for a negative prompt."""
    net = getattr(pipe, "transformer", None)
    return separate_guidance_calls(pipe) and bool(getattr(getattr(net, "config", None), "guidance_embeds", False))


def model_id_of(pipe) -> str:
    """The id a pipeline was loaded under (its folder or hub name when not loaded by ``load``)."""
    return getattr(pipe, "workbench_model_id", None) or pipe.name_or_path


def pipeline_bytes(pipe) -> int:
    """Approximate memory of a pipeline: the bytes of all parameters and buffers of its modules."""
    total = 0
    for component in pipe.components.values():
        if isinstance(component, torch.nn.Module):
            tensors = [*component.parameters(), *component.buffers()]
            total += sum(t.numel() * t.element_size() for t in tensors)
    return total


# --- the cache ---------------------------------------------------------------------------------------


def _default_memory_budget() -> int:
    """Three quarters of the GPU's memory with CUDA, else half of this machine's RAM."""
    if torch.cuda.is_available():
        return int(0.75 * torch.cuda.get_device_properties(0).total_memory)
    return int(0.5 * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def _free_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


class PipelineCache:
    """Loaded pipelines, least recently used first out; bounded by count and by approximate bytes.

    A hit returns the very same pipeline object at no cost. An evicted pipeline's memory is freed
    once no one else holds a reference to it.
    """

    def __init__(self, max_items: int = 3, max_bytes: int | None = None):
        if max_items < 1:
            raise ConfigError(f"max_items must be >= 1, got {max_items!r}")
        self.max_items = max_items
        self.max_bytes = max_bytes if max_bytes is not None else _default_memory_budget()
        self._entries: OrderedDict[tuple, tuple[object, int]] = OrderedDict()
        self._lock = threading.RLock()
        self.hits = self.misses = self.evictions = 0

    def get_or_load(self, key: tuple, loader: Callable[[], object]):
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                self.hits += 1
                return self._entries[key][0]
            self.misses += 1
            pipe = loader()
            self._entries[key] = (pipe, pipeline_bytes(pipe))
            self._evict()
            return pipe

    def _evict(self) -> None:
        evicted = False
        while len(self._entries) > 1 and (len(self._entries) > self.max_items or self.nbytes > self.max_bytes):
            self._entries.popitem(last=False)
            self.evictions += 1
            evicted = True
        if evicted:
            _free_memory()

    @property
    def nbytes(self) -> int:
        return sum(size for _, size in self._entries.values())

    def keys(self) -> list[tuple]:
        return list(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            _free_memory()


default_cache = PipelineCache()


def load(
    model_id: str,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    *,
    cache: PipelineCache | None = default_cache,
):
    """A ready-to-call diffusers pipeline for ``model_id`` (see the module docstring for ids).

    ``device`` defaults to cuda > mps > cpu, ``dtype`` to fp16 on a GPU and fp32 on the CPU. Pipelines
    are cached by (id, device, dtype); pass ``cache=None`` for a private, uncached copy.
    """
    if not isinstance(model_id, str) or not model_id.strip():
        raise UnknownModelError(str(model_id), "a model id must be a non-empty string", available_models())
    loader = loader_for(model_id)
    if not loader.local:  # a server: it chooses device and dtype
        return loader.build(model_id, None, None)
    device = pick_device(device)
    dtype = pick_dtype(dtype, device)
    if cache is None:
        return load_uncached(model_id, device, dtype)
    return cache.get_or_load((model_id, str(device), str(dtype)), lambda: load_uncached(model_id, device, dtype))
