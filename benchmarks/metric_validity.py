"""How far each metric agrees with the truth, at full size: the validity study of notebook 06 (a ladder of toy
generators, many toy prompts, the judge as the truth), run from the package.

    python benchmarks/metric_validity.py [--prompts 300] [--draws 200] [--judge-scenes 2000] [--out DIR]

Prints the validity table (kendall_tau, auc_wrong, prompts_needed per metric), the judge's accuracy on rendered
scenes and the ladder; writes benchmarks/results/metric_validity.json. The images stay in --out (a temporary
folder by default), so a second run with the same --out only measures.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import pandas as pd

from workbench import MetricOptions, metric_validity
from workbench.toyworld.judge import judge_accuracy

RESULTS = Path(__file__).parent / "results" / "metric_validity.json"
METRICS = ["clip_score", "composition", "composition_all", "pickscore", "fid", "kid", "cmmd"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=300)
    parser.add_argument("--seeds", type=int, default=1)
    parser.add_argument("--steps", type=int, nargs="+", default=[1, 2, 4, 8, 20])
    parser.add_argument("--guidances", type=float, nargs="+", default=[1.0, 5.0])
    parser.add_argument("--draws", type=int, default=200)
    parser.add_argument("--judge-scenes", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    out = args.out or Path(tempfile.mkdtemp(prefix="metric-validity-"))
    options = MetricOptions()
    rungs = metric_validity.ladder(["toyworld/sd-small", "toyworld/sd-base"], args.steps, args.guidances)
    started = time.perf_counter()
    rows = metric_validity.run_ladder(
        metric_validity.toy_prompts(args.prompts), rungs, list(range(args.seeds)), out, metrics=METRICS,
        metric_options=options,
    )  # fmt: skip
    made = time.perf_counter() - started
    ladder = metric_validity.rung_table(rows, out, METRICS, options)
    table = metric_validity.validity(rows, out, METRICS, options, draws=args.draws)
    judge = judge_accuracy(args.judge_scenes)
    measured = time.perf_counter() - started - made

    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(f"{args.prompts} toy prompts x {args.seeds} seed(s) x {len(rungs)} rungs = {len(rows)} images "
              f"({made:.0f} s to make and score, {measured:.0f} s to measure)\n")  # fmt: skip
        print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"), "\n")
        print("judge on rendered scenes:", ", ".join(f"{a} {v:.2%}" for a, v in judge.items()), "\n")
        print(ladder.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "validity": metric_validity.validity_records(table),
                "pairs": table[["metric", "pairs", "pairs_reached"]].to_dict("records"),
                "judge": judge,
                "ladder": json.loads(ladder.to_json(orient="records")),
                "prompts": args.prompts,
                "seeds": args.seeds,
                "draws": args.draws,
                "images": len(rows),
                "seconds_to_make": round(made, 1),
                "seconds_to_measure": round(measured, 1),
                "machine": platform.processor() or platform.machine(),
            },
            indent=2,
        )
    )
    print(f"\nwrote {RESULTS}")


if __name__ == "__main__":
    main()
