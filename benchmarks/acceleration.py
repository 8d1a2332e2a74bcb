"""Speed against fidelity of the acceleration toggles, each against the baseline measured interleaved in
the same run: UNet and total seconds per image, speed-ups, PSNR/SSIM/CLIP image cosine against the
baseline image of the same seed, the CLIP score change, and torch.compile's cold start apart.

    python benchmarks/acceleration.py                      # the toy world on this machine (CPU)
    python benchmarks/acceleration.py --preset gpu         # arch/sd15 at 512x512, fp16, 30 steps, on CUDA

The GPU preset uses SD 1.5's architecture with random weights (no download): its speed is the real
model's, its images are noise, so fidelity and CLIP figures are left out; it adds the share of the
device's peak FLOP/s. Prints the table and writes benchmarks/results/acceleration[_gpu].json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from workbench.acceleration_benchmark import benchmark_acceleration
from workbench.config import AccelerationConfig, GenerationConfig
from workbench.flops import image_flops, share_of_peak
from workbench.metrics import CLIPScorer
from workbench.models import load
from workbench.prompts import load_prompts

RESULTS = Path(__file__).parent / "results"

PRESETS = {
    "toy": {
        "model": "toyworld/sd-small",
        "steps": 25,
        "size": None,
        "dtype": None,
        "configs": [
            AccelerationConfig(deepcache_interval=2),
            AccelerationConfig(deepcache_interval=3),
            AccelerationConfig(deepcache_interval=5),
            AccelerationConfig(tome_ratio=0.3),
            AccelerationConfig(tome_ratio=0.5),
            AccelerationConfig(tome_ratio=0.5, deepcache_interval=3),
            AccelerationConfig(channels_last=True),
            AccelerationConfig(attention_backend="eager"),
            AccelerationConfig(dtype="bfloat16"),
            AccelerationConfig(compile=True),
        ],
    },
    "gpu": {
        "model": "arch/sd15",
        "steps": 30,
        "size": 512,
        "dtype": "float16",
        "configs": [
            AccelerationConfig(channels_last=True),
            AccelerationConfig(compile=True, compile_mode="max-autotune-no-cudagraphs"),
            AccelerationConfig(deepcache_interval=3),
        ],
    },
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=sorted(PRESETS), default="toy")
    parser.add_argument("--prompts", type=int, default=8)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--no-compile", action="store_true", help="leave torch.compile out (it takes minutes)")
    args = parser.parse_args()
    preset = PRESETS[args.preset]
    configs = [c for c in preset["configs"] if not (args.no_compile and c.compile)]

    pipe = load(preset["model"], dtype=preset["dtype"])
    config = GenerationConfig(
        steps=preset["steps"], width=preset["size"], height=preset["size"], batch_size=args.batch_size
    )
    prompts = list(load_prompts("toyworld", n=args.prompts, seed=1)["prompt"])
    scorer = CLIPScorer("toyworld/clip") if args.preset == "toy" else None
    result = benchmark_acceleration(
        pipe, prompts, list(range(args.seeds)), configs, config=config, scorer=scorer, rounds=args.rounds
    )
    table = result.table
    side = preset["size"] or pipe.unet.config.sample_size * pipe.vae_scale_factor
    flops = image_flops(pipe, side, side, config.steps, config.guidance)
    peak = [share_of_peak(s, flops["image_flops"]) for s in table["total_s_per_image"]]
    table["achieved_tflops"] = [p["achieved_tflops"] for p in peak]
    table["share_of_peak"] = [p["share_of_peak"] for p in peak]

    columns = ["config", "total_s_per_image", "unet_s_per_image", "speedup_total", "speedup_unet", "psnr", "ssim",
               "clip_cosine", "clip_delta", "changed", "cold_extra_s", "achieved_tflops", "share_of_peak"]  # fmt: skip
    shown = table[[c for c in columns if c in table]]
    device = str(pipe.device) + (f" ({torch.cuda.get_device_name()})" if pipe.device.type == "cuda" else "")
    print(f"{preset['model']} on {device}, {side}x{side}, {config.steps} steps, guidance {config.guidance}, "
          f"{len(prompts)} prompts x {args.seeds} seeds, median of {args.rounds} interleaved rounds")  # fmt: skip
    print(f"FLOPs per image: {flops['image_flops'] / 1e12:.3f} T (step {flops['denoiser_step_flops'] / 1e9:.2f} G)")
    print(shown.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    out = RESULTS / ("acceleration.json" if args.preset == "toy" else f"acceleration_{args.preset}.json")
    RESULTS.mkdir(exist_ok=True)
    summary = {
        "model": preset["model"],
        "device": device,
        "size": side,
        "steps": config.steps,
        "flops": flops,
        "prompts": len(prompts),
        "seeds": args.seeds,
        "rounds": args.rounds,
        "table": json.loads(shown.to_json(orient="records")),
    }
    out.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
