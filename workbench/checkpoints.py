"""Two model-id forms that users of other tools expect: single-file checkpoints and LoRA adapters.

::

    path/to/model.safetensors                  a single-file checkpoint in the original Stable Diffusion (LDM)
    path/to/model.ckpt?config=CONFIG           layout, as shared on Civitai; CONFIG is a pipeline of the same
                                               architecture in diffusers format (toyworld/<name>, a local folder
                                               or a hub id), whose configs, tokenizer and scheduler are used
    BASE+lora:PATH@SCALE+lora:PATH2            LoRA adapters (a .safetensors file or a folder) fused into the
                                               pipeline of any other id BASE; @SCALE is optional (default 1.0)

Without ``?config=``, diffusers picks the hub pipeline of the checkpoint's kind (SD 1.5, SD 2, SDXL...) for
its configs; offline, that works only when those configs are in the local Hugging Face cache.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from workbench.errors import ConfigError, UnknownModelError
from workbench.models import TOYWORLD_DIR, available_models, is_offline, loader_for

__all__ = [
    "LORA_FORM",
    "LORA_MARK",
    "SINGLE_FILE_SUFFIXES",
    "apply_loras",
    "load_single_file",
    "parse_lora_id",
    "parse_single_file_id",
]

SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt")
LORA_MARK = "+lora:"
LORA_FORM = "BASE+lora:PATH[@SCALE] (several '+lora:PATH[@SCALE]' parts allowed; SCALE a number, default 1.0)"
_CONFIG_FORM = "path/to/model.safetensors?config=CONFIG (CONFIG: toyworld/<name>, a diffusers folder or a hub id)"


# --- single-file checkpoints -------------------------------------------------------------------------


def parse_single_file_id(model_id: str) -> tuple[str, str | None] | None:
    """(checkpoint path, config or None) for a single-file id; None when ``model_id`` is not one."""
    if LORA_MARK in model_id:
        return None
    path, question_mark, query = model_id.partition("?")
    if not path.lower().endswith(SINGLE_FILE_SUFFIXES):
        return None
    if not question_mark:
        return path, None
    key, _, config = query.partition("=")
    if key != "config" or not config.strip():
        raise ConfigError(f"bad single-file id {model_id!r}: after '?' only 'config=CONFIG' is allowed: {_CONFIG_FORM}")
    return path, config


def load_single_file(path: str, device: torch.device, dtype: torch.dtype, config: str | None = None):
    """A diffusers pipeline from a single-file checkpoint, through diffusers' ``from_single_file``.

    ``config`` names a pipeline of the same architecture in diffusers format (toyworld/<name>, a local
    folder or a hub id); None lets diffusers pick one from the checkpoint's kind (offline: from the cache).
    """
    from diffusers.loaders.single_file_utils import SingleFileComponentError

    if not Path(path).expanduser().is_file():
        raise UnknownModelError(path, "no such single-file checkpoint (.safetensors or .ckpt file)", available_models())
    path = str(Path(path).expanduser())
    folder = _config_folder(path, config)
    pipeline_class = _single_file_class(folder)
    try:
        pipe = pipeline_class.from_single_file(path, config=folder, dtype=dtype, local_files_only=True)
    except (SingleFileComponentError, ValueError, RuntimeError, KeyError) as error:
        raise ConfigError(
            f"the checkpoint {path!r} does not fit the pipeline configs of {config or folder!r} ({error}); "
            f"name configs of the same architecture: {_CONFIG_FORM}"
        ) from error
    pipe = pipe.to(device)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _config_folder(path: str, config: str | None) -> str:
    """A local folder with the diffusers configs for the checkpoint at ``path``."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError, LocalEntryNotFoundError, RepositoryNotFoundError

    if config is None:
        from diffusers.loaders.single_file_utils import fetch_diffusers_config, load_single_file_checkpoint

        checkpoint = load_single_file_checkpoint(path, local_files_only=True)
        hub_id = fetch_diffusers_config(checkpoint)["pretrained_model_name_or_path"]
    elif config.startswith("toyworld/"):
        folder = TOYWORLD_DIR / config.removeprefix("toyworld/")
        if not (folder / "model_index.json").is_file():
            names = sorted(f"toyworld/{p.parent.name}" for p in TOYWORLD_DIR.glob("*/model_index.json"))
            raise ConfigError(f"config {config!r} is not a toy world pipeline; toy world pipelines: {names}")
        return str(folder)
    elif Path(config).expanduser().is_dir():
        folder = Path(config).expanduser()
        if not (folder / "model_index.json").is_file():
            raise ConfigError(f"config {config!r} has no model_index.json: it must be a diffusers pipeline folder")
        return str(folder)
    else:
        hub_id = config
    patterns = ["*.json", "**/*.json", "*.txt", "**/*.txt", "**/*.model"]  # what diffusers itself fetches
    try:
        return snapshot_download(hub_id, allow_patterns=patterns, local_files_only=is_offline())
    except (HFValidationError, LocalEntryNotFoundError, RepositoryNotFoundError) as error:
        if isinstance(error, HFValidationError):
            where = "nor a hub id"
        else:
            where = "nor in the local Hugging Face cache (offline)" if is_offline() else "nor on the hub"
        guessed = " (diffusers' guess from the checkpoint's kind)" if config is None else ""
        raise ConfigError(
            f"single-file checkpoint {path!r} needs diffusers configs; {hub_id!r}{guessed} is neither a folder "
            f"here {where}. Name configs of the same architecture: {_CONFIG_FORM}"
        ) from None


