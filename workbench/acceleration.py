"""Acceleration toggles on a diffusers pipeline, applied for a block and undone after it.

``accelerate_pipeline(pipe, AccelerationConfig(...))`` is a context manager (``workbench.accelerate`` is the
entry point for any backend, which calls it for a local pipeline): on entry it applies the UNet methods
(ToMe through tomesd, DeepCache, T-GATE), a transformer cache (diffusers' first-block cache, TaylorSeer,
FasterCache, pyramid attention broadcast or MagCache), torch.compile, a dtype, an attention backend,
channels-last, VAE tiling/slicing and CPU offload; on exit it undoes each, so the pipeline then makes
bit-identical images to before. Methods made for the other kind of denoiser, and known pitfalls, are refused
with a clear error before anything is changed. Images generated inside the block record the toggles (the
``acceleration`` column of their rows).

``workbench.acceleration_benchmark`` measures the toggles' speed against quality (``workbench.flops``: how
close a time per image is to what the hardware could do).
"""

from __future__ import annotations

import contextlib
import importlib.util
import shutil
from collections.abc import Iterator

import torch

from workbench.config import AccelerationConfig
from workbench.errors import ConfigError
from workbench.mag_cache import mag_ratios_for
from workbench.models import denoiser, denoiser_slot, model_id_of, separate_guidance_calls

__all__ = [
    "accelerate_pipeline",
    "active_acceleration",
    "check_guidance",
    "check_scheduler",
    "prepare_call",
    "step_end_hooks",
]

ACTIVE = "_workbench_acceleration"  # the pipeline attribute naming the config applied to it
STEP_HOOKS = "_workbench_step_hooks"  # the pipeline attribute holding what must run at each step's end
TOME_SEED = 0  # what seeds ToMe's token partitions, afresh for every pipeline call


def active_acceleration(pipe) -> AccelerationConfig | None:
    """The config an enclosing ``accelerate`` block applied to ``pipe`` (None outside one)."""
    return getattr(pipe, ACTIVE, None)


def check_scheduler(pipe, scheduler) -> None:
    """DeepCache, T-GATE and MagCache count steps by the denoiser's calls or timesteps; a scheduler that calls it
    twice a step (Heun, KDPM2: order > 1) would make them reuse the wrong features or skip the wrong steps."""
    config = active_acceleration(pipe)
    if config is None or getattr(scheduler, "order", 1) == 1:
        return
    counted = {
        "DeepCache": config.deepcache_interval > 1,
        "T-GATE": config.tgate_step > 0,
        "MagCache": config.mag_cache > 0,
    }
    for name, on in counted.items():
        if on:
            raise ConfigError(
                f"{name} cannot run with {type(scheduler).__name__}: it repeats timesteps (order "
                f"{scheduler.order}); use a single-step scheduler (dpm++, euler, ddim, unipc, ...)"
            )


def check_guidance(pipe, true_cfg_scale: float) -> None:
    """FasterCache and pyramid attention broadcast keep one state for all the transformer's calls; under
    true CFG (FLUX-type pipelines, guidance > 1) the negative prompt is a call of its own, and they would
    serve it the prompt's attention."""
    config = active_acceleration(pipe)
    cache = config.transformer_cache if config else None
    if cache in ("faster_cache_interval", "pab_interval") and true_cfg_scale > 1:
        raise ConfigError(
            f"{cache} cannot run under guidance {true_cfg_scale} on {model_id_of(pipe)}: its negative prompt is a "
            f"transformer call of its own (true CFG), and the cache keeps one state for both calls; use guidance "
            f"<= 1, or first_block_cache / taylorseer_interval / mag_cache (a state per branch)"
        )


def step_end_hooks(pipe) -> list:
    """What an enclosing ``accelerate`` block needs called at each step's end (T-GATE): objects with
    ``step_end(pipeline, step, timestep, callback_kwargs) -> callback_kwargs`` and ``tensor_inputs``."""
    return list(getattr(pipe, STEP_HOOKS, ()))


# --- guards -----------------------------------------------------------------------------------------


def _attention_levels(unet) -> list[int]:
    """The downsampling factors (1, 2, 4, ...) of the down blocks that have attention."""
    return [2**i for i, block in enumerate(unet.down_blocks) if getattr(block, "attentions", None)]


