"""Settings as frozen, validated dataclasses that round-trip to dict, JSON and YAML; and ``ROUTED``, how a
Router is named where a model id would be (defined here, below both ``plan`` and ``routing``)."""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import yaml

from workbench.errors import ConfigError

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = [
    "ATTENTION_BACKENDS",
    "AUTO_BATCH_SIZE",
    "ROUTED",
    "SCHEDULERS",
    "TRANSFORMER_CACHES",
    "AccelerationConfig",
    "GenerationConfig",
    "RouteSpec",
]

# Scheduler names a config may use, and the diffusers class each stands for.
SCHEDULERS = {
    "ddim": "DDIMScheduler",
    "ddpm": "DDPMScheduler",
    "dpm++": "DPMSolverMultistepScheduler",
    "euler": "EulerDiscreteScheduler",
    "euler_a": "EulerAncestralDiscreteScheduler",
    "heun": "HeunDiscreteScheduler",
    "lms": "LMSDiscreteScheduler",
    "pndm": "PNDMScheduler",
    "unipc": "UniPCMultistepScheduler",
}

# Attention implementations a UNet can use: diffusers' processors, and SDPA with one kernel forced.
ATTENTION_BACKENDS = ("sdpa", "eager", "sdpa-math", "sdpa-flash", "sdpa-efficient", "xformers")
DTYPES = ("float32", "float16", "bfloat16")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")

# The transformer caches (diffusers' CacheMixin.enable_cache takes one at a time).
TRANSFORMER_CACHES = (
    "first_block_cache",
    "taylorseer_interval",
    "faster_cache_interval",
    "pab_interval",
    "mag_cache",
)

MAX_SIDE = 4096
MAX_STEPS = 1000
AUTO_BATCH_SIZE = "auto"  # a batch size the evaluation engine picks by a probe (workbench.batch_probe)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class _Settings:
    """What every settings dataclass can do: a validated copy with changes, and dict/JSON/YAML round trips."""

    def replace(self, **changes: Any) -> Self:
        """A copy with some fields changed (validated again)."""
        _check_fields(type(self), changes)
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        if not isinstance(data, dict):
            raise ConfigError(f"{cls.__name__} needs a mapping, got {type(data).__name__}: {data!r}")
        _check_fields(cls, data)
        return cls(**data)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Self:
        return cls.from_dict(json.loads(text))

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    @classmethod
    def from_yaml(cls, text: str) -> Self:
        return cls.from_dict(yaml.safe_load(text) or {})


@dataclass(frozen=True)
class GenerationConfig(_Settings):
    """How to sample one image; ``None`` means "the model's own default" (its native size, its scheduler)."""

    steps: int = 20  # denoising steps
    guidance: float = 5.0  # classifier-free guidance scale; <= 1 disables guidance
    width: int | None = None  # pixels, a multiple of 8
    height: int | None = None
    negative_prompt: str | None = None
    scheduler: str | None = None  # a key of SCHEDULERS
    batch_size: int | str = 1  # images per pipeline call, or "auto" (the engine picks); images move within 2/255

    def __post_init__(self) -> None:
        if not _is_int(self.steps) or not 1 <= self.steps <= MAX_STEPS:
            raise ConfigError(f"steps must be an integer from 1 to {MAX_STEPS}, got {self.steps!r}", "steps")
        if (
            isinstance(self.guidance, bool)
            or not isinstance(self.guidance, (int, float))
            or not 0 <= self.guidance <= 100
        ):
            raise ConfigError(f"guidance must be a number from 0 to 100, got {self.guidance!r}", "guidance")
        object.__setattr__(self, "guidance", float(self.guidance))
        for name in ("width", "height"):
            value = getattr(self, name)
            if value is not None and (not _is_int(value) or value % 8 or not 8 <= value <= MAX_SIDE):
                raise ConfigError(
                    f"{name} must be a multiple of 8 from 8 to {MAX_SIDE} (or None for the "
                    f"model's default), got {value!r}",
                    name,
                )
        if self.negative_prompt is not None and not isinstance(self.negative_prompt, str):
            raise ConfigError(
                f"negative_prompt must be a string or None, got {self.negative_prompt!r}", "negative_prompt"
            )
        if self.scheduler is not None and self.scheduler not in SCHEDULERS:
            raise ConfigError(
                f"scheduler must be one of {sorted(SCHEDULERS)} (or None for the model's own), got {self.scheduler!r}",
                "scheduler",
            )
        if self.batch_size != AUTO_BATCH_SIZE and (not _is_int(self.batch_size) or self.batch_size < 1):
            raise ConfigError(f"batch_size must be an integer >= 1 or 'auto', got {self.batch_size!r}", "batch_size")


