"""The evaluation report as readable tables (pandas Stylers for notebooks and HTML reports).

``summary_table`` and ``cost_table`` show an ``EvaluationReport``'s summary, ``comparisons_table`` its paired
comparisons with the reference model, ``metrics_table`` what each of its metrics is (``evaluation_summary``):
labelled columns with units, values with their 95% CIs, rounded.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from workbench.evaluation_summary import metric_summary_columns
from workbench.metrics import METRICS
from workbench.stats import format_p

__all__ = ["comparisons_table", "cost_table", "metrics_table", "summary_table"]


def _interval(value: float, low: float, high: float, digits: int) -> str:
    if pd.isna(value):
        return ""
    if pd.isna(low) or pd.isna(high):
        return f"{value:.{digits}f}"
    return f"{value:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def summary_table(summary: pd.DataFrame):
    """The summary as a readable table: labelled columns with units, values with their 95% CIs, rounding; a
    column per metric (↑ higher is better, ↓ lower), saying how many images it left unscored where any."""
    columns = {
        "model": summary["model_id"],
        "images": summary["images"],
        "failed": summary["failed"],
        "latency median (s) [95% CI]": [
            _interval(r.get("latency_median_s"), r.get("latency_median_ci_low"), r.get("latency_median_ci_high"), 3)
            for r in summary.to_dict("records")
        ],
        "latency / reference [95% CI]": [
            _interval(r.get("latency_ratio"), r.get("latency_ratio_ci_low"), r.get("latency_ratio_ci_high"), 2)
            for r in summary.to_dict("records")
        ],
        "images / s": summary["images_per_s"].map("{:.1f}".format),
        "peak memory (MB)": summary["peak_mem_mb"].map("{:.0f}".format),
    }
    for name in METRICS:
        value, low, high = metric_summary_columns(name)
        if value in summary and summary[value].notna().any():
            better = "↑" if METRICS[name].higher_is_better else "↓"
            digits = 3 if summary[value].abs().max() < 10 else 2
            unscored = f"{name}_unscored"
            columns[f"{name} {better} [95% CI]"] = [
                _interval(r[value], r.get(low), r.get(high), digits)
                + (f"; {r[unscored]:.0f} unscored" if r.get(unscored, 0) > 0 else "")
                for r in summary.to_dict("records")
            ]
    if "usd_per_1000" in summary:
        columns["$ / 1,000 images"] = summary["usd_per_1000"].map("${:.4f}".format)
    if "timing_note" in summary:
        columns["timing"] = summary["timing_note"]
    return pd.DataFrame(columns).style.hide(axis="index")


def comparisons_table(comparisons: pd.DataFrame):
    """Paired comparisons as a readable table: model - reference per metric, CI, p (raw and Holm), win rate,
    prompts, and the smallest difference the study could have detected."""
    if comparisons.empty:
        return pd.DataFrame({"comparison": ["only one model: nothing to compare"]}).style.hide(axis="index")
    rows = comparisons.to_dict("records")
    table = pd.DataFrame(
        {
            "metric": [r["metric"] for r in rows],
            "model − reference": [f"{r['model_id']} − {r['reference']}" for r in rows],
            "difference [95% CI]": [_interval(r["mean_diff"], r["ci_low"], r["ci_high"], 2) for r in rows],
            "p": [format_p(r["p_value"]) for r in rows],
            "p (Holm)": [format_p(r["p_holm"]) for r in rows],
            "win rate": [f"{r['win_rate']:.0%}" for r in rows],
            "prompts": [r["n_prompts"] for r in rows],
            "detectable (80% power)": [f"{r['min_detectable']:.2f}" for r in rows],
        }
    )
    return table.style.hide(axis="index")


def metrics_table(notes: dict[str, dict[str, Any]]):
    """What each reported metric is (an ``EvaluationReport.metrics``): kind, which way is better, what it
    measures, and what to keep in mind reading it (offline stand-ins; a per-set metric's estimator,
    small-sample bias, features, reference set and interval)."""
    rows = []
    for name, note in notes.items():
        caveats = [note.get("note")] if note.get("note") else []
        if note["kind"] == "set":
            caveats += [
                f"estimator: {note['estimator']}", f"small samples: {note['bias']}", f"features: {note['features']}",
                f"reference: {note['reference']}", f"interval: {note['interval']}",
            ]  # fmt: skip
        rows.append(
            {
                "metric": name,
                "per": "image" if note["kind"] == "image" else "set of images",
                "better": "higher" if note["higher_is_better"] else "lower",
                "what it measures": note["description"],
                "keep in mind": "; ".join(caveats),
            }
        )
    return pd.DataFrame(rows, columns=["metric", "per", "better", "what it measures", "keep in mind"]).style.hide(
        axis="index"
    )


def cost_table(summary: pd.DataFrame):
    """What an image costs per model, under the summary's stated assumptions, and per image API the monthly
    volume from which self-hosting is cheaper and how many times cheaper it is then."""
    if "usd_per_image" not in summary or summary["usd_per_image"].isna().all():
        why = (
            "no image was made"
            if summary.get("images_per_s", pd.Series()).isna().all()
            else ("the hardware is not in the price table: give gpu_type or gpu_hour_cost")
        )
        return pd.DataFrame({"cost": [f"no cost: {why}"]}).style.hide(axis="index")
    apis = [c.removeprefix("times_cheaper_than_") for c in summary if c.startswith("times_cheaper_than_")]
    summary = summary[summary["usd_per_image"].notna()]  # a model with no image made has no cost
    table = pd.DataFrame(
        {
            "model": summary["model_id"],
            "hardware": [
                f"{g} at ${h:.3f}/h, {u:.0%} busy"
                for g, h, u in summary[["gpu", "usd_per_gpu_hour", "utilisation"]].itertuples(index=False)
            ],
            "batch": summary["batch_size"],
            "$ / image": summary["usd_per_image"].map("${:.6f}".format),
            "$ / 1,000": summary["usd_per_1000"].map("${:.4f}".format),
        }
    )
    if "electricity_usd_per_image" in summary:  # where the GPU reported its energy
        table["electricity / image"] = [
            "not reported" if pd.isna(usd) else f"${usd:.6f} ({wh:.4f} Wh at ${kwh}/kWh; the whole board, NVML)"
            for usd, wh, kwh in summary[["electricity_usd_per_image", "energy_wh_per_image", "usd_per_kwh"]]
            .itertuples(index=False)
        ]  # fmt: skip
    for api in apis:
        volume = summary[f"breakeven_images_per_month_{api}"]
        times = summary[f"times_cheaper_than_{api}"]
        table[f"vs {api}"] = [
            "never cheaper" if pd.isna(v) else f"from {v:,.0f} images/month; {t:,.0f}x cheaper"
            for v, t in zip(volume, times, strict=True)
        ]
    return table.style.hide(axis="index")
