"""Throughput of a whole evaluation: the naive loop (one diffusers call per image, scored by torchmetrics'
clip_score as the diffusers evaluation docs do it, a PNG each), and a leaner one-at-a-time loop (a loaded
CLIP called per image), against ModelEvaluator on the same images (batches across prompts, CLIP in batches, saved), one
process, the pipeline and the CLIP loaded beforehand, in interleaved rounds; the engine at fixed batch sizes and at
batch_size="auto", whose probe is in its time.

    python benchmarks/evaluator_throughput.py [--model toyworld/sd-small] [--prompts 48] [--steps 20]
        [--batch-sizes 8 16 32] [--rounds 3] [--probe-every-round]

The auto arm's probe is kept for the process, as in a notebook that runs several studies: the first round pays
it and later rounds reuse it, unless ``--probe-every-round`` forgets it before each round (every study on a
fresh kernel). Prints seconds per round, the probe (sizes tried, time per image at each, the choice, its
seconds) and each arm's speed-up over each loop: the median of the per-round ratios and the ratio of the
rounds' total times (the probe counted once, or every round); writes benchmarks/results/evaluator_throughput.json
(``--out`` for another file).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image

from workbench import CLIPScorer, GenerationConfig, ModelEvaluator, RunFolder, load, load_prompts
from workbench.batch_probe import forget_probes
from workbench.models import TOYWORLD_DIR

RESULTS = Path(__file__).parent / "results" / "evaluator_throughput.json"


class _TensorFeatures(torch.nn.Module):
    """A CLIP that hands torchmetrics plain feature tensors (transformers 5 returns output objects)."""

    def __init__(self, model):
        super().__init__()
        self.model, self.config = model, model.config

    def get_image_features(self, *args, **kwargs):
        return self.model.get_image_features(*args, **kwargs).pooler_output

    def get_text_features(self, *args, **kwargs):
        return self.model.get_text_features(*args, **kwargs).pooler_output


def _clip_from_disk():
    """What torchmetrics' clip_score does with a model path on every call: load the CLIP and its processor."""
    from transformers import CLIPModel, CLIPProcessor

    folder = TOYWORLD_DIR / "clip"
    return _TensorFeatures(CLIPModel.from_pretrained(folder)), CLIPProcessor.from_pretrained(folder)


@torch.no_grad()
def naive_loop(pipe, scorer, prompts: list[str], config: GenerationConfig, folder: Path) -> int:
    """The naive loop, as the diffusers evaluation docs write it: per prompt one diffusers call,
    torchmetrics' clip_score with a model path (which loads the CLIP every call), one PNG."""
    from torchmetrics.functional.multimodal import clip_score

    folder.mkdir(parents=True)
    for index, prompt in enumerate(prompts):
        generator = torch.Generator("cpu").manual_seed(0)
        images = pipe(
            prompt, num_inference_steps=config.steps, guidance_scale=config.guidance, generator=generator,
            output_type="np",
        ).images  # fmt: skip
        pixels = (images * 255).round().astype("uint8")
        clip_score(torch.from_numpy(pixels).permute(0, 3, 1, 2), [prompt], model_name_or_path=_clip_from_disk)
        Image.fromarray(pixels[0]).save(folder / f"{index}.png")
    return len(prompts)


@torch.no_grad()
def lean_loop(pipe, scorer, prompts: list[str], config: GenerationConfig, folder: Path) -> int:
    """A leaner one-at-a-time loop: one diffusers call and one call of an already loaded CLIP per image."""
    folder.mkdir(parents=True)
    for index, prompt in enumerate(prompts):
        generator = torch.Generator("cpu").manual_seed(0)
        image = pipe(
            prompt, num_inference_steps=config.steps, guidance_scale=config.guidance, generator=generator
        ).images[0]
        inputs = scorer.processor(text=[prompt], images=[image], return_tensors="pt", padding=True)
        output = scorer.model(**inputs)
        float(100 * torch.nn.functional.cosine_similarity(output.image_embeds, output.text_embeds).clamp(min=0))
        image.save(folder / f"{index}.png")
    return len(prompts)


