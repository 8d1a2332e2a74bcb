"""The figures a GPU user cares about, measured in one short run on a GPU (random weights: no download).

    PYTHONPATH=. python benchmarks/gpu_check.py [--flux] [--out DIR]     # on a GPU: about four minutes
    python benchmarks/gpu_check.py --dry-run [--flux] --out DIR          # the same path on the CPU, tiny sizes

Sections, each written to DIR/<section>.json as soon as it finishes (a run cut off still reports what it
finished), then one table:

- ``sd15``: arch/sd15 at 512x512, 30 steps, fp16: seconds per image at batch 1 and at the batch size the
  engine's probe chooses (``batch_size="auto"``), peak memory, the share of the GPU's peak FLOP/s
  (``flops.image_flops``, eager: no torch.compile), and the engine against a one-at-a-time loop on the same
  images (one pipeline call per image, the pipeline loaded beforehand);
- ``sdxl``: the same for arch/sdxl at 1024x1024, 30 steps, fp16, with what the probe tried;
- ``oom``: out-of-memory recovery on the device: the process may use only a share of the GPU's memory
  (``torch.cuda.set_per_process_memory_fraction``), so that a batch of 16 runs out; the run must finish, its
  rows saying which sizes ran (on the CPU, ``--dry-run`` makes calls above 2 images raise
  ``torch.OutOfMemoryError``: the same engine path, the error simulated);
- ``flux`` (``--flux``): ``benchmarks/acceleration.py --preset gpu --model arch/flux`` (1024x1024, 28 steps,
  bf16, built on the GPU): seconds per step with and without the first-block cache at a threshold that forces
  reuse, and MagCache with FLUX.1's ratios.

The GPU machine has torch and transformers; bring diffusers and the project's other needs as wheels and run
with ``PYTHONPATH`` (not ``make``). ``--dry-run`` swaps in the tiny architectures at 64x64, 4 steps, fp32 on
the CPU, to check the script end to end (the tests run it).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from workbench import GenerationConfig, ModelEvaluator, load
from workbench.device_memory import OutOfMemoryError, release_memory
from workbench.flops import image_flops, share_of_peak
from workbench.local_pipeline import LocalPipeline
from workbench.metric_validity import toy_prompts

RESULTS = Path(__file__).parent / "results" / "gpu_check"
SECTIONS = {  # section: model, side, steps, dtype, images (on a GPU; --dry-run: tiny, 64 px, 4 steps, fp32)
    "sd15": ("arch/sd15", 512, 30, "float16", 16),
    "sdxl": ("arch/sdxl", 1024, 30, "float16", 8),
}
DRY = {"sd15": "arch/tiny", "sdxl": "arch/tiny"}


def _synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def throughput(name: str, dry: bool, folder: Path) -> dict:
    """Seconds per image at batch 1 (a loop of single calls) and at the engine's auto size, peak memory, the
    share of peak FLOP/s at each, and the engine's speed-up over the loop on the same images."""
    model, side, steps, dtype, images = SECTIONS[name]
    if dry:
        model, side, steps, dtype, images = DRY[name], 64, 4, "float32", 8
    started = time.perf_counter()
    pipe = load(model, dtype=dtype, cache=None)  # not kept: the next section has the device to itself
    built = time.perf_counter() - started
    config = GenerationConfig(steps=steps, width=side, height=side, guidance=5.0)
    prompts = list(toy_prompts(images, seed=1)["prompt"])
    backend = LocalPipeline(pipe, model)
    backend.make_images([(prompts[0], 0)], config.replace(steps=2))  # warm-up: kernels, allocator
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    _synchronize()
    start = time.perf_counter()
    for prompt in prompts:  # the one-at-a-time loop, on the images the engine makes (seed 0)
        backend.make_images([(prompt, 0)], config)
    _synchronize()
    loop_s = (time.perf_counter() - start) / len(prompts)
    loop_peak = torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None
    evaluator = ModelEvaluator(prompts, [pipe], [0], config.replace(batch_size="auto"), output_dir=folder / name)
    start = time.perf_counter()
    rows = evaluator.run()
    engine_total = time.perf_counter() - start
    (probe,) = evaluator.folder.batch_probes().values()
    engine_s = float(rows["latency_s"].mean())
    flops = image_flops(pipe, side, side, steps, config.guidance)["image_flops"]
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    return {
        "model": model, "device": device, "size": side, "steps": steps, "dtype": dtype, "images": len(prompts),
        "build_s": round(built, 1),
        "batch_1_s_per_image": loop_s,
        "auto_batch_size": probe.chosen,
        "probe": probe.to_dict(),
        "auto_s_per_image": engine_s,
        "engine_wall_s_per_image": engine_total / len(prompts),  # probe, warm-up, saving and storing included
        "engine_over_loop": loop_s / (engine_total / len(prompts)),
        "peak_gib_batch_1": loop_peak,
        "peak_gib_auto": float(rows["peak_mem_mb"].max()) / 1024,
        "share_of_peak_batch_1": share_of_peak(loop_s, flops, device)["share_of_peak"],
        "share_of_peak_auto": share_of_peak(engine_s, flops, device)["share_of_peak"],
        "tflops_auto": share_of_peak(engine_s, flops, device)["achieved_tflops"],
    }  # fmt: skip


class _SimulatedOutOfMemory:
    """--dry-run only: a backend that raises torch.OutOfMemoryError on calls of more than ``fits`` images."""

    def __init__(self, pipe, model_id: str, fits: int):
        self.inner, self.fits = LocalPipeline(pipe, model_id), fits
        self.workbench_model_id = model_id

    def accelerated(self, config):
        return self.inner.accelerated(config)

    def make_images(self, jobs, config, **kwargs):
        if len(jobs) > self.fits:
            raise OutOfMemoryError(f"simulated: {len(jobs)} images do not fit")
        return self.inner.make_images(jobs, config, **kwargs)


