"""Cold start of `workbench route`: the wall time of a new process that routes one prompt, with an empty cache
of fitted classifiers (it embeds the ~1,100 training prompts and fits the regression) and with a warm one
(it reads the fit from disk), median of N runs each; beside them, the floors: Python itself, importing the
command, and importing torch and sentence-transformers, which the route command no longer does.

    python benchmarks/route_cold_start.py [--runs 5] [--prompt "a glass tower at night"]

Each run gets its own cache folder (WORKBENCH_CACHE_DIR) for the cold figure and one shared, filled folder
for the warm figure; nothing touches the user's cache. Prints the figures and writes
benchmarks/results/route_cold_start.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results" / "route_cold_start.json"
WORKBENCH = Path(sys.executable).with_name("workbench")
HEAVY = ("torch", "sentence_transformers", "transformers", "sklearn", "pandas", "scipy", "diffusers")
IMPORTED = (
    "import json, sys; from workbench.cli import main; main(['route', {prompt!r}]); "
    f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]), file=sys.stderr)"
)


def wall(command: list[str], cache: str) -> tuple[float, subprocess.CompletedProcess]:
    start = time.perf_counter()
    done = subprocess.run(command, env={**os.environ, "WORKBENCH_CACHE_DIR": cache}, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr}")
    return seconds, done


def figure(times: list[float]) -> dict:
    return {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times), "runs_s": times}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--prompt", default="a glass tower at night")
    args = parser.parse_args()
    route = [str(WORKBENCH), "route", args.prompt]
    result: dict = {
        "command": f'workbench route "{args.prompt}"',
        "runs": args.runs,
        "machine": {
            "cpus": os.cpu_count(),
            "load_average_at_start": os.getloadavg(),
            "python": platform.python_version(),
        },
    }
    with tempfile.TemporaryDirectory() as root:
        cold = []
        for run in range(args.runs):
            seconds, _ = wall(route, f"{root}/cold{run}")
            cold.append(seconds)
            print(f"cold cache, run {run + 1}: {seconds:.2f} s", flush=True)
        warm_dir = f"{root}/warm"
        wall(route, warm_dir)  # fills the cache
        warm = []
        for run in range(args.runs):
            seconds, done = wall(route, warm_dir)
            warm.append(seconds)
            print(f"warm cache, run {run + 1}: {seconds:.2f} s", flush=True)
        result["output"] = done.stdout.strip().splitlines()
        _, done = wall([sys.executable, "-c", IMPORTED.format(prompt=args.prompt)], warm_dir)
        result["heavy_modules_imported_warm"] = json.loads(done.stderr.strip().splitlines()[-1])
        floors = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "import workbench.cli": [sys.executable, "-c", "import workbench.cli"],
            "import torch": [sys.executable, "-c", "import torch"],
            "import sentence_transformers": [sys.executable, "-c", "import sentence_transformers"],
        }
        result["floors"] = {}
        for name, command in floors.items():
            try:
                times = [wall(command, warm_dir)[0] for _ in range(3)]
            except SystemExit:  # sentence-transformers is optional
                continue
            result["floors"][name] = statistics.median(times)
    result["cold_cache"], result["warm_cache"] = figure(cold), figure(warm)

    print(f"\n{result['command']} in a new process, median of {args.runs}:")
    print(f"  cold cache (embed the training prompts, fit, store): {result['cold_cache']['median_s']:.2f} s")
    print(f"  warm cache (read the fit):                           {result['warm_cache']['median_s']:.2f} s")
    print(f"  heavy modules imported with a warm cache: {result['heavy_modules_imported_warm'] or 'none'}")
    print("  floors (median of 3): " + ", ".join(f"{k} {v:.2f} s" for k, v in result["floors"].items()))
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwritten to {RESULTS}")


if __name__ == "__main__":
    main()
