"""The toy generators on the toy world's GenEval: per-tag scores with intervals, as GenEval sums them up.

    python benchmarks/toy_geneval.py [--models sd-small sd-base dit-small] [--seeds 4] [--steps 20] [--out DIR]

Every prompt of ``toyworld-geneval`` (88: GenEval's six tags on toy shapes and colours) x ``--seeds`` images (4, as
GenEval) per model, scored by ``geneval`` with the toy detector (``MetricOptions(geneval_detector="toyworld")``).
The toy generators were trained on one object per scene, and their text encoders have no tokens for "and",
numbers, plurals or relations: the multi-object tags measure that. Prints each model's table; writes
benchmarks/results/toy_geneval.json.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import pandas as pd

from workbench import GenerationConfig, MetricOptions, ModelEvaluator, load_prompts
from workbench.evaluation_summary import geneval_by_tag

RESULTS = Path(__file__).parent / "results" / "toy_geneval.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["sd-small", "sd-base", "dit-small"])
    parser.add_argument("--seeds", type=int, default=4)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="toy-geneval-"))
    prompts = load_prompts("toyworld-geneval")
    models = [f"toyworld/{m}" for m in args.models]
    started = time.perf_counter()
    config, options = GenerationConfig(steps=args.steps, batch_size=16), MetricOptions(geneval_detector="toyworld")
    rows = ModelEvaluator(prompts, models, list(range(args.seeds)), config, output_dir=out, metrics=["geneval"],
                          metric_options=options, warmup=False).run()  # fmt: skip
    scores, comparisons = geneval_by_tag(rows, models[0])
    with pd.option_context("display.width", 160, "display.max_columns", 10):
        print(scores.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    reasons = rows.loc[rows["geneval"] == 0.0, "geneval_reason"].str.split("\n").explode().str.replace(
        r"\d+", "N", regex=True).value_counts().head(8)  # fmt: skip
    print("\ncommonest reasons:\n" + reasons.to_string())
    result = {"models": models, "prompts": len(prompts), "seeds": args.seeds, "steps": args.steps,
              "images": len(rows), "seconds": round(time.perf_counter() - started, 1),
              "scores": json.loads(scores.to_json(orient="records")),
              "comparisons": json.loads(comparisons.to_json(orient="records")),
              "commonest_reasons": reasons.to_dict()}  # fmt: skip
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {RESULTS}")


if __name__ == "__main__":
    main()
