"""Why KID and CMMD order fewer neighbouring rungs of the validity ladder than FID and CLIP score: measured.

    python benchmarks/set_metric_sensitivity.py --run DIR [--prompts 300] [--draws 200] [--most 150]

DIR is a ladder made by ``benchmarks/metric_validity.py --out DIR --prompts 300`` (the same prompts; a ladder not
there yet is made). For the neighbouring rung pairs the judge
separates by 2 points or more (as ``metric_validity.validity``), and random prompt subsets of up to ``--most``
prompts, it measures:

- **kernels**: how far KID's kernel ``(a·b/d + 1)³`` and CMMD's ``exp(-|a - b|²/2σ²)`` are from their first-order
  (linear) terms on the ladder's own features (unit-length toy CLIP embeddings), over every pair of images; and
  how closely KID and CMMD follow the linear-kernel MMD² (the squared distance of the mean embeddings,
  unbiased) over rungs and subsets. Near-linear kernels compare only the sets' means.
- **signal and noise**: per pair, the gap between the two rungs on all prompts and the spread over subsets of
  each size; the pairs each variant orders right in 95% of subsets.
- **alternatives**, measured and not adopted: CMMD with σ at the median distance between embeddings (a kernel
  that sees more than the mean), and the reference: the ground truth of the same prompts (the study's) against
  an independent one (the ground truth of other toy prompts), which removes the pairing of images with truths.

Prints the figures; writes benchmarks/results/set_metric_sensitivity.json.
"""

from __future__ import annotations

import argparse
import itertools
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from workbench import MetricOptions
from workbench.metric_validity import JUDGE, ladder, run_ladder, toy_prompts
from workbench.metrics.reference import ground_truth_image
from workbench.metrics.sets import CMMD_SCALE, CMMD_SIGMA, cmmd, feature_extractor, fid, kid, row_features

RESULTS = Path(__file__).parent / "results" / "set_metric_sensitivity.json"
Measure = Callable[[torch.Tensor, torch.Tensor], float]


def linear_mmd(x: torch.Tensor, y: torch.Tensor) -> float:
    """The unbiased MMD² with the linear kernel a·b: the squared distance of the two sets' mean features, less
    its expected sampling part."""
    m, n = len(x), len(y)
    xx, yy = x @ x.T, y @ y.T
    return float((xx.sum() - xx.trace()) / (m * (m - 1)) + (yy.sum() - yy.trace()) / (n * (n - 1))
                 - 2 * (x @ y.T).mean())  # fmt: skip


def rbf_mmd(sigma: float) -> Measure:
    """CMMD's estimator (x 1000) with another bandwidth."""

    def measure(x: torch.Tensor, y: torch.Tensor) -> float:
        gamma = 1.0 / (2 * sigma**2)
        k_xx, k_yy, k_xy = (torch.exp(-gamma * torch.cdist(a, b).square()) for a, b in ((x, x), (y, y), (x, y)))
        m, n = len(x), len(y)
        within = (k_xx.sum() - k_xx.trace()) / (m * (m - 1)) + (k_yy.sum() - k_yy.trace()) / (n * (n - 1))
        return float(CMMD_SCALE * (within - 2 * k_xy.mean()))

    return measure


