"""Acceleration toggles on a diffusers pipeline, applied for a block and undone after it, and FLOP accounting.

``accelerate_pipeline(pipe, AccelerationConfig(...))`` is a context manager (``workbench.accelerate`` is the
entry point for any backend, which calls it for a local pipeline): on entry it applies ToMe (tomesd),
DeepCache, torch.compile, a dtype, an attention backend, channels-last, VAE tiling/slicing and CPU
offload; on exit it undoes each, so the pipeline then makes bit-identical images to before. Known
pitfalls are refused with a clear error before anything is changed. Images generated inside the
block record the toggles (the ``acceleration`` column of their rows).

``image_flops`` and ``share_of_peak`` say how close a time per image is to what the hardware could do;
``workbench.acceleration_benchmark`` measures the toggles' speed against fidelity.
"""

from __future__ import annotations

import contextlib
import importlib.util
import shutil
from collections.abc import Iterator

import torch

from workbench.config import AccelerationConfig
from workbench.errors import ConfigError
from workbench.models import ARCHITECTURES

__all__ = [
    "PEAK_TFLOPS",
    "accelerate_pipeline",
    "active_acceleration",
    "check_scheduler",
    "image_flops",
    "share_of_peak",
]

ACTIVE = "_workbench_acceleration"  # the pipeline attribute naming the config applied to it

# Dense fp16/bf16 tensor-core peaks (TFLOP/s) from the vendors' data sheets, by device-name fragment.
PEAK_TFLOPS = {
    "H200": 989.0,
    "H100 SXM": 989.0,
    "H100 PCIe": 756.0,
    "H100": 989.0,
    "A100": 312.0,
    "L40S": 362.0,
    "A10G": 125.0,
    "RTX 4090": 165.0,
    "RTX 3090": 71.0,
    "T4": 65.0,
}


def active_acceleration(pipe) -> AccelerationConfig | None:
    """The config an enclosing ``accelerate`` block applied to ``pipe`` (None outside one)."""
    return getattr(pipe, ACTIVE, None)


def check_scheduler(pipe, scheduler) -> None:
    """DeepCache tracks the step by looking the timestep up in the schedule; a scheduler that visits a
    timestep twice (Heun, KDPM2: order > 1) would make it reuse the wrong features."""
    config = active_acceleration(pipe)
    if config and config.deepcache_interval > 1 and getattr(scheduler, "order", 1) > 1:
        raise ConfigError(
            f"DeepCache cannot run with {type(scheduler).__name__}: it repeats timesteps (order "
            f"{scheduler.order}); use a single-step scheduler (dpm++, euler, ddim, unipc, ...)"
        )


# --- guards -----------------------------------------------------------------------------------------


def _attention_levels(unet) -> list[int]:
    """The downsampling factors (1, 2, 4, ...) of the down blocks that have attention."""
    return [2**i for i, block in enumerate(unet.down_blocks) if getattr(block, "attentions", None)]


def _check(pipe, config: AccelerationConfig) -> None:
    """Refuse known pitfalls before anything is changed."""
    device = pipe.device
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
    # 5. Feature caching across steps.
    if config.deepcache_interval > 1:
        from DeepCache import DeepCacheSDHelper

        helper = DeepCacheSDHelper(pipe=pipe)
        helper.set_params(cache_interval=config.deepcache_interval, cache_branch_id=config.deepcache_branch)
        helper.enable()
        undo.append(helper.disable)
    # 6. Compilation: swap in compiled modules, put the originals back after.
    if config.compile:
        unet, decoder = pipe.unet, pipe.vae.decoder
        pipe.unet = torch.compile(unet, mode=config.compile_mode)
        pipe.vae.decoder = torch.compile(decoder, mode=config.compile_mode)
        undo.append(lambda: (setattr(pipe, "unet", unet), setattr(pipe.vae, "decoder", decoder)))
    # 7. Offload last: its hooks go around everything else.
    if config.cpu_offload:
        device = pipe.device
        pipe.enable_model_cpu_offload(device=device)
        undo.append(lambda: (pipe.remove_all_hooks(), pipe.to(device)))


# --- FLOPs ------------------------------------------------------------------------------------------


def _forward_flops(module: torch.nn.Module, *args, **kwargs) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.no_grad():
        module(*args, **kwargs)
    return counter.get_total_flops()


def image_flops(model, height: int, width: int, steps: int, guidance: float) -> dict[str, float]:
    """FLOPs to make one image with ``model`` (a pipeline, or an architecture name: "sd15", "sdxl"):
    UNet per step (x2 under classifier-free guidance) x steps, plus the VAE decode; counted by torch's
    FlopCounterMode on meta tensors (no memory, no time)."""
    from accelerate import init_empty_weights
    from diffusers import AutoencoderKL, UNet2DConditionModel

    if isinstance(model, str):
        if model not in ARCHITECTURES:
            raise ConfigError(f"unknown architecture {model!r}; architectures: {sorted(ARCHITECTURES)}")
        unet_config, vae_config = ARCHITECTURES[model].unet, ARCHITECTURES[model].vae
    else:
        unet_config, vae_config = dict(model.unet.config), dict(model.vae.config)
    with init_empty_weights():
        unet = UNet2DConditionModel.from_config(unet_config).to("meta")
        vae = AutoencoderKL.from_config(vae_config).to("meta")
    factor = 2 ** (len(vae.config.block_out_channels) - 1)
    batch = 2 if guidance > 1 else 1
    latents = torch.empty(batch, unet.config.in_channels, height // factor, width // factor, device="meta")
    text = torch.empty(batch, 77, unet.config.cross_attention_dim, device="meta")
    extra = {}
    if unet.config.addition_embed_type == "text_time":  # SDXL: pooled text and size conditioning
        pooled = unet.config.projection_class_embeddings_input_dim - 6 * unet.config.addition_time_embed_dim
        extra = {"added_cond_kwargs": {"text_embeds": torch.empty(batch, pooled, device="meta"),
                                       "time_ids": torch.empty(batch, 6, device="meta")}}  # fmt: skip
    unet_step = _forward_flops(unet, latents, torch.tensor([500], device="meta"), text, **extra)
    latent = torch.empty(1, vae.config.latent_channels, height // factor, width // factor, device="meta")
    decode = _forward_flops(vae.decode, latent)
    return {"unet_step_flops": unet_step, "vae_decode_flops": decode, "image_flops": unet_step * steps + decode}


def share_of_peak(seconds_per_image: float, flops_per_image: float, device_name: str | None = None) -> dict:
    """Achieved TFLOP/s and its share of the device's peak (None where the device's peak is unknown)."""
    if device_name is None and torch.cuda.is_available():
        device_name = torch.cuda.get_device_name()
    peak = next((v for k, v in PEAK_TFLOPS.items() if device_name and k in device_name), None)
    achieved = flops_per_image / seconds_per_image / 1e12
    return {"device": device_name or "cpu", "achieved_tflops": achieved, "peak_tflops": peak,
            "share_of_peak": achieved / peak if peak else None}  # fmt: skip
