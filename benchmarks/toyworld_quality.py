"""Quality bars of the toy world: the toy CLIP on real scenes, and the generators judged two ways.

    python benchmarks/toyworld_quality.py [--weights DIR] [--per-split N] [--models sd-small sd-base dit-small]

Each generated image is read by the toy CLIP (zero-shot) and by the judge of ``workbench.toyworld.judge`` (every
attribute, surely right; ``judge_all`` is the share with every attribute surely right, ``judge_unsure`` the share
the judge is unsure of).

Prints the tables and writes benchmarks/results/toyworld_quality.json.
"""

from __future__ import annotations

import argparse
import functools
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from workbench import GenerationConfig, generate, load
from workbench.models import TOYWORLD_DIR
from workbench.toyworld import scenes
from workbench.toyworld.judge import ToyJudge, accuracy, judge_images

RESULTS = Path(__file__).parent / "results" / "toyworld_quality.json"


def clip_on_real_scenes(judge: ToyJudge, n: int) -> dict:
    truth = scenes.sample_scenes(n, seed=12345)
    rng = np.random.default_rng(12345)
    images = [scenes.render(s, rng) for s in truth]
    return accuracy(judge.judge(images, truth))


def generated(judge: ToyJudge, model: str, truth: list[scenes.Scene], config: GenerationConfig) -> dict:
    pipe = load(model, device="cpu")
    prompts = [scenes.caption(s) for s in truth]
    images = [r.image for r in generate(pipe, prompts, config.replace(batch_size=16), seeds=[0])]
    judged = judge_images(images, prompts)
    read = {f"judge_{a}": float(np.mean([j.attributes[a].right is True for j in judged])) for a in scenes.ATTRIBUTES}
    read["judge_all"] = float(np.mean([j.composition_all == 1.0 for j in judged]))
    read["judge_unsure"] = float(np.mean([j.composition_all is None for j in judged]))
    return accuracy(judge.judge(images, truth)) | read


def speed(model: str, repeats: int = 5) -> dict:
    pipe = load(model, device="cpu")
    prompt = scenes.caption(scenes.all_scenes()[0])
    generate(pipe, prompt, GenerationConfig(), 0)  # warm-up
    single = [generate(pipe, prompt, GenerationConfig(), s)[0].latency_s for s in range(repeats)]
    batched = generate(pipe, prompt, GenerationConfig(batch_size=16), list(range(16)))
    return {"single_s": float(np.median(single)), "batched_16_s_per_image": batched[0].latency_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", default=str(TOYWORLD_DIR))
    # 1,000 scenes: at 216 one image is 0.46 points, too coarse to separate generators 2 points apart.
    parser.add_argument("--per-split", type=int, default=1000, help="generated images per model and split")
    parser.add_argument("--models", nargs="+", default=["sd-small", "sd-base", "dit-small"], help="generators")
    args = parser.parse_args()
    judge = ToyJudge(Path(args.weights) / "clip")
    rng = np.random.default_rng(7)
    pool = scenes.all_scenes()
    seen = [s for s in pool if not s.held_out]
    held = [s for s in pool if s.held_out]
    splits = {
        "seen": [seen[i] for i in rng.choice(len(seen), args.per_split, replace=False)],
        "held_out": [held[i] for i in rng.choice(len(held), min(args.per_split, len(held)), replace=False)],
    }
    # Models not run this time keep their figures from the last run (each with the settings it ran under).
    results: dict = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {"generated": {}, "speed": {}}
    if "steps" in results.get("settings", {}):  # the earlier layout: one settings entry for every model
        results["settings"] = dict.fromkeys(results["generated"], results["settings"])
    results.setdefault("settings", {})
    results["clip_real_scenes"] = clip_on_real_scenes(judge, 2000)
    for name in args.models:
        model_start = time.time()
        model = str(Path(args.weights) / name)
        results["generated"][name] = {
            split: generated(judge, model, truth, GenerationConfig()) for split, truth in splits.items()
        }
        results["generated"][name]["seen_guidance_1"] = generated(
            judge, model, splits["seen"], GenerationConfig(guidance=1.0)
        )
        results["speed"][name] = speed(model)
        results["settings"][name] = {
            "steps": GenerationConfig().steps,
            "guidance": GenerationConfig().guidance,
            "per_split": args.per_split,
            "torch_threads": torch.get_num_threads(),
            "machine": platform.processor() or platform.machine(),
            "seconds": round(time.time() - model_start, 1),
        }

    print("toy CLIP on 2,000 fresh real scenes:")
    for key, value in results["clip_real_scenes"].items():
        if key.startswith("clip_"):
            print(f"  {key:20s} {value:.3f}")
    keys = [
        "clip_caption",
        *(f"clip_{a}" for a in scenes.ATTRIBUTES),
        *(f"judge_{a}" for a in scenes.ATTRIBUTES),
        "judge_all",
        "judge_unsure",
    ]
    short = {"clip_": "c:", "judge_": "j:"}
    header = "".join(f"{functools.reduce(lambda k, p: k.replace(*p), short.items(), k):>13s}" for k in keys)
    print(
        f"\ngenerated (20 steps, default scheduler; guidance {GenerationConfig().guidance} unless noted)\n"
        f"{'model / split':28s}{header}"
    )
    for name, splits_result in results["generated"].items():
        for split, acc in splits_result.items():
            print(f"{name + ' / ' + split:28s}" + "".join(f"{acc.get(k, float('nan')):13.3f}" for k in keys))
    print("\nspeed on this CPU (s per image):")
    for name, s in results["speed"].items():
        print(f"  {name:10s} single {s['single_s']:.3f}   batched x16 {s['batched_16_s_per_image']:.3f}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2, default=str))
    print(f"\nwritten: {RESULTS}")


if __name__ == "__main__":
    main()
