"""What an evaluation's rows say: per model a summary, paired with the reference model, a verdict in words.

``summarize`` gives each model's images, latency (``workbench.latency``: the median with a CI, the ratio to the
reference model with a CI, a note when the timing is noisy), per-image metrics with CIs over prompts, and what
an image costs (``workbench.costs``). ``paired_comparisons`` pairs every model with the reference model prompt by
prompt (``workbench.stats``). ``evaluation_report`` puts both together with the verdict and what each metric is:
an ``EvaluationReport``, what the evaluation study reports (its tables: ``workbench.report_tables``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from workbench.costs import Prices, load_prices, priced_gpu, self_hosting_cost
from workbench.errors import ConfigError
from workbench.latency import latency_summary
from workbench.metrics import METRICS, MetricOptions, metric_bounds
from workbench.metrics.geneval import summary_scores
from workbench.metrics.sets import set_metric_notes
from workbench.run_folder import RunFolder
from workbench.stats import compare_groups, holm, mean_over_prompts, unanimous_bound, verdict

__all__ = [
    "EvaluationReport",
    "evaluation_report",
    "geneval_by_tag",
    "image_metrics_in",
    "metric_notes",
    "metric_summary_columns",
    "paired_comparisons",
    "prompt_differences",
    "summarize",
    "tag_scores",
]


def prompt_differences(results: pd.DataFrame, metric: str, *, top: int = 3) -> pd.DataFrame:
    """The ``top`` prompts on which the models differ most on a per-image ``metric``: prompt_id, prompt,
    spread (the largest minus the smallest model mean, seeds averaged) and each model's mean."""
    ok = results[results["status"] == "ok"] if "status" in results else results
    if metric not in ok:
        raise ConfigError(f"the results have no column {metric!r}; metrics there: {image_metrics_in(ok)}", "metric")
    ok = ok.assign(**{metric: pd.to_numeric(ok[metric], errors="coerce")})  # None (no value) as NaN
    means = ok.pivot_table(index="prompt_id", columns="model_id", values=metric, aggfunc="mean", sort=False)
    if means.empty:  # no image has a value (e.g. composition on prompts outside the toy world)
        return pd.DataFrame(columns=["prompt_id", "prompt", "spread"])
    spread = (means.max(axis=1) - means.min(axis=1)).dropna().sort_values(ascending=False, kind="stable").head(top)
    prompts = ok.drop_duplicates("prompt_id").set_index("prompt_id")["prompt"]
    table = pd.concat([spread.index.map(prompts).to_series(index=spread.index, name="prompt"),
                       spread.rename("spread"), means.loc[spread.index]], axis=1).reset_index()  # fmt: skip
    table.columns.name = None
    return table


def image_metrics_in(rows: pd.DataFrame) -> list[str]:
    """The registry's per-image metrics that ``rows`` have values of, in registry order."""
    return [n for n, m in METRICS.items() if m.kind == "image" and n in rows and rows[n].notna().any()]


def metric_summary_columns(name: str) -> tuple[str, str, str]:
    """A metric's value and CI columns in a summary: ``<name>_mean`` etc. per image, ``<name>`` etc. per set."""
    value = f"{name}_mean" if name in METRICS and METRICS[name].kind == "image" else name
    return value, f"{name}_ci_low", f"{name}_ci_high"