# Toggles made for UNets, by the names users know them by.
UNET_TOGGLES = {
    "tome_ratio": "ToMe",
    "deepcache_interval": "DeepCache",
    "tgate_step": "T-GATE",
    "channels_last": "channels-last (it changes only convolutions)",
}


def _check_denoiser(pipe, config: AccelerationConfig) -> None:
    """Refuse toggles made for the other kind of denoiser: UNet methods on a transformer, transformer caches on
    a UNet or on a transformer without diffusers' CacheMixin."""
    from diffusers.models.cache_utils import CacheMixin

    net = denoiser(pipe)
    kind = type(net).__name__
    changes = config.changes()
    if denoiser_slot(pipe) != "unet":
        unet_only = [label for name, label in UNET_TOGGLES.items() if name in changes]
        if config.attention_backend in ("eager", "xformers"):
            unet_only.append(f"attention_backend {config.attention_backend!r} (a UNet attention processor)")
        if unet_only:
            raise ConfigError(f"{', '.join(unet_only)} apply to UNets; this pipeline denoises with a {kind}")
    cache = config.transformer_cache
    if cache is None:
        return
    if not isinstance(net, CacheMixin):
        raise ConfigError(
            f"{cache} is a cache for transformers with diffusers' CacheMixin (FLUX, Qwen-Image, HunyuanImage, ...); "
            f"this pipeline's {kind} has none"
        )
    if net.is_cache_enabled:
        raise ConfigError(f"this {kind} already has a cache enabled ({type(net._cache_config).__name__}); disable it")
    if config.compile:
        raise ConfigError(f"{cache} and torch.compile do not combine here: the cache's hooks decide per step in Python")
    if cache == "mag_cache" and not config.mag_ratios:
        raise ConfigError(
            f"mag_cache needs magnitude ratios measured for {model_id_of(pipe)} (none are known for it): "
            f"ratios = workbench.calibrate_mag_ratios(pipe, prompts), then AccelerationConfig(mag_cache=..., "
            f"mag_ratios=ratios)"
        )


