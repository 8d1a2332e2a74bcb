"""Throughput of a whole evaluation: the naive loop (one diffusers call per image, scored by torchmetrics'
clip_score as the diffusers evaluation docs do it, a PNG each), and a leaner one-at-a-time loop (a loaded
CLIP called per image), against ModelEvaluator on the same images (batches across prompts, CLIP in batches, saved), one
process, the pipeline and the CLIP loaded beforehand, in interleaved rounds.

    python benchmarks/evaluator_throughput.py [--model toyworld/sd-small] [--prompts 48] [--steps 20]
        [--batch-sizes 8 16] [--rounds 3]

Prints seconds per round and the speed-up of each batch size over each loop (the median of the per-round
ratios); writes benchmarks/results/evaluator_throughput.json.
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

from workbench import CLIPScorer, GenerationConfig, ModelEvaluator, load, load_prompts
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="toyworld/sd-small")
    parser.add_argument("--prompts", type=int, default=48)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[8, 16])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    prompts = list(load_prompts("toyworld", n=args.prompts)["prompt"])
    if len(set(prompts)) != len(prompts):
        raise SystemExit("the prompts must be distinct")
    pipe, scorer = load(args.model), CLIPScorer("toyworld/clip")
    config = GenerationConfig(steps=args.steps)
    arms = {"naive loop": (naive_loop, config), "lean loop": (lean_loop, config)} | {
        f"ModelEvaluator batch_size={b}": (engine, config.replace(batch_size=b)) for b in args.batch_sizes
    }
    with tempfile.TemporaryDirectory() as tmp:
        naive_loop(pipe, scorer, prompts[:2], config, Path(tmp) / "warm")  # load-time costs out of every arm
        seconds: dict[str, list[float]] = {name: [] for name in arms}
        for round_ in range(args.rounds):
            names = list(arms)[round_ % len(arms) :] + list(arms)[: round_ % len(arms)]  # rotate who goes first
            for name in names:
                run, arm_config = arms[name]
                folder = Path(tmp) / f"{round_}-{list(arms).index(name)}"
                start = time.perf_counter()
                images = run(pipe, scorer, prompts, arm_config, folder)
                seconds[name].append(time.perf_counter() - start)
                assert images == len(prompts)
            print(f"round {round_}: " + ", ".join(f"{n} {seconds[n][-1]:.2f} s" for n in arms))

    result = {
        "model": args.model,
        "images": len(prompts),
        "steps": args.steps,
        "rounds": args.rounds,
        "device": str(pipe.device),
        "torch_threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
        "seconds": seconds,
        **{
            f"speedup_over_{baseline.replace(' ', '_')}": {
                name: statistics.median(a / b for a, b in zip(seconds[baseline], times, strict=True))
                for name, times in seconds.items()
                if not name.endswith("loop")
            }
            for baseline in ("naive loop", "lean loop")
        },
    }
    for baseline in ("naive loop", "lean loop"):
        print(f"{baseline}: {statistics.median(seconds[baseline]):.2f} s")
        for name, speedup in result[f"speedup_over_{baseline.replace(' ', '_')}"].items():
            print(f"  {name}: {statistics.median(seconds[name]):.2f} s, {speedup:.2f}x the {baseline}")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