@dataclass(frozen=True)
class AccelerationConfig(_Settings):
    """Speed toggles for a pipeline (``acceleration.accelerate`` applies them and undoes them all).
    The defaults change nothing."""

    tome_ratio: float = 0.0  # ToMe: share of tokens merged in self-attention (0 = off; 0.5 is common)
    tome_max_downsample: int = 1  # ToMe acts at latent levels downsampled at most this much (1, 2, 4, 8)
    deepcache_interval: int = 1  # DeepCache: recompute the deep UNet features every N steps (1 = off)
    deepcache_branch: int = 0  # DeepCache: the skip branch that stays live (0 = the shallowest)
    compile: bool = False  # torch.compile the UNet and the VAE decoder
    compile_mode: str = "default"
    dtype: str | None = None  # cast the pipeline (None = as loaded)
    attention_backend: str = "sdpa"  # a name in ATTENTION_BACKENDS
    channels_last: bool = False  # the UNet's memory format
    vae_tiling: bool = False  # decode in tiles (vae.enable_tiling): less memory for large images
    vae_slicing: bool = False  # decode a batch one image at a time (vae.enable_slicing)
    cpu_offload: bool = False  # keep only the running model on the GPU (needs CUDA)
    tgate_step: int = 0  # T-GATE (UNets): from this step on, reuse cached cross-attention, no guidance (0 = off)
    # Caches for transformers with diffusers' CacheMixin (FLUX, Qwen-Image, ...); at most one at a time.
    first_block_cache: float = 0.0  # first-block cache: reuse the other blocks' residual while the first block's
    # output changes by less than this share from the last computed step (0 = off; 0.05-0.3 is common)
    taylorseer_interval: int = 1  # TaylorSeer: compute every N steps, predict between by Taylor series (1 = off)
    faster_cache_interval: int = 1  # FasterCache: recompute attention every N steps, extrapolate between (1 = off)
    pab_interval: int = 1  # pyramid attention broadcast: recompute attention every N steps, reuse between (1 = off)
    mag_cache: float = 0.0  # MagCache: skip steps while the error predicted from the residual's magnitude ratios
    # stays under this (0 = off; 0.06-0.24 is common)
    mag_ratios: tuple[float, ...] = ()  # MagCache's ratios per step (empty = the model's own: workbench.mag_cache)

    def __post_init__(self) -> None:
        _check_number(self, "tome_ratio", 0.0, 0.99)
        _check_number(self, "first_block_cache", 0.0, 10.0)
        _check_number(self, "mag_cache", 0.0, 10.0)
        self._check_mag_ratios()
        for name in ("taylorseer_interval", "faster_cache_interval", "pab_interval"):
            if not _is_int(getattr(self, name)) or not 1 <= getattr(self, name) <= 50:
                raise ConfigError(f"{name} must be an integer from 1 to 50, got {getattr(self, name)!r}", name)
        if not _is_int(self.tgate_step) or not 0 <= self.tgate_step <= MAX_STEPS:
            raise ConfigError(
                f"tgate_step must be an integer from 0 (off) to {MAX_STEPS}, got {self.tgate_step!r}", "tgate_step"
            )
        if self.tome_max_downsample not in (1, 2, 4, 8):
            raise ConfigError(
                f"tome_max_downsample must be 1, 2, 4 or 8, got {self.tome_max_downsample!r}", "tome_max_downsample"
            )
        if not _is_int(self.deepcache_interval) or not 1 <= self.deepcache_interval <= 50:
            raise ConfigError(
                f"deepcache_interval must be an integer from 1 to 50, got {self.deepcache_interval!r}",
                "deepcache_interval",
            )
        if not _is_int(self.deepcache_branch) or not 0 <= self.deepcache_branch <= 11:
            raise ConfigError(
                f"deepcache_branch must be an integer from 0 to 11, got {self.deepcache_branch!r}", "deepcache_branch"
            )
        for name, allowed in (
            ("compile_mode", COMPILE_MODES),
            ("attention_backend", ATTENTION_BACKENDS),
            ("dtype", (None, *DTYPES)),
        ):
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{name} must be one of {list(allowed)}, got {getattr(self, name)!r}", name)
        for name in ("compile", "channels_last", "vae_tiling", "vae_slicing", "cpu_offload"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be true or false, got {getattr(self, name)!r}", name)
        caches = self._transformer_caches()
        if len(caches) > 1:
            raise ConfigError(f"one transformer cache at a time (diffusers applies one), got {caches}", caches[1])

    def _check_mag_ratios(self) -> None:
        ratios = self.mag_ratios
        ratios = ratios.tolist() if hasattr(ratios, "tolist") else ratios  # a tensor or array, e.g. FLUX_MAG_RATIOS
        if (
            not isinstance(ratios, (list, tuple))
            or len(ratios) > MAX_STEPS
            or not all(isinstance(r, numbers.Real) and not isinstance(r, bool) and 0 < r < math.inf for r in ratios)
        ):
            raise ConfigError(
                f"mag_ratios must be positive numbers, one per step (at most {MAX_STEPS}), got {self.mag_ratios!r}",
                "mag_ratios",
            )
        if ratios and (len(ratios) < 2 or not self.mag_cache):
            raise ConfigError(
                f"mag_ratios are MagCache's, one per step (at least 2): set mag_cache > 0 with them, got "
                f"{len(ratios)} ratios and mag_cache={self.mag_cache}",
                "mag_ratios",
            )
        object.__setattr__(self, "mag_ratios", tuple(float(r) for r in ratios))

    def changes(self) -> dict[str, Any]:
        """The fields that differ from the defaults (what this config turns on)."""
        default = AccelerationConfig()
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if getattr(self, f.name) != getattr(default, f.name)
        }

    def _transformer_caches(self) -> list[str]:
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        return [name for name in TRANSFORMER_CACHES if getattr(self, name) != defaults[name]]

    @property
    def transformer_cache(self) -> str | None:
        """The name of the transformer cache this config turns on (None for none)."""
        return next(iter(self._transformer_caches()), None)

    @property
    def batch_dependent(self) -> bool:
        """Whether an image depends on the other images of its pipeline call: the first-block cache decides
        per call from the batch's mean residual."""
        return self.first_block_cache > 0

    def label(self) -> str:
        """A short name: "baseline", or the changes ("deepcache_interval=3, channels_last")."""
        shown = {k: v for k, v in self.changes().items() if k != "mag_ratios"}  # data: in the record, not the name
        parts = [k if v is True else f"{k}={v}" for k, v in shown.items()]
        return ", ".join(parts) or "baseline"