def _check(pipe, config: AccelerationConfig) -> None:
    """Refuse known pitfalls before anything is changed."""
    device = pipe.device
    _check_denoiser(pipe, config)
    for needed, package in ((config.tome_ratio, "tomesd"), (config.deepcache_interval > 1, "DeepCache")):
        if needed and importlib.util.find_spec(package) is None:
            raise ConfigError(f"{package} is not installed: pip install 't2i-workbench[acceleration]'")
    if config.tome_ratio:
        levels = _attention_levels(pipe.unet)
        if not any(level <= config.tome_max_downsample for level in levels):
            raise ConfigError(
                f"ToMe at tome_max_downsample={config.tome_max_downsample} would change nothing: this UNet has "
                f"attention only at downsampling {levels}; raise tome_max_downsample to {min(levels)}"
            )
        if config.compile:
            raise ConfigError("ToMe and torch.compile do not combine: tomesd's patched blocks break the compiled graph")
    if config.tgate_step:
        for on, name in ((config.deepcache_interval > 1, "DeepCache"), (config.compile, "torch.compile")):
            if on:
                raise ConfigError(
                    f"T-GATE and {name} do not combine: T-GATE's processors keep state from step to step"
                    + (" and DeepCache skips the blocks they cache" if name == "DeepCache" else "")
                )
    if config.deepcache_interval > 1:
        if config.compile:
            raise ConfigError("DeepCache and torch.compile do not combine: DeepCache swaps module forwards per step")
        if config.cpu_offload or hasattr(pipe.unet, "_hf_hook"):
            raise ConfigError(
                "DeepCache cannot wrap a pipeline with CPU offload (its hooks must be installed after DeepCache's); "
                "turn cpu_offload off, or reload the pipeline without offload"
            )
        check_scheduler(pipe, pipe.scheduler)
    if config.compile:
        if device.type == "mps":
            raise ConfigError("torch.compile is not supported on MPS; use compile=False there")
        if device.type == "cpu" and not (shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")):
            raise ConfigError("torch.compile on the CPU needs a C++ compiler (c++, g++ or clang++) on the PATH")
    if config.cpu_offload and device.type != "cuda":
        raise ConfigError(f"cpu_offload needs the pipeline on a CUDA device, it is on {device}")
    if config.dtype == "float16" and device.type == "cpu":
        raise ConfigError("float16 on the CPU is slow and unsupported by some layers; use bfloat16 or float32")
    if config.attention_backend == "xformers":
        try:
            import xformers  # noqa: F401
        except ImportError:
            raise ConfigError("attention_backend 'xformers' needs the xformers package") from None
    if config.attention_backend in ("sdpa-flash", "sdpa-efficient") and device.type != "cuda":
        raise ConfigError(f"attention_backend {config.attention_backend!r} needs CUDA; on {device} use sdpa or eager")


# --- applying and undoing ---------------------------------------------------------------------------


def _cache_config(pipe, config: AccelerationConfig, steps: int | None = None):
    """The diffusers cache config for ``config``'s transformer cache (MagCache's for calls of ``steps`` steps:
    its ratios interpolated to them; by default as many as it has ratios)."""
    from diffusers import (
        FasterCacheConfig,
        FirstBlockCacheConfig,
        MagCacheConfig,
        PyramidAttentionBroadcastConfig,
        TaylorSeerCacheConfig,
    )

    def timestep() -> int:  # FasterCache and PAB choose the steps to skip by the denoising timestep
        return pipe.current_timestep

    if config.first_block_cache:
        return FirstBlockCacheConfig(threshold=config.first_block_cache)
    if config.mag_cache:
        ratios = list(config.mag_ratios)
        return MagCacheConfig(threshold=config.mag_cache, mag_ratios=ratios, num_inference_steps=steps or len(ratios))
    if config.taylorseer_interval > 1:
        return TaylorSeerCacheConfig(cache_interval=config.taylorseer_interval, taylor_factors_dtype=torch.float32)
    if config.faster_cache_interval > 1:
        return FasterCacheConfig(
            spatial_attention_block_skip_range=config.faster_cache_interval,
            current_timestep_callback=timestep,
            attention_weight_callback=lambda _: 0.5,
            # no batch halves to skip where the negative prompt is a call of its own (check_guidance)
            is_guidance_distilled=separate_guidance_calls(pipe),
        )
    return PyramidAttentionBroadcastConfig(
        spatial_attention_block_skip_range=config.pab_interval, current_timestep_callback=timestep
    )


def prepare_call(pipe, steps: int) -> None:
    """Before each pipeline call of ``steps`` steps: seed ToMe's generator with ``TOME_SEED`` (tomesd would fork
    torch's global one, and carry it on from call to call), so a ToMe image depends only on its settings and
    seed; clear a transformer cache's state, so no call reuses another's residuals; MagCache is set up again
    for a step count other than its last call's."""
    config = active_acceleration(pipe)
    if config is None:
        return
    if config.tome_ratio:
        device = pipe._execution_device  # where tomesd draws: a generator on another device it would replace
        generator = torch.Generator(device if device.type == "cuda" else "cpu").manual_seed(TOME_SEED)
        pipe.unet._tome_info["args"]["generator"] = generator
    if not config.transformer_cache:
        return
    net = denoiser(pipe)
    if config.mag_cache and net._cache_config.num_inference_steps != steps:
        net.disable_cache()
        net.enable_cache(_cache_config(pipe, config, steps))
    net._reset_stateful_cache()


def _processor(name: str):
    from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0, XFormersAttnProcessor

    if name == "eager":
        return AttnProcessor()
    if name == "xformers":
        return XFormersAttnProcessor()
    return AttnProcessor2_0()


def _sdpa_kernel(name: str):
    from torch.nn.attention import SDPBackend, sdpa_kernel

    kernels = {"sdpa-math": SDPBackend.MATH, "sdpa-flash": SDPBackend.FLASH_ATTENTION}
    kernels["sdpa-efficient"] = SDPBackend.EFFICIENT_ATTENTION
    return sdpa_kernel([kernels[name]]) if name in kernels else contextlib.nullcontext()


def _modules(pipe) -> dict[str, torch.nn.Module]:
    return {name: c for name, c in pipe.components.items() if isinstance(c, torch.nn.Module)}


@contextlib.contextmanager
def accelerate_pipeline(pipe, config: AccelerationConfig) -> Iterator[AccelerationConfig]:
    """Apply ``config`` to the diffusers pipeline ``pipe`` for the block and undo every toggle on exit (even
    after an error). ``workbench.generation.accelerate`` is the entry point for any backend."""
    if active_acceleration(pipe) is not None:
        raise ConfigError(f"this pipeline is already accelerated ({active_acceleration(pipe).label()}); nest no blocks")
    if config.mag_cache and not config.mag_ratios:  # the model's own ratios, recorded with its images
        config = config.replace(mag_ratios=mag_ratios_for(pipe) or ())
    _check(pipe, config)
    undo: list = []
    try:
        with contextlib.ExitStack() as stack:
            stack.callback(lambda: [step() for step in reversed(undo)])
            _apply(pipe, config, undo)
            stack.enter_context(_sdpa_kernel(config.attention_backend))
            setattr(pipe, ACTIVE, config)
            undo.append(lambda: delattr(pipe, ACTIVE))
            yield config
    finally:
        undo.clear()


def _apply(pipe, config: AccelerationConfig, undo: list) -> None:
    """Apply each toggle, appending how to undo it to ``undo`` as soon as it is in place."""
    # 1. dtype: keep the original tensors, so undoing restores the very same weights (no round trip).
    if config.dtype:
        saved = {
            name: [(p, p.data) for p in m.parameters()] + [(b, b.data) for b in m.buffers()]
            for name, m in _modules(pipe).items()
        }
        pipe.to(dtype=getattr(torch, config.dtype))
        undo.append(lambda: [setattr(t, "data", data) for pairs in saved.values() for t, data in pairs])
    # 2. Attention processors and memory format.
    if config.attention_backend in ("eager", "xformers"):
        original = dict(pipe.unet.attn_processors)
        pipe.unet.set_attn_processor(_processor(config.attention_backend))
        undo.append(lambda: pipe.unet.set_attn_processor(original))
    if config.channels_last:
        pipe.unet.to(memory_format=torch.channels_last)
        undo.append(lambda: pipe.unet.to(memory_format=torch.contiguous_format))
    # 3. VAE decoding.
    vae = pipe.vae
    if config.vae_tiling and not vae.use_tiling:
        vae.enable_tiling()
        undo.append(vae.disable_tiling)
    if config.vae_slicing and not vae.use_slicing:
        vae.enable_slicing()
        undo.append(vae.disable_slicing)
    # 4. Token merging.
    if config.tome_ratio:
        import tomesd

        tomesd.apply_patch(pipe, ratio=config.tome_ratio, max_downsample=config.tome_max_downsample)
        undo.append(lambda: tomesd.remove_patch(pipe))
    # 5. Feature caching across steps: T-GATE (cross-attention), DeepCache (deep UNet features).
    if config.tgate_step:
        from workbench.tgate import TGate

        gate = TGate(pipe, config.tgate_step)
        gate.install()
        setattr(pipe, STEP_HOOKS, [gate])
        undo.append(lambda: (gate.remove(), delattr(pipe, STEP_HOOKS)))
    if config.deepcache_interval > 1:
        from DeepCache import DeepCacheSDHelper

        helper = DeepCacheSDHelper(pipe=pipe)
        helper.set_params(cache_interval=config.deepcache_interval, cache_branch_id=config.deepcache_branch)
        helper.enable()
        undo.append(helper.disable)
    # 6. Compilation: swap in compiled modules (the UNet or transformer, the VAE decoder), put the originals back.
    if config.compile:
        name, net, decoder = denoiser_slot(pipe), denoiser(pipe), pipe.vae.decoder
        setattr(pipe, name, torch.compile(net, mode=config.compile_mode))
        pipe.vae.decoder = torch.compile(decoder, mode=config.compile_mode)
        undo.append(lambda: (setattr(pipe, name, net), setattr(pipe.vae, "decoder", decoder)))
    # 6b. A transformer cache (diffusers' hooks), its state cleared before every pipeline call.
    if config.transformer_cache:
        net = denoiser(pipe)
        net.enable_cache(_cache_config(pipe, config))
        undo.append(net.disable_cache)
    # 7. Offload last: its hooks go around everything else.
    if config.cpu_offload:
        device = pipe.device
        pipe.enable_model_cpu_offload(device=device)
        undo.append(lambda: (pipe.remove_all_hooks(), pipe.to(device)))