def out_of_memory(dry: bool, folder: Path, sd15: dict | None) -> dict:
    """A batch of 16 that runs out of memory on the device: the run finishes, the rows say what ran."""
    side, steps = (64, 4) if dry else (512, 8)
    model = "arch/tiny" if dry else "arch/sd15"
    pipe = load(model, dtype="float32" if dry else "float16", cache=None)
    target, fraction = pipe, None
    if dry:
        target = _SimulatedOutOfMemory(pipe, model, fits=2)
    else:  # room for the weights and about four images' activations (from the sd15 section's probe)
        probe = (sd15 or {}).get("probe") or {}
        peaks, sizes = probe.get("peak_mb") or [], probe.get("sizes") or []
        per_image = (peaks[-1] - peaks[0]) / (sizes[-1] - sizes[0]) if len(peaks) > 1 else 1024.0
        weights = torch.cuda.memory_allocated() / 2**20
        total = torch.cuda.get_device_properties(0).total_memory / 2**20
        fraction = min((weights + 4 * max(per_image, 256.0) + 1024) / total, 0.9)
        torch.cuda.set_per_process_memory_fraction(fraction)
    prompts = list(toy_prompts(16, seed=2)["prompt"])
    config = GenerationConfig(steps=steps, width=side, height=side, batch_size=16)
    try:
        rows = ModelEvaluator(prompts, [target], [0], config, output_dir=folder / "oom").run()
    finally:
        if fraction is not None:
            torch.cuda.set_per_process_memory_fraction(1.0)
    splits = sorted(int(n) for n in rows["batch_splits"].unique())
    return {
        "model": model, "simulated": dry, "memory_fraction": fraction, "asked": 16, "images": len(rows),
        "ok": int((rows["status"] == "ok").sum()),
        "sizes_used": sorted(int(n) for n in rows["batch_images"].unique()),
        "splits": splits,
        "ran_out": max(splits) > 0,  # else the share left room for 16: the recovery was not exercised
    }  # fmt: skip


def flux(dry: bool, folder: Path) -> dict:
    """The transformer caches on FLUX, through benchmarks/acceleration.py's GPU preset."""
    out = folder / "acceleration_flux.json"
    model = "arch/tiny-flux" if dry else "arch/flux"
    command = [sys.executable, str(Path(__file__).parent / "acceleration.py"), "--preset", "gpu", "--model", model,
               "--rounds", "1" if dry else "2", "--out", str(out)]  # fmt: skip
    subprocess.run(command, check=True)
    return json.loads(out.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dry-run", action="store_true", help="tiny architectures on the CPU: the path, not figures")
    parser.add_argument("--flux", action="store_true", help="also FLUX's caches (builds FLUX in bf16 on the GPU)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if not args.dry_run and not torch.cuda.is_available():
        parser.error("no CUDA device here: run on a GPU, or pass --dry-run")
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for section in ["sd15", "sdxl", "oom", *(["flux"] if args.flux else [])]:
            started = time.perf_counter()
            try:
                if section == "oom":
                    result = out_of_memory(args.dry_run, Path(tmp), results.get("sd15"))
                elif section == "flux":
                    result = flux(args.dry_run, Path(tmp))
                else:
                    result = throughput(section, args.dry_run, Path(tmp))
            except Exception as error:  # the other sections still run and report
                result = {"error": f"{type(error).__name__}: {error}"}
            result["section_s"] = round(time.perf_counter() - started, 1)
            results[section] = result
            (args.out / f"{section}.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
            print(f"{section}: {result.get('error', 'done')} in {result['section_s']} s", flush=True)
            release_memory("cuda" if torch.cuda.is_available() else "cpu")
    print(table(results))


def table(results: dict[str, dict]) -> str:
    """One line per section."""
    lines = [f"{name}: failed: {r['error']}" for name, r in results.items() if "error" in r]
    results = {name: r for name, r in results.items() if "error" not in r}
    for name in ("sd15", "sdxl"):
        if r := results.get(name):
            batch_1, auto = _share(r["share_of_peak_batch_1"]), _share(r["share_of_peak_auto"])
            lines.append(
                f"{r['model']} {r['size']}px {r['steps']} steps {r['dtype']} on {r['device']}: batch 1 "
                f"{r['batch_1_s_per_image']:.3f} s/img, auto (chose {r['auto_batch_size']}) "
                f"{r['auto_s_per_image']:.3f} s/img; engine {r['engine_over_loop']:.2f}x the loop (probe "
                f"included); peak {r['peak_gib_auto']:.1f} GiB; share of peak FLOP/s (eager) {batch_1} at 1, "
                f"{auto} at {r['auto_batch_size']}"
            )  # fmt: skip
    if r := results.get("oom"):
        lines.append(f"out of memory ({'simulated' if r['simulated'] else 'real'}): {r['ok']}/{r['images']} images "
                     f"made, asked 16, ran at {r['sizes_used']}, halved {r['splits']} times"
                     + ("" if r["ran_out"] else "; NOT EXERCISED: 16 fitted in the memory share"))  # fmt: skip
    if r := results.get("flux"):
        for row in r["table"]:
            lines.append(f"{r['model']} {row['config']}: {row['denoiser_s_per_image'] / r['steps']:.4f} s per step "
                         f"(x{row['speedup_denoiser']:.2f})")  # fmt: skip
    return "\n".join(lines)


def _share(value: float | None) -> str:
    return "unknown" if value is None else f"{value:.0%}"


if __name__ == "__main__":
    main()