def summarize(
    df: pd.DataFrame,
    gpu_hour_cost: float | None = None,
    *,
    reference: str | None = None,
    gpu_type: str | None = None,
    utilisation: float | None = None,
    prices: Prices | None = None,
) -> pd.DataFrame:
    """Per model: images, latency (mean, median with a CI, p95; the ratio to ``reference``, default the first
    model, with a CI; a note on the timing's noise), images per second, peak memory, each per-image metric's
    mean with a 95% CI over prompts (``<name>_mean``, ``_ci_low``, ``_ci_high``; seeds averaged within a prompt
    first) and the images it has no value for (``<name>_unscored``: a judge unsure of them, a prompt it cannot
    read; they are left out of the mean, so a model with many of them is read with care), and what an image
    costs self-hosted at the measured time per image (batch time / images): on ``gpu_type`` (default: the
    hardware the rows ran on, when the price table lists it; else no cost) or at ``gpu_hour_cost`` $/hour, busy
    ``utilisation`` of the time, against every image API in ``prices`` (``workbench.costs``); where the GPU
    reported its energy (NVML, rows' ``energy_wh``), the energy per image and its electricity at the prices'
    ``usd_per_kwh`` (absent elsewhere). Only rows with status ``ok`` count towards quality, speed and cost."""
    if df.empty:
        raise ConfigError("no results to summarize")
    prices = prices or load_prices()
    if gpu_type is None and gpu_hour_cost is None:
        gpu_type = priced_gpu(df, prices)
    priced = gpu_type is not None or gpu_hour_cost is not None
    timing = latency_summary(df, reference).set_index("model_id")
    rows = []
    for model_id, group in df.groupby("model_id", sort=False):
        ok = group[group["status"] == "ok"]
        latency = ok["latency_s"].astype(float)
        row = {
            "model_id": model_id,
            "images": len(group),
            "failed": int((group["status"] != "ok").sum()),
            "latency_mean_s": latency.mean(),
            "latency_p95_s": latency.quantile(0.95),
            "images_per_s": 1 / latency.mean() if len(latency) else float("nan"),
            "peak_mem_mb": ok["peak_mem_mb"].max(),
            "mem_kind": ", ".join(sorted(ok["mem_kind"].dropna().unique())) if "mem_kind" in ok else "",
        }
        if model_id in timing.index:
            row |= timing.loc[model_id].dropna().to_dict()
        for name in image_metrics_in(ok):
            row |= mean_over_prompts(ok, name)
            row[f"{name}_unscored"] = int(pd.to_numeric(ok[name], errors="coerce").isna().sum())
        if "energy_wh" in ok and ok["energy_wh"].notna().any():  # where the GPU reported its energy
            energy = ok["energy_wh"].dropna().astype(float)
            row |= {"energy_wh_per_image": energy.mean(), "energy_images": len(energy),
                    "usd_per_kwh": prices.usd_per_kwh,
                    "electricity_usd_per_image": energy.mean() / 1000 * prices.usd_per_kwh}  # fmt: skip
        if len(latency) and priced:
            batch = int(ok["batch_images"].median()) if ok.get("batch_images", pd.Series()).notna().any() else 1
            cost = self_hosting_cost(
                latency.mean(), gpu_type, usd_per_hour=gpu_hour_cost, utilisation=utilisation, batch_size=batch,
                prices=prices,
            )  # fmt: skip
            row |= cost.to_dict()
        rows.append(row)
    return pd.DataFrame(rows)


def paired_comparisons(
    df: pd.DataFrame, reference: str | None = None, *, metrics: Sequence[str] | None = None, alpha: float = 0.05
) -> pd.DataFrame:
    """Every model against ``reference`` (default the first), on each per-image metric (default: every one
    the rows have values of), prompt by prompt (seeds averaged): mean
    difference with its CI (by the metric's range where the registry knows it: ``stats.bounded_ci``), Wilcoxon
    p, Holm across models and metrics, win rate, prompts (and those that differ), and the smallest difference
    the study could detect (``compare_groups``). A routed policy (rows with a ``routed_model_id``)
    is also compared with every single model, so its quality stands against each model it chooses among.
    Models without a scored image are left out; without a scored reference the table is empty."""
    models = list(dict.fromkeys(df["model_id"]))
    reference = reference if reference is not None else models[0]
    if reference not in models:
        raise ConfigError(f"reference model {reference!r} is not among the results' models {models}", "reference_model")
    ok = df[df["status"] == "ok"] if "status" in df else df
    present = [m for m in (image_metrics_in(ok) if metrics is None else metrics) if m in ok]
    scored = set(ok.loc[ok[present].notna().any(axis=1), "model_id"]) if present else set()
    if reference not in scored or len(scored) < 2:
        return pd.DataFrame()
    ok = ok[ok["model_id"].isin(scored)]
    lower = [m for m in present if m in METRICS and not METRICS[m].higher_is_better]
    bounds = metric_bounds(present)
    tables = [
        compare_groups(
            ok, by="model_id", reference=reference, metrics=present, alpha=alpha, lower_is_better=lower, bounds=bounds
        )
    ]
    routed = set(ok.loc[ok.get("routed_model_id", pd.Series(index=ok.index)).notna(), "model_id"])
    for policy in (m for m in models if m in routed and m != reference):
        for other in (m for m in models if m in scored and m not in routed and m != reference):
            both = ok[ok["model_id"].isin([policy, other])]
            table = compare_groups(
                both, by="model_id", reference=other, metrics=present, alpha=alpha, lower_is_better=lower,
                bounds=bounds,
            )  # fmt: skip
            tables.append(table[table["model_id"] == policy])
    table = pd.concat(tables, ignore_index=True)
    table["p_holm"] = holm(table["p_value"].fillna(1.0))
    return table


