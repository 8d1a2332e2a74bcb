"""Speed against quality of every acceleration method that applies to a model, each against the baseline
measured interleaved in the same run: denoiser (UNet or transformer) and whole-image seconds per image,
speed-ups, composition accuracy and CLIP score (each image paired with the baseline image of its prompt and
seed: the change and its 95% interval), PSNR/SSIM against the baseline, torch.compile's cold start apart.
Fewer steps are shown on the same axes.

    python benchmarks/acceleration.py --model toyworld/dit-small   # the toy DiT: transformer caches (CPU)
    python benchmarks/acceleration.py --model toyworld/sd-base     # a toy UNet: ToMe, DeepCache, T-GATE (CPU)
    python benchmarks/acceleration.py --model toyworld/dit-small --prompts 1000 --seeds 2 --rounds 1 \
        --only first_block_cache=0.3 --only steps=10 --tag more_images   # smaller quality intervals
    python benchmarks/acceleration.py --preset gpu                 # arch/sd15 at 512x512, fp16, 30 steps, CUDA
    python benchmarks/acceleration.py --preset gpu --model arch/flux   # 1024x1024, bf16, 28 steps, CUDA

The GPU presets use real architectures with random weights (no download): their speed is the real
model's, their images are noise, so quality figures are left out; they add the share of the device's peak
FLOP/s (counting the FLOPs of the uncached model: for a cache, an effective rate). For FLUX, the first-block
cache and MagCache run at thresholds that force reuse: their time per step, not their quality. Prints the
table and writes benchmarks/results/acceleration_<model>[_gpu][_<tag>].json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from diffusers.hooks.mag_cache import FLUX_MAG_RATIOS

from workbench.acceleration_benchmark import benchmark_acceleration, standard_configs, variant_label
from workbench.config import AccelerationConfig, GenerationConfig
from workbench.flops import image_flops, share_of_peak
from workbench.local_pipeline import default_size
from workbench.metric_validity import toy_prompts
from workbench.metrics import CLIPScorer
from workbench.models import denoiser, load

RESULTS = Path(__file__).parent / "results"

GPU_PRESETS = {  # by model
    "arch/sd15": {
        "steps": 30,
        "size": 512,
        "dtype": "float16",
        "configs": [
            AccelerationConfig(channels_last=True),
            AccelerationConfig(compile=True, compile_mode="max-autotune-no-cudagraphs"),
            AccelerationConfig(deepcache_interval=3),
        ],
    },
    "arch/tiny-flux": {  # the FLUX preset's path on the CPU, for benchmarks/gpu_check.py --dry-run
        "steps": 4,
        "size": 64,
        "dtype": "float32",
        "configs": [
            AccelerationConfig(first_block_cache=10.0),
            AccelerationConfig(mag_cache=10.0, mag_ratios=FLUX_MAG_RATIOS[:4]),
        ],
    },
    "arch/flux": {
        "steps": 28,
        "size": 1024,
        "dtype": "bfloat16",
        # random weights: thresholds this high make the caches reuse as often as they may (MagCache with
        # FLUX.1's published ratios, as for the real model)
        "configs": [
            AccelerationConfig(first_block_cache=10.0),
            AccelerationConfig(mag_cache=10.0, mag_ratios=FLUX_MAG_RATIOS),
        ],
    },
}
COLUMNS = ["config", "total_s_per_image", "denoiser_s_per_image", "speedup_total", "speedup_denoiser",
           "composition_all", "composition_all_delta", "composition_all_delta_ci_low", "composition_all_delta_ci_high",
           "composition", "composition_delta", "composition_delta_ci_low", "composition_delta_ci_high",
           "clip_score", "clip_score_delta", "clip_score_delta_ci_low", "clip_score_delta_ci_high",
           "psnr", "ssim", "changed", "cold_extra_s", "achieved_tflops", "share_of_peak"]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a model id (default: toyworld/sd-small on the CPU, arch/sd15 on a GPU)")
    parser.add_argument("--preset", choices=["cpu", "gpu"], default="cpu")
    parser.add_argument("--prompts", type=int, default=300, help="distinct toy world captions (one image each)")
    parser.add_argument("--seeds", type=int, default=1, help="seeds per prompt (more images per config; CPU preset)")
    parser.add_argument("--only", action="append", help="a config's label to run beside the baseline (repeat it)")
    parser.add_argument("--tag", help="a suffix for the results file (e.g. for a run of --only configs)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--no-compile", action="store_true", help="leave torch.compile out (it takes minutes)")
    parser.add_argument("--out", type=Path, help="the results file (default: benchmarks/results/acceleration_...)")
    args = parser.parse_args()
    if args.seeds < 1 or args.prompts < 1:
        parser.error(f"--prompts and --seeds must be at least 1, got {args.prompts} and {args.seeds}")

    name = args.model or ("arch/sd15" if args.preset == "gpu" else "toyworld/sd-small")
    gpu = GPU_PRESETS.get(name) if args.preset == "gpu" else None
    if args.preset == "gpu" and gpu is None:
        parser.error(f"--preset gpu runs {sorted(GPU_PRESETS)}, not {name}")
    pipe = load(name, dtype=gpu["dtype"] if gpu else None)
    if gpu:
        configs, steps, size = gpu["configs"], gpu["steps"], gpu["size"]
        configs = [c for c in configs if not (args.no_compile and c.compile)]
        prompts, seeds = ["a photo of a red circle"], [0, 1]
    else:
        steps, size = args.steps, None
        prompts, seeds = list(toy_prompts(args.prompts, seed=1)["prompt"]), list(range(args.seeds))
    config = GenerationConfig(steps=steps, width=size, height=size, batch_size=args.batch_size)
    if not gpu:
        configs = standard_configs(pipe, config, compile=not args.no_compile)
    if args.only:
        if not args.tag:
            parser.error("--only needs a --tag: a run of some configs must not replace the full run's results")
        wanted = set(args.only) - {"baseline"}  # the baseline always runs
        labels = {variant_label(c): c for c in configs}
        if wanted - set(labels):
            parser.error(f"--only {sorted(wanted - set(labels))}: not among this model's configs {sorted(labels)}")
        configs = [labels[w] for w in labels if w in wanted]
    quality = {} if gpu else {"scorer": CLIPScorer("toyworld/clip"), "metrics": ["composition", "composition_all"]}
    result = benchmark_acceleration(pipe, prompts, seeds, configs, config=config, rounds=args.rounds, **quality)
    table = result.table
    side = size or default_size(pipe)
    flops = image_flops(pipe, side, side, config.steps, config.guidance)
    per_image = flops["denoiser_step_flops"] * table["steps"] + flops["vae_decode_flops"]  # fewer steps, fewer FLOPs
    peak = [share_of_peak(s, f) for s, f in zip(table["total_s_per_image"], per_image, strict=True)]
    table["achieved_tflops"] = [p["achieved_tflops"] for p in peak]
    table["share_of_peak"] = [p["share_of_peak"] for p in peak]

    shown = table[[c for c in COLUMNS if c in table]]
    device = str(pipe.device) + (f" ({torch.cuda.get_device_name()})" if pipe.device.type == "cuda" else "")
    print(f"{name} ({type(denoiser(pipe)).__name__}) on {device}, {side}x{side}, {config.steps} steps, guidance "
          f"{config.guidance}, {len(prompts)} prompts x {len(seeds)} seeds, batches of {args.batch_size}, "
          f"median of {args.rounds} interleaved rounds")  # fmt: skip
    step_flops = flops["denoiser_step_flops"]
    print(f"FLOPs per image: {flops['image_flops'] / 1e12:.3f} T (denoiser step {step_flops / 1e9:.2f} G)")
    print(shown.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    if torch.cuda.is_available():
        print(f"peak GPU memory: {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB")
    suffix = ("_gpu" if gpu else "") + (f"_{args.tag}" if args.tag else "")
    out = args.out or RESULTS / f"acceleration_{name.split('/')[-1]}{suffix}.json"
    out.parent.mkdir(exist_ok=True)
    summary = {
        "model": name,
        "denoiser": type(denoiser(pipe)).__name__,
        "device": device,
        "size": side,
        "steps": config.steps,
        "batch_size": args.batch_size,
        "flops": flops,
        "prompts": len(prompts),
        "seeds": len(seeds),
        "rounds": args.rounds,
        "torch_threads": torch.get_num_threads(),
        "peak_gpu_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None,
        "table": json.loads(shown.to_json(orient="records")),
    }
    out.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
