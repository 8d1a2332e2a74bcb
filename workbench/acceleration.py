"""Acceleration toggles, applied to a pipeline for a block and undone after it, and their measured
trade-off between speed and fidelity.

``accelerate(pipe, AccelerationConfig(...))`` is a context manager: on entry it applies ToMe (tomesd),
DeepCache, torch.compile, a dtype, an attention backend, channels-last, VAE tiling/slicing and CPU
offload; on exit it undoes each, so the pipeline then makes bit-identical images to before. Known
pitfalls are refused with a clear error before anything is changed. Images generated inside the
block record the toggles (the ``acceleration`` column of their rows).

``benchmark_acceleration`` times configs against the baseline interleaved in one run, and scores each
image's fidelity against the baseline image of the same prompt and seed. ``image_flops`` and
``share_of_peak`` say how close a time per image is to what the hardware could do.
"""

from __future__ import annotations

import contextlib
import importlib.util
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from workbench.config import AccelerationConfig, GenerationConfig
from workbench.errors import ConfigError

__all__ = [
    "PEAK_TFLOPS",
    "AccelerationBenchmark",
    "accelerate",
    "active_acceleration",
    "benchmark_acceleration",
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
def accelerate(pipe, config: AccelerationConfig | None = None) -> Iterator[AccelerationConfig]:
    """Apply ``config`` to ``pipe`` for the block and undo every toggle on exit (even after an error).
    For a ``RemoteModel`` the toggles go with each request of the block, and its server applies them."""
    config = config or AccelerationConfig()
    if not isinstance(config, AccelerationConfig):
        raise ConfigError(f"config must be an AccelerationConfig, got {type(config).__name__}")
    from workbench.serve.remote import RemoteModel

    if isinstance(pipe, RemoteModel):  # the server applies the toggles to each request of the block
        with pipe.accelerated(config):
            yield config
        return
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


# --- measuring --------------------------------------------------------------------------------------


class _UNetTimer:
    """Wall time spent inside the UNet's forward calls (synchronised on CUDA)."""

    def __init__(self, pipe):
        self.seconds, self._start, self._pipe = 0.0, None, pipe

    def _sync(self) -> None:
        if self._pipe.device.type == "cuda":
            torch.cuda.synchronize(self._pipe.device)

    def __enter__(self):
        def before(*_):
            self._sync()
            self._start = time.perf_counter()

        def after(*_):
            self._sync()
            self.seconds += time.perf_counter() - self._start

        unet = self._pipe.unet
        self._hooks = [unet.register_forward_pre_hook(before), unet.register_forward_hook(after)]
        return self

    def __exit__(self, *exc) -> None:
        for hook in self._hooks:
            hook.remove()


@dataclass
class AccelerationBenchmark:
    """Per-config figures (``table``), per-image rows (``rows``) and the images, keyed (label, prompt, seed)."""

    table: pd.DataFrame
    rows: pd.DataFrame
    images: dict = field(default_factory=dict, repr=False)


def benchmark_acceleration(
    pipe,
    prompts: Sequence[str],
    seeds: Sequence[int],
    configs: Sequence[AccelerationConfig],
    *,
    config: GenerationConfig | None = None,
    scorer=None,
    rounds: int = 3,
) -> AccelerationBenchmark:
    """Time each config against the baseline, interleaved (every round runs them all, in turn), and
    compare its images with the baseline's of the same prompt and seed.

    Per config: UNet and total seconds per image (median over rounds), speed-ups against the baseline of
    the same rounds, PSNR/SSIM/CLIP image cosine against the baseline images, the CLIP score change
    (with ``scorer``), whether the images changed at all, and the first (cold) call's extra time, which
    is torch.compile's compile time where it is on.
    """
    from workbench.generation import generate
    from workbench.metrics import fidelity

    config = config or GenerationConfig()
    baseline = AccelerationConfig()
    configs = [baseline] + [c for c in configs if c != baseline]
    labels = [c.label() for c in configs]
    prompts, seeds = list(prompts), list(seeds)
    n_images = len(prompts) * len(seeds)
    timings = {label: {"total": [], "unet": []} for label in labels}
    cold, images = {}, {}
    for round_index in range(rounds):
        for label, acceleration in zip(labels, configs, strict=True):
            with accelerate(pipe, acceleration):
                start = time.perf_counter()
                generate(pipe, prompts[0], config.replace(batch_size=1), seeds[0])  # warm-up (compiles)
                warmup = time.perf_counter() - start
                with _UNetTimer(pipe) as unet_time:
                    start = time.perf_counter()
                    records = generate(pipe, prompts, config, seeds)
                    total = time.perf_counter() - start
            if round_index == 0:
                cold[label] = warmup
                images |= {(label, r.prompt, r.seed): r.image for r in records}
            timings[label]["total"].append(total / n_images)
            timings[label]["unet"].append(unet_time.seconds / n_images)

    rows = []
    for label in labels:
        for prompt in prompts:
            for seed in seeds:
                image, reference = images[(label, prompt, seed)], images[(labels[0], prompt, seed)]
                rows.append(
                    {"config": label, "prompt": prompt, "seed": seed, **fidelity(reference, image, scorer),
                     "identical": bool(np.array_equal(np.asarray(image), np.asarray(reference)))}
                )  # fmt: skip
    rows = pd.DataFrame(rows)
    if scorer is not None:
        rows["clip_score"] = scorer.score([images[(r.config, r.prompt, r.seed)] for r in rows.itertuples()],
                                          list(rows["prompt"])).scores  # fmt: skip

    base = {kind: np.median(timings[labels[0]][kind]) for kind in ("total", "unet")}
    table = []
    for label, acceleration in zip(labels, configs, strict=True):
        mine = rows[rows["config"] == label]
        total, unet = np.median(timings[label]["total"]), np.median(timings[label]["unet"])
        entry = {
            "config": label,
            "total_s_per_image": total,
            "unet_s_per_image": unet,
            "speedup_total": base["total"] / total,
            "speedup_unet": base["unet"] / unet,
            "psnr": mine["psnr"].replace(np.inf, np.nan).mean(),
            "ssim": mine["ssim"].mean(),
            "clip_cosine": mine["clip_cosine"].mean() if scorer is not None else np.nan,
            "changed": not mine["identical"].all(),
            "cold_extra_s": max(0.0, cold[label] - total),
            **acceleration.to_dict(),
        }
        if scorer is not None:
            entry["clip_score"] = mine["clip_score"].mean()
            entry["clip_delta"] = entry["clip_score"] - rows.loc[rows["config"] == labels[0], "clip_score"].mean()
        table.append(entry)
    return AccelerationBenchmark(pd.DataFrame(table), rows, images)


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

    from workbench.models import ARCHITECTURES

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