@dataclass
class EvaluationReport:
    """What the evaluation study reports: per-model ``summary``, paired ``comparisons`` with the reference
    model, the ``verdict`` in words, and ``metrics``: what each reported metric is (``metric_notes``). Where the
    rows have ``geneval`` values: ``geneval``, per model its score per tag and overall with intervals
    (``tag_scores``), and ``geneval_comparisons``, the paired comparisons per tag."""

    summary: pd.DataFrame
    comparisons: pd.DataFrame
    reference: str
    verdict: str
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    geneval: pd.DataFrame = field(default_factory=pd.DataFrame)
    geneval_comparisons: pd.DataFrame = field(default_factory=pd.DataFrame)

    def measured(self) -> list[str]:
        """The metrics the summary has values of, in registry order."""
        values = (metric_summary_columns(m)[0] for m in METRICS)
        return [m for m, v in zip(METRICS, values, strict=True) if v in self.summary and self.summary[v].notna().any()]

    def quality_metric(self, preferred: str | None = None) -> str | None:
        """The metric to plot speed and cost against: ``preferred`` if given, else the first measured one."""
        return preferred if preferred is not None else next(iter(self.measured()), None)

    def save(self, results: pd.DataFrame, output_dir: str | Path) -> None:
        """results.parquet, summary.json (with the reference, the verdict and the metrics' notes) and
        comparisons.json."""
        self.write(RunFolder(output_dir), results)

    def write(self, folder: RunFolder, results: pd.DataFrame | None = None) -> None:
        """The report into ``folder``: its rows exported (``results``, default the folder's), summary.json
        and comparisons.json."""
        extra = {}
        if len(self.geneval):
            extra = {"geneval": json.loads(self.geneval.to_json(orient="records")),
                     "geneval_comparisons": json.loads(self.geneval_comparisons.to_json(orient="records"))}  # fmt: skip
        folder.finish(
            self.summary, comparisons=self.comparisons, results=results, reference_model=self.reference,
            verdict=self.verdict, metrics=self.metrics, **extra,
        )  # fmt: skip


def metric_notes(names: Sequence[str], options: MetricOptions | None = None) -> dict[str, dict[str, Any]]:
    """Per metric: kind, description, which way is better, unit, what it needs, a note for readers (e.g.
    an offline stand-in), and for per-set metrics the estimator, its small-sample bias and the reference."""
    notes = {
        name: {
            "kind": METRICS[name].kind, "description": METRICS[name].description,
            "higher_is_better": METRICS[name].higher_is_better, "unit": METRICS[name].unit,
            "needs": list(METRICS[name].needs), "note": METRICS[name].note_for(options or MetricOptions()),
        }
        for name in names
    }  # fmt: skip
    for name, extra in set_metric_notes([n for n in names if METRICS[n].kind == "set"], options).items():
        notes[name] |= extra
    return notes


def evaluation_report(
    results: pd.DataFrame,
    reference: str | None = None,
    *,
    gpu_hour_cost: float | None = None,
    gpu_type: str | None = None,
    utilisation: float | None = None,
    prices: Prices | str | Path | None = None,
    metrics: Sequence[str] | None = None,
    set_metrics: pd.DataFrame | None = None,
    metric_options: MetricOptions | None = None,
    alpha: float = 0.05,
) -> EvaluationReport:
    """The summary (``summarize``, with the per-set metrics of ``set_metrics``, a ``set_metrics_by_model``
    table, merged in), the paired comparisons (``paired_comparisons`` on the per-image ``metrics``, default
    every one the results have) and their verdict, with ``reference`` (default the first model) as the
    model every other is measured against; ``prices`` a ``Prices`` or a price file of one's own (default:
    the bundled table)."""
    models = list(dict.fromkeys(results["model_id"]))
    reference = reference if reference is not None else models[0]
    prices = prices if isinstance(prices, Prices) or prices is None else load_prices(prices)
    summary = summarize(
        results, gpu_hour_cost, reference=reference, gpu_type=gpu_type, utilisation=utilisation, prices=prices
    )
    if set_metrics is not None and len(set_metrics.columns) > 1:
        summary = summary.merge(set_metrics, on="model_id", how="left")
    image_metrics = image_metrics_in(results) if metrics is None else list(metrics)
    comparisons = paired_comparisons(results, reference, metrics=image_metrics, alpha=alpha)
    if len(comparisons):
        words = verdict(
            comparisons, by="model_id", alpha=alpha,
            units={m: METRICS[m].unit for m in image_metrics if m in METRICS and METRICS[m].unit},
            lower_is_better=[m for m in image_metrics if m in METRICS and not METRICS[m].higher_is_better],
        )  # fmt: skip
    elif len(models) < 2:
        words = "only one model: nothing to compare"
    else:
        words = f"nothing to compare: no scored images of {reference} and another model ({', '.join(image_metrics)})"
    set_names = [c for c in (set_metrics.columns if set_metrics is not None else []) if c in METRICS]
    notes = metric_notes([*image_metrics, *set_names], metric_options)
    if "geneval" not in image_metrics:
        return EvaluationReport(summary, comparisons, reference, words, notes)
    return EvaluationReport(summary, comparisons, reference, words, notes, *geneval_by_tag(results, reference, alpha))