def _check_number(obj, name: str, low: float, high: float) -> None:
    value = getattr(obj, name)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise ConfigError(f"{name} must be a number from {low} to {high}, got {value!r}", name)
    object.__setattr__(obj, name, float(value))


ROUTED = "routed"  # how a Router is named in result rows, study parameters and the CLI


@dataclass(frozen=True)
class RouteSpec:
    """Where one kind of prompt goes: a model id and the settings to use with it (a route table's row)."""

    name: str
    model_id: str
    config: GenerationConfig = GenerationConfig()
    description: str = ""
    examples: tuple[str, ...] = ()  # prompts this route is for (shown to users; fit the embedding classifier)

    def __post_init__(self) -> None:
        for field in ("name", "model_id"):
            value = getattr(self, field)
            if not isinstance(value, str) or not value.strip():
                raise ConfigError(f"{field} must be a non-empty string, got {value!r}", field)
        if not isinstance(self.config, GenerationConfig):
            raise ConfigError(f"config must be a GenerationConfig, got {type(self.config).__name__}", "config")
        object.__setattr__(self, "examples", tuple(self.examples))


def _check_fields(cls: type, data: dict[str, Any]) -> None:
    allowed = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise ConfigError(f"unknown {cls.__name__} field(s) {unknown}; allowed: {allowed}", unknown[0])