def kernel_departure(features: torch.Tensor) -> dict[str, float]:
    """Over every pair of the features: the largest share of each kernel's varying part that is not linear in
    a·b (KID: beyond ``3 a·b/d``; CMMD: beyond ``-|a - b|²/2σ²``)."""
    d = features.shape[1]
    dots = features @ features.T
    t = dots / d
    kid_linear = 3 * t
    squared = torch.cdist(features, features).square()
    cmmd_linear = -squared / (2 * CMMD_SIGMA**2)
    off = ~torch.eye(len(features), dtype=torch.bool)
    kid_rest = ((1 + t) ** 3 - 1 - kid_linear)[off].abs().max() / kid_linear[off].abs().max()
    cmmd_rest = (torch.exp(cmmd_linear) - 1 - cmmd_linear)[off].abs().max() / cmmd_linear[off].abs().max()
    return {"kid": float(kid_rest), "cmmd": float(cmmd_rest), "feature_size": d,
            "largest_a_dot_b_over_d": float(t[off].abs().max()),
            "largest_squared_distance": float(squared[off].max()),
            "median_distance": float(squared[off].sqrt().median())}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--prompts", type=int, default=300)
    parser.add_argument("--draws", type=int, default=200)
    parser.add_argument("--most", type=int, default=150)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rungs = ladder(["toyworld/sd-small", "toyworld/sd-base"], [1, 2, 4, 8, 20], [1.0, 5.0])
    metrics = ["clip_score", "composition", "composition_all", "pickscore", "fid", "kid", "cmmd"]  # the study's
    rows = run_ladder(toy_prompts(args.prompts), rungs, [0], args.run, metrics=metrics)
    extract = feature_extractor(MetricOptions().features)
    x_all, y_all = row_features(rows, args.run, extract)
    prompts = rows["prompt"].drop_duplicates().tolist()
    others = toy_prompts(2 * len(prompts), seed=99)["prompt"]
    independent = [p for p in others if p not in set(prompts)][: len(prompts)]
    y_independent_all = extract([ground_truth_image(p, 0) for p in independent]).double()

    judge = rows.pivot_table(index="prompt_id", columns="rung", values=JUDGE, aggfunc="mean")
    order = (100 * judge.mean()).sort_values(ascending=False)
    pairs = [(a, b) for a, b in itertools.pairwise(order.index) if order[a] - order[b] >= 2.0]
    prompt_ids = judge.index.to_numpy()
    rng = np.random.default_rng(args.seed)
    sizes = [n for n in (16, 32, 64, 100, 150) if n <= min(args.most, len(prompt_ids))]
    subsets = {n: [rng.choice(prompt_ids, n, replace=False) for _ in range(args.draws)] for n in sizes}
    independent_index = {pid: i for i, pid in enumerate(prompt_ids)}  # a prompt's stand-in in the other set

    by_rung = {}
    for rung in order.index:
        mine = np.flatnonzero((rows["rung"] == rung).to_numpy())
        by_rung[rung] = (x_all[mine], y_all[mine], rows["prompt_id"].to_numpy()[mine])
    departure = kernel_departure(torch.cat([x_all, y_all]))
    median_sigma = departure["median_distance"] / np.sqrt(2)  # exp(-r²/2σ²) at the median r: 1/e
    variants: dict[str, tuple[Measure, bool]] = {
        "fid": (fid, False), "kid": (kid, False), "cmmd": (cmmd, False), "linear_mmd": (linear_mmd, False),
        "cmmd_median_sigma": (rbf_mmd(median_sigma), False), "kid_independent_reference": (kid, True),
        "cmmd_independent_reference": (cmmd, True), "fid_independent_reference": (fid, True),
    }  # fmt: skip

    def value(measure: Measure, rung: str, chosen: np.ndarray | None, unpaired: bool) -> float:
        x, y, ids = by_rung[rung]
        keep = np.ones(len(ids), bool) if chosen is None else np.isin(ids, chosen)
        y = y_independent_all[[independent_index[p] for p in ids[keep]]] if unpaired else y[torch.from_numpy(keep)]
        return measure(x[torch.from_numpy(keep)], y)

    results: dict[str, dict] = {}
    for name, (measure, unpaired) in variants.items():
        whole = {rung: value(measure, rung, None, unpaired) for rung in order.index}
        per_pair = []
        for better, worse in pairs:
            entry = {"pair": f"{better} > {worse}", "judge_gap": round(order[better] - order[worse], 2),
                     "gap": whole[worse] - whole[better]}  # fmt: skip
            for n in sizes:
                gaps = np.array([value(measure, worse, c, unpaired) - value(measure, better, c, unpaired)
                                 for c in subsets[n]])  # fmt: skip
                entry[f"right_{n}"] = float((gaps > 0).mean())
                entry[f"sd_{n}"] = float(gaps.std())
            per_pair.append(entry)
        reached = sum(any(p[f"right_{n}"] >= 0.95 for n in sizes) for p in per_pair)
        results[name] = {"values": whole, "pairs_reached": reached, "pairs": per_pair}
        print(f"{name:28s} orders {reached} of {len(pairs)} pairs in 95% of subsets of up to {sizes[-1]} prompts")

    combined = {name: [] for name in ("kid", "cmmd", "linear_mmd")}
    for rung, n in itertools.product(order.index, sizes[:3]):
        for chosen in subsets[n][:20]:
            for name in combined:
                combined[name].append(value(variants[name][0], rung, chosen, False))
    frame = pd.DataFrame(combined)
    correlation = {"kid_vs_linear": float(frame["kid"].corr(frame["linear_mmd"])),
                   "cmmd_vs_linear": float(frame["cmmd"].corr(frame["linear_mmd"])),
                   "kid_vs_cmmd": float(frame["kid"].corr(frame["cmmd"])),
                   "values": len(frame)}  # fmt: skip
    print("kernels' departure from linear:", json.dumps(departure))
    print("correlation over rungs and subsets:", json.dumps(correlation))
    out = {"run_images": len(rows), "prompts": len(prompt_ids), "pairs": [f"{a} > {b}" for a, b in pairs],
           "sizes": sizes, "draws": args.draws, "kernel_departure": departure, "correlation": correlation,
           "median_sigma": median_sigma, "variants": results}  # fmt: skip
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2, default=float) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