def tag_scores(rows: pd.DataFrame, column: str = "geneval", *, draws: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Per tag (a row's ``geneval_tag``, else its ``category``) and ``overall``: GenEval's score
    (``metrics.geneval.summary_scores``) with a 95% interval from resampling prompts within each tag (a prompt's
    images stay together; a tag all right or all wrong gets Clopper-Pearson's bound over its prompts instead, and
    in the overall score's draws a share from Beta(prompts, 1), whose 2.5% quantile is that bound, so that it
    adds its uncertainty there too), and the images and prompts behind it. Images without a value are left out."""
    scored = rows[rows[column].notna()]
    by = _tag_column(scored)
    point = summary_scores(scored, column, tag=by)
    groups = {tag: [g[column].to_numpy(dtype=float) for _, g in frame.groupby("prompt_id")]
              for tag, frame in scored.groupby(by)}  # fmt: skip
    unanimous = {tag for tag in groups if point[tag] in (0.0, 1.0)}  # every image right, or every one wrong
    rng = np.random.default_rng(seed)
    drawn: dict[str, list[float]] = {tag: [] for tag in [*groups, "overall"]}
    for _ in range(draws):
        shares = {}
        for tag, prompts in groups.items():
            if tag in unanimous:
                share = float(rng.beta(len(prompts), 1))
                shares[tag] = share if point[tag] == 1.0 else 1.0 - share
            else:
                chosen = rng.integers(len(prompts), size=len(prompts))
                shares[tag] = float(np.concatenate([prompts[k] for k in chosen]).mean())
            drawn[tag].append(shares[tag])
        drawn["overall"].append(float(np.mean(list(shares.values()))))
    counts = scored.groupby(by).agg(images=(column, "size"), prompts=("prompt_id", "nunique"))
    counts.loc["overall"] = counts.sum()
    table = []
    for tag, values in drawn.items():
        low, high = np.quantile(values, [0.025, 0.975])
        if tag in unanimous:  # Clopper-Pearson over the prompts
            bound = unanimous_bound(int(counts.loc[tag, "prompts"]))
            low, high = (bound, 1.0) if point[tag] == 1.0 else (0.0, 1 - bound)
        low, high = min(low, point[tag]), max(high, point[tag])  # the score itself is always in its interval
        images, prompts = (int(v) for v in counts.loc[tag, ["images", "prompts"]])
        table.append({"tag": tag, "score": point[tag], "ci_low": float(low), "ci_high": float(high),
                      "images": images, "prompts": prompts})  # fmt: skip
    return pd.DataFrame(table)


def _tag_column(rows: pd.DataFrame) -> str:
    """GenEval's own tag where the rows carry it (``geneval_tag``), else the prompt table's ``category``."""
    return "geneval_tag" if "geneval_tag" in rows and rows["geneval_tag"].notna().all() else "category"


def geneval_by_tag(results: pd.DataFrame, reference: str, alpha: float = 0.05) -> tuple[pd.DataFrame, pd.DataFrame]:
    """GenEval per model: each tag's score and the overall score (the mean over tags) with intervals
    (``tag_scores``), and every model against ``reference`` within each tag (``paired_comparisons``, Holm within
    the tag; ``metric`` reads "geneval: <tag>")."""
    scored = results[(results["status"] == "ok") & results["geneval"].notna()]
    if scored.empty:
        return pd.DataFrame(), pd.DataFrame()
    by_model = scored.groupby("model_id", sort=False)
    scores = pd.concat([tag_scores(group).assign(model_id=model) for model, group in by_model])
    compared = [paired_comparisons(group, reference, metrics=["geneval"], alpha=alpha).assign(tag=tag)
                for tag, group in scored.groupby(_tag_column(scored))]  # fmt: skip
    compared = [frame.assign(metric=f"geneval: {frame['tag'].iloc[0]}") for frame in compared if len(frame)]
    comparisons = pd.concat(compared, ignore_index=True) if compared else pd.DataFrame()
    return scores[["model_id", *scores.columns.drop("model_id")]].reset_index(drop=True), comparisons