def _single_file_class(folder: str):
    """The pipeline class named by ``folder``'s model_index.json, if it loads single files."""
    import diffusers

    name = json.loads((Path(folder) / "model_index.json").read_text()).get("_class_name", "")
    pipeline_class = getattr(diffusers, name, None)
    if not (isinstance(pipeline_class, type) and issubclass(pipeline_class, diffusers.loaders.FromSingleFileMixin)):
        raise ConfigError(f"config {folder!r} is a {name!r} pipeline, which diffusers cannot load from a single file")
    return pipeline_class


# --- LoRA adapters -------------------------------------------------------------------------------


def parse_lora_id(model_id: str) -> tuple[str, list[tuple[str, float]]] | None:
    """(base id, [(adapter path, scale), ...]) for a LoRA id; None when ``model_id`` is not one."""
    if LORA_MARK not in model_id:
        return None
    base, *parts = model_id.split(LORA_MARK)
    if not base.strip():
        raise ConfigError(f"LoRA id {model_id!r} has no base model before {LORA_MARK!r}; the form is {LORA_FORM}")
    loras = []
    for part in parts:
        path, scale = part, 1.0
        if "@" in part:
            path, _, text = part.rpartition("@")
            try:
                scale = float(text)
            except ValueError:
                scale = math.nan
            if not math.isfinite(scale):
                raise ConfigError(f"LoRA scale {text!r} in {model_id!r} is not a number; the form is {LORA_FORM}")
        if not path.strip():
            raise ConfigError(f"LoRA part {part!r} of {model_id!r} has an empty path; the form is {LORA_FORM}")
        if not Path(path).expanduser().exists():
            raise ConfigError(
                f"LoRA path {path!r} in {model_id!r} is neither a file nor a folder here; the form is {LORA_FORM}"
            )
        loras.append((str(Path(path).expanduser()), scale))
    return base, loras


def apply_loras(pipe, loras: list[tuple[str, float]]):
    """Fuse each LoRA (path, scale) into ``pipe``'s weights, in place, and return ``pipe``.

    The adapters are loaded with ``load_lora_weights``, weighted with ``set_adapters``, fused, and their
    layers removed: the pipeline is left with its plain modules (same speed, memory and acceleration
    toggles as its base). Apply them to a private copy (``load(base, cache=None)``), never a cached one.
    """
    if not hasattr(pipe, "load_lora_weights"):
        raise ConfigError(f"a {type(pipe).__name__} does not take LoRA adapters")
    if not loras:
        return pipe
    names = [f"lora_{i}" for i in range(len(loras))]
    for name, (path, _) in zip(names, loras, strict=True):
        try:
            pipe.load_lora_weights(path, adapter_name=name)
        except (ValueError, RuntimeError, KeyError, OSError) as error:
            raise ConfigError(f"LoRA {path!r} could not be loaded onto a {type(pipe).__name__}: {error}") from error
        if not any(name in adapters for adapters in pipe.get_list_adapters().values()):
            raise ConfigError(f"LoRA {path!r} has no weights that fit a {type(pipe).__name__}")
    pipe.set_adapters(names, adapter_weights=[scale for _, scale in loras])
    pipe.fuse_lora(adapter_names=names)
    pipe.unload_lora_weights()
    return pipe


def load_single_file_id(model_id: str, device: torch.device, dtype: torch.dtype):
    """The model-id registry's loader for single-file ids (``path.safetensors[?config=CONFIG]``)."""
    path, config = parse_single_file_id(model_id)
    return load_single_file(path, device, dtype, config)


def load_lora_id(model_id: str, device: torch.device, dtype: torch.dtype):
    """The model-id registry's loader for ``BASE+lora:PATH[@SCALE]``: a fresh copy of the base with the
    adapters fused in (the cached base is never changed)."""
    base, loras = parse_lora_id(model_id)
    loader = loader_for(base)
    if not loader.local:
        raise ConfigError(f"a LoRA needs a local base model, got {base!r} ({loader.name}); the form is {LORA_FORM}")
    return apply_loras(loader.build(base, device, dtype), loras)
