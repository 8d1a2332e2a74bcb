"""Does a background job move a study's latency verdict? A two-model study runs idle, then with CPU-burning
processes started and stopped part-way (at fractions of the study's images); the latency ratio the summary
reports (second model / first, paired by interleaving round) is compared with the idle run's. For contrast,
the same load schedule on the old order (all of the first model, then all of the second: two evaluations).

    python benchmarks/evaluator_drift.py [--prompts 32] [--steps 20] [--batch-size 4] [--burners 2]

Prints each schedule's ratio and its deviation from idle; writes benchmarks/results/evaluator_drift.json.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import tempfile
from pathlib import Path

import pandas as pd

from workbench import GenerationConfig, ModelEvaluator, load_prompts
from workbench.latency import latency_summary

RESULTS = Path(__file__).parent / "results" / "evaluator_drift.json"
MODELS = ["toyworld/sd-small", "toyworld/sd-base"]
SCHEDULES = {"idle": None, "load 0-30%": (0.0, 0.3), "load 30-70%": (0.3, 0.7), "load 50-100%": (0.5, 1.0)}


def _burn() -> None:
    while True:
        pass


class Load:
    """Processes burning CPU while the study's progress lies within [start, stop)."""

    def __init__(self, window: tuple[float, float] | None, burners: int):
        self.window, self.burners, self.processes = window, burners, []

    def __call__(self, done: int, total: int) -> None:
        if self.window is None:
            return
        inside = self.window[0] <= done / total < self.window[1]
        if inside and not self.processes:
            self.processes = [multiprocessing.Process(target=_burn, daemon=True) for _ in range(self.burners)]
            for process in self.processes:
                process.start()
        elif not inside:
            self.stop()

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
            process.join()
        self.processes = []


def interleaved(prompts, config, folder: Path, load: Load) -> pd.DataFrame:
    load(0, 1)
    try:
        return ModelEvaluator(prompts, MODELS, [0], config, output_dir=folder).run(progress=load)
    finally:
        load.stop()


def sequential(prompts, config, folder: Path, load: Load) -> pd.DataFrame:
    """The order before the engine: every image of the first model, then every image of the second."""
    total = len(MODELS) * len(prompts)
    load(0, 1)
    try:
        frames = []
        for index, model in enumerate(MODELS):
            offset = index * len(prompts)
            evaluator = ModelEvaluator(prompts, [model], [0], config, output_dir=folder / str(index))
            frames.append(evaluator.run(progress=lambda done, _, offset=offset: load(offset + done, total)))
        return pd.concat(frames, ignore_index=True).drop(columns=["batch_round"])  # no rounds to pair
    finally:
        load.stop()


def ratio(rows: pd.DataFrame) -> dict[str, float]:
    row = latency_summary(rows).set_index("model_id").loc[MODELS[1]]
    return {
        "ratio": row["latency_ratio"],
        "ci_low": row["latency_ratio_ci_low"],
        "ci_high": row["latency_ratio_ci_high"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=32)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--burners", type=int, default=2)
    args = parser.parse_args()
    prompts = load_prompts("toyworld", n=args.prompts)
    config = GenerationConfig(steps=args.steps, batch_size=args.batch_size)
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, window in SCHEDULES.items():
            for order, study in (("interleaved", interleaved), ("sequential", sequential)):
                rows = study(prompts, config, Path(tmp) / f"{order}-{len(results)}", Load(window, args.burners))
                results[f"{order}, {name}"] = ratio(rows)
                print(f"{order:11s} {name:13s} ratio {results[f'{order}, {name}']['ratio']:.3f}", flush=True)
    for order in ("interleaved", "sequential"):
        idle = results[f"{order}, idle"]["ratio"]
        for name in SCHEDULES:
            entry = results[f"{order}, {name}"]
            entry["deviation_from_idle"] = entry["ratio"] / idle - 1
    worst = max(abs(results[f"interleaved, {n}"]["deviation_from_idle"]) for n in SCHEDULES)
    summary = {
        "models": MODELS,
        "prompts": args.prompts,
        "steps": args.steps,
        "batch_size": args.batch_size,
        "burners": args.burners,
        "ratio_is": f"{MODELS[1]} / {MODELS[0]} per-image latency",
        "results": results,
        "interleaved_worst_deviation": worst,
    }
    for key, entry in results.items():
        print(f"{key:32s} ratio {entry['ratio']:.3f}  ({entry['deviation_from_idle']:+.1%} from idle)")
    print(f"interleaved: worst deviation from idle {worst:.1%} (goal: within 10%)")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
