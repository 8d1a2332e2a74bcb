"""The toy detector under GenEval's rules on renders: how often a right scene passes and an altered one fails with
the right reason, clean and degraded.

    python benchmarks/toy_geneval_renders.py [--per-tag 300] [--seed 12345]

``--per-tag`` prompts of each of GenEval's six tags are drawn afresh (``multi.draw_entry``, a seed the shipped
toy set does not use), each with a scene that is right for it and that scene altered every way
``multi.alterations`` knows (an object removed or reshaped, recoloured, one too few or too many, colours swapped,
a relation reversed). Each is rendered, then read by ``ToyDetector`` with ``palette_colours`` and judged by
``evaluate``; "degraded" is the same render through ``degrade`` (blur, noise, JPEG, resizing at step 16's
limits). The goal (step 17): on clean renders, >= 99% of right scenes pass and >= 99% of altered ones fail with
the reason the alteration calls for. Prints a table per tag and per alteration; writes
benchmarks/results/toy_geneval_renders.json.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

import numpy as np
import pandas as pd

from workbench.metrics.geneval import evaluate
from workbench.metrics.geneval_detectors import ToyDetector, palette_colours
from workbench.toyworld import multi
from workbench.toyworld.degrade import degrade

RESULTS = Path(__file__).parent / "results" / "toy_geneval_renders.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-tag", type=int, default=300)
    parser.add_argument("--seed", type=int, default=12345)
    args = parser.parse_args()
    rng, detector, rows = np.random.default_rng(args.seed), ToyDetector(), []
    started = time.perf_counter()
    for tag in multi.TAGS:
        for _ in range(args.per_tag):
            entry = multi.draw_entry(tag, rng)
            cases = [("right", entry["scene"], None), *multi.alterations(entry, rng)]
            for kind, scene, reason in cases:
                clean = multi.render_multi(scene, rng)
                for rendering, image in (("clean", clean), ("degraded", degrade(clean, rng))):
                    result = evaluate(
                        detector([image])[0], entry, lambda f, n, image=image: palette_colours(image, f, n)
                    )
                    first = result.reason.split("\n")[0]
                    as_expected = result.correct if reason is None else (
                        not result.correct and re.fullmatch(reason, first) is not None)  # fmt: skip
                    rows.append({"tag": tag, "case": kind, "rendering": rendering, "as_expected": as_expected,
                                 "failed": not result.correct, "reason": first})  # fmt: skip
    seconds = time.perf_counter() - started
    table = pd.DataFrame(rows)
    table["altered"] = table["case"] != "right"
    by_case = table.pivot_table(index=["altered", "case"], columns="rendering", values="as_expected", aggfunc="mean")
    by_case["scenes"] = table[table["rendering"] == "clean"].groupby(["altered", "case"]).size()
    by_tag = table.pivot_table(index="tag", columns=["altered", "rendering"], values="as_expected", aggfunc="mean")
    overall = table.groupby(["altered", "rendering"])["as_expected"].mean()
    with pd.option_context("display.width", 160, "display.float_format", lambda v: f"{v:.4f}"):
        print("share as expected (right scenes: passed; altered: failed with the alteration's reason)\n")
        print(by_case.to_string(), "\n")
        print(by_tag.to_string(), "\n")
        print(overall.to_string())
    misses = table[~table["as_expected"] & (table["rendering"] == "clean")]
    print(f"\nclean misses: {len(misses)}")
    print(misses[["tag", "case", "reason"]].head(10).to_string(index=False))
    result = {
        "per_tag": args.per_tag, "seed": args.seed, "images": len(table), "seconds": round(seconds, 1),
        "right_passed": {r: float(overall[(False, r)]) for r in ("clean", "degraded")},
        "altered_failed_with_reason": {r: float(overall[(True, r)]) for r in ("clean", "degraded")},
        "altered_failed": {r: float(table[table["altered"] & (table["rendering"] == r)]["failed"].mean())
                           for r in ("clean", "degraded")},
        "by_case": {f"{case}/{rendering}": float(share) for (_, case), shares in by_case.drop(columns="scenes")
                    .iterrows() for rendering, share in shares.items()},
        "by_tag": {f"{tag}/{'altered' if altered else 'right'}/{rendering}": float(share)
                   for tag, shares in by_tag.iterrows() for (altered, rendering), share in shares.items()},
        "clean_misses": misses[["tag", "case", "reason"]].head(20).to_dict(orient="records"),
    }  # fmt: skip
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {RESULTS}")


if __name__ == "__main__":
    main()
