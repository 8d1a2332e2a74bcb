"""Throughput of a whole evaluation: the seed-style loop (one image at a time, CLIP-scored one at a time,
saved) against ModelEvaluator on the same images (batches across prompts, CLIP in batches, saved), one
process, the pipeline and the CLIP loaded beforehand, in interleaved rounds.

    python benchmarks/evaluator_throughput.py [--model toyworld/sd-small] [--prompts 48] [--steps 20]
        [--batch-sizes 8 16] [--rounds 3]

Prints seconds per round and the speed-up of each batch size over the loop (the median of the per-round
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

from workbench import CLIPScorer, GenerationConfig, ModelEvaluator, generate, load, load_prompts, save_image

RESULTS = Path(__file__).parent / "results" / "evaluator_throughput.json"


def seed_loop(pipe, scorer, prompts: list[str], config: GenerationConfig, folder: Path) -> int:
    """The seed document's loop: for each prompt, one image, one CLIP score, one PNG."""
    for prompt in prompts:
        (record,) = generate(pipe, prompt, config.replace(batch_size=1), 0)
        scorer.score([record.image], [prompt])
        save_image(record, folder)
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
    arms = {"seed loop": (seed_loop, config)} | {
        f"ModelEvaluator batch_size={b}": (engine, config.replace(batch_size=b)) for b in args.batch_sizes
    }
    with tempfile.TemporaryDirectory() as tmp:
        seed_loop(pipe, scorer, prompts[:2], config, Path(tmp) / "warm")  # load-time costs out of every arm
        seconds: dict[str, list[float]] = {name: [] for name in arms}
        for round_ in range(args.rounds):
            names = list(arms)[round_ % len(arms) :] + list(arms)[: round_ % len(arms)]  # rotate who goes first
            for name in names:
                run, arm_config = arms[name]
                folder = Path(tmp) / f"{round_}-{len(seconds[name])}-{name.split()[-1]}"
                start = time.perf_counter()
                images = run(pipe, scorer, prompts, arm_config, folder)
                seconds[name].append(time.perf_counter() - start)
                assert images == len(prompts)
            print(f"round {round_}: " + ", ".join(f"{n} {seconds[n][-1]:.2f} s" for n in arms))

    loop = seconds["seed loop"]
    result = {
        "model": args.model,
        "images": len(prompts),
        "steps": args.steps,
        "rounds": args.rounds,
        "device": str(pipe.device),
        "torch_threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
        "seconds": seconds,
        "speedup_over_seed_loop": {
            name: statistics.median(a / b for a, b in zip(loop, times, strict=True))
            for name, times in seconds.items()
            if name != "seed loop"
        },
    }
    for name, speedup in result["speedup_over_seed_loop"].items():
        print(f"{name}: {statistics.median(seconds[name]):.2f} s for {len(prompts)} images, {speedup:.2f}x the loop")
    print(f"seed loop: {statistics.median(loop):.2f} s")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
