"""An A/B test with a known answer: base prompts "a red <shape> ...", arm A keeps the colour, arm B swaps
it for blue; images are scored against the base prompt, so A must win clearly.

    python benchmarks/ab_known_effect.py [--seeds 3] [--steps 20]

Prints the verdict and writes benchmarks/results/ab_known_effect.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from workbench.abtest import PromptABTester
from workbench.config import GenerationConfig
from workbench.metrics import CLIPScorer
from workbench.models import load

RESULTS = Path(__file__).parent / "results" / "ab_known_effect.json"
PLACES = [("circle", "in the centre", "white"), ("square", "on the left", "black"), ("triangle", "at the top", "grey"),
          ("cross", "on the right", "white"), ("circle", "at the bottom", "grey"), ("square", "in the centre", "white"),
          ("triangle", "on the left", "black"), ("cross", "at the top", "grey"), ("circle", "on the right", "black"),
          ("square", "at the bottom", "grey")]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="toyworld/sd-small")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    prompts = [f"a red {shape} {where}, on a {background} background" for shape, where, background in PLACES]
    tester = PromptABTester(
        load(args.model, device="cpu"),
        CLIPScorer("toyworld/clip"),
        config=GenerationConfig(steps=args.steps, batch_size=4),
    )
    result = tester.run(prompts, {"A": "{prompt}", "B": lambda p: p.replace("red", "blue")}, list(range(args.seeds)))
    print(result.verdict)
    RESULTS.parent.mkdir(exist_ok=True)
    summary = {"model": args.model, "seeds": args.seeds, "steps": args.steps, "verdict": result.verdict,
               "comparison": result.comparisons.iloc[0].to_dict()}  # fmt: skip
    RESULTS.write_text(json.dumps(summary, indent=2, default=float) + "\n")
    print(f"written to {RESULTS}")


if __name__ == "__main__":
    main()