def engine(pipe, scorer, prompts: list[str], config: GenerationConfig, folder: Path) -> int:
    return len(ModelEvaluator(prompts, [pipe], [0], config, output_dir=folder, scorer=scorer).run())


def _ratios(seconds: dict[str, list[float]], baseline: str) -> dict[str, dict[str, float]]:
    """Each engine arm's speed-up over ``baseline``: the median of the per-round ratios, and the ratio of totals."""
    return {
        name: {"median_of_rounds": statistics.median(a / b for a, b in zip(seconds[baseline], times, strict=True)),
               "total": sum(seconds[baseline]) / sum(times)}
        for name, times in seconds.items()
        if not name.endswith("loop")
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="toyworld/sd-small")
    parser.add_argument("--prompts", type=int, default=48)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[8, 16, 32])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--probe-every-round", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    prompts = list(load_prompts("toyworld", n=args.prompts)["prompt"])
    if len(set(prompts)) != len(prompts):
        raise SystemExit("the prompts must be distinct")
    pipe, scorer = load(args.model), CLIPScorer("toyworld/clip")
    config = GenerationConfig(steps=args.steps)
    arms = {"naive loop": (naive_loop, config), "lean loop": (lean_loop, config)} | {
        f"ModelEvaluator batch_size={b}": (engine, config.replace(batch_size=b)) for b in [*args.batch_sizes, "auto"]
    }
    probes = []
    with tempfile.TemporaryDirectory() as tmp:
        naive_loop(pipe, scorer, prompts[:2], config, Path(tmp) / "warm")  # load-time costs out of every arm
        forget_probes()
        seconds: dict[str, list[float]] = {name: [] for name in arms}
        for round_ in range(args.rounds):
            names = list(arms)[round_ % len(arms) :] + list(arms)[: round_ % len(arms)]  # rotate who goes first
            for name in names:
                run, arm_config = arms[name]
                folder = Path(tmp) / f"{round_}-{list(arms).index(name)}"
                if arm_config.batch_size == "auto" and args.probe_every_round:
                    forget_probes()
                start = time.perf_counter()
                images = run(pipe, scorer, prompts, arm_config, folder)
                seconds[name].append(time.perf_counter() - start)
                assert images == len(prompts)
                if arm_config.batch_size == "auto":
                    probes += [
                        p.to_dict() for p in RunFolder(folder).batch_probes().values() if p.to_dict() not in probes
                    ]
            print(f"round {round_}: " + ", ".join(f"{n} {seconds[n][-1]:.2f} s" for n in arms))

    auto, fixed = "ModelEvaluator batch_size=auto", [f"ModelEvaluator batch_size={b}" for b in args.batch_sizes]
    best = min(fixed, key=lambda name: sum(seconds[name]))
    result = {
        "model": args.model,
        "images": len(prompts),
        "steps": args.steps,
        "rounds": args.rounds,
        "probe_every_round": args.probe_every_round,
        "device": str(pipe.device),
        "torch_threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
        "seconds": seconds,
        "probes": probes,
        "best_fixed": best,
        "auto_over_best_fixed_total": sum(seconds[auto]) / sum(seconds[best]),
        **{f"speedup_over_{b.replace(' ', '_')}": _ratios(seconds, b) for b in ("naive loop", "lean loop")},
    }
    for probe in probes:
        tried = ", ".join(
            f"{n}: {t * 1000:.1f} ms" for n, t in zip(probe["sizes"], probe["seconds_per_image"], strict=True)
        )
        chose = f"chose {probe['chosen']} ({probe['stopped']})"
        print(f"probe ({probe['probe_seconds']:.2f} s): per image at {tried}; {chose}")
    for baseline in ("naive loop", "lean loop"):
        print(f"{baseline}: {statistics.median(seconds[baseline]):.2f} s")
        for name, speedup in result[f"speedup_over_{baseline.replace(' ', '_')}"].items():
            print(f"  {name}: {statistics.median(seconds[name]):.2f} s, {speedup['median_of_rounds']:.2f}x the "
                  f"{baseline} (median of rounds), {speedup['total']:.2f}x (totals)")  # fmt: skip
    print(f"auto's total time over the best fixed size's ({best}): {result['auto_over_best_fixed_total']:.3f}")
    args.out.parent.mkdir(exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
