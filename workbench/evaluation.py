"""Evaluating models: prompts x models x seeds -> one tidy row per image, stored as it finishes.

``ModelEvaluator.run()`` reads like a script::

    units: for each target (a model id, a pipeline, or a Router: each prompt's route picks model and settings)
           x each prompt x each seed not yet stored -> plan.resolve once per prompt
    engine: batches across prompts, targets interleaved in rotating rounds -> run inline, on worker
           processes (one per device) or on Ray actors -> the driver saves PNGs and appends rows

Rows and PNGs go to the ``RunFolder`` (JSON lines, one fsync'd append per batch), so a study killed half-way
resumes where it stopped. ``summarize`` gives each model's latency (median with a CI, a ratio to the reference model
with a CI, and a note when the timing is noisy), quality and cost; ``compare_models`` pairs every model with
the reference prompt by prompt (``workbench.stats``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from workbench.config import GenerationConfig
from workbench.costs import Prices, load_prices, self_hosting_cost
from workbench.deprecation import renamed_keyword
from workbench.engine import BatchResult, BatchRunner, RunnerSpec, Unit, check_workers, execute, plan_batches
from workbench.errors import ConfigError
from workbench.generation import as_list, check_seeds
from workbench.metrics import (
    METRICS,
    ImageScorer,
    MetricOptions,
    check_metrics,
    image_metric_names,
    image_scorers,
    set_metric_names,
)
from workbench.metrics.provenance import metric_provenance
from workbench.metrics.registry import BUILT_IN, rebuildable, scorer_options
from workbench.metrics.sets import set_metric_notes, set_metrics_by_model
from workbench.plan import ROUTED, resolve, target_label
from workbench.run_folder import ROW_KEY, Row, RunFolder, settings_hash
from workbench.stats import (
    compare_groups,
    format_p,
    holm,
    mean_over_prompts,
    median_ci,
    paired_ratio,
    ratio_of_medians,
    verdict,
)

__all__ = [
    "ModelComparison",
    "ModelEvaluator",
    "batch_latencies",
    "compare_models",
    "comparisons_table",
    "cost_table",
    "image_metrics_in",
    "latency_summary",
    "metric_notes",
    "metric_summary_columns",
    "metrics_table",
    "model_comparison",
    "priced_gpu",
    "prompt_differences",
    "prompt_frame",
    "summarize",
    "summary_table",
]


def prompt_frame(prompts: Sequence[str] | pd.DataFrame) -> pd.DataFrame:
    """Prompts as a frame with prompt_id, prompt and category (ids p000, p001, ... for a plain list)."""
    if isinstance(prompts, pd.DataFrame):
        missing = {"prompt_id", "prompt"} - set(prompts.columns)
        if missing:
            raise ConfigError(f"the prompt table lacks column(s) {sorted(missing)}; it has {list(prompts.columns)}")
        frame = prompts.copy()
    else:
        frame = pd.DataFrame({"prompt_id": [f"p{i:03d}" for i in range(len(prompts))], "prompt": list(prompts)})
    if "category" not in frame:
        frame["category"] = ""
    if frame.empty:
        raise ConfigError("no prompts to evaluate")
    if frame["prompt_id"].duplicated().any():
        raise ConfigError(
            f"prompt ids must be unique, repeated: {sorted(set(frame.prompt_id[frame.prompt_id.duplicated()]))}"
        )
    return frame.reset_index(drop=True)


class ModelEvaluator:
    """Runs every prompt with every model and seed, scores and stores each image as a row.

    ``models`` are targets: model ids, pipelines, or a ``Router`` (each prompt then goes to the model and
    settings of its route, ``batch_size`` from ``config``; its rows have model_id "routed", the model used as
    routed_model_id, and the routing decision).

    ``metrics``: registry names (``workbench.metrics.METRICS``): per-image ones become columns of the rows,
    per-set ones are measured by ``compare()`` against the reference set of ``metric_options``. Default:
    the metrics of the given ``scorer``, else none. ``scorer``: a scorer (``ImageScorer``, e.g. a
    ``CLIPScorer``) or a list of them, used here for the metrics it fills; workers build their own from
    ``metric_options`` (a given scorer's checkpoint, its ``model_id``, becomes its metrics' weights option,
    e.g. ``clip_model``). The run folder records what produced each metric (``metrics.provenance``).

    ``workers``: 1 runs here; a count spreads batches over worker processes, one per visible GPU (or CPU
    workers sharing the cores), or give a list of devices; ``pool="ray"`` runs ``workers`` Ray actors
    ($RAY_ADDRESS, or a local Ray). Workers load their own pipelines, so targets must then be model ids or
    Routers. ``threads``: CPU threads per worker (default: the cores shared out). (``backend=``: the old name of
    ``pool=``.)
    """

    def __init__(
        self,
        prompts: Sequence[str] | pd.DataFrame,
        models: Sequence[Any],
        seeds: Sequence[int],
        config: GenerationConfig | None = None,
        *,
        output_dir: str | Path,
        metrics: Sequence[str] | None = None,
        metric_options: MetricOptions | None = None,
        scorer: ImageScorer | Sequence[ImageScorer] | None = None,
        run_id: str | None = None,
        device: str | None = None,
        warmup: bool = True,
        workers: int | Sequence[str] = 1,
        pool: str = "local",
        threads: int | None = None,
        backend: str | None = None,
    ):
        pool = renamed_keyword("ModelEvaluator", "backend", "pool", backend, pool)
        if isinstance(models, str) or not models:
            raise ConfigError(f"models must be a non-empty list of model ids, pipelines or Routers, got {models!r}")
        if ROUTED in models:
            raise ConfigError(f"to route prompts pass a Router (wb.Router(...)), not the name {ROUTED!r}", "models")
        self.prompts = prompt_frame(prompts)
        self.models = list(models)
        self.labels = [target_label(m) for m in self.models]
        if len(set(self.labels)) < len(self.labels):
            raise ConfigError(f"each model may appear once, got {self.labels}", "models")
        self.seeds = as_list(seeds, int, "seeds")
        check_seeds(self.seeds)
        if len(set(self.seeds)) < len(self.seeds):
            raise ConfigError(f"seeds must not repeat, got {self.seeds}", "seeds")
        self.config = config or GenerationConfig()
        self.output_dir = Path(output_dir)
        self.folder = RunFolder(self.output_dir, run_id)
        given = list(scorer) if isinstance(scorer, list | tuple) else [] if scorer is None else [scorer]
        if not all(isinstance(s, ImageScorer) for s in given):
            raise ConfigError(
                f"scorer must be an ImageScorer (with metrics and score_columns(images, prompts), e.g. a "
                f"CLIPScorer) or a list of them, got {scorer!r}",
                "scorer",
            )
        self.metrics = (
            list(metrics) if metrics is not None else list(dict.fromkeys(m for s in given for m in s.metrics))
        )
        self.image_metrics, self.set_metrics = image_metric_names(self.metrics), set_metric_names(self.metrics)
        self.metric_options = metric_options or MetricOptions()
        check_metrics(self.metrics, list(self.prompts["prompt"]), reference_images=self.metric_options.reference_images)
        self.metric_options = scorer_options(self.metric_options, given)  # workers rebuild given scorers from it
        self.run_id = self.folder.run_id
        self.device = device
        check_workers(workers, pool, threads)
        if workers != 1 or pool != "local":
            local_only = [type(s).__name__ for s in given if not rebuildable(s)]
            local_only += [m for m in self.image_metrics if m not in BUILT_IN]
            if local_only:
                raise ConfigError(
                    f"workers build their scorers from the built-in metrics' names, so they cannot use "
                    f"{', '.join(local_only)} (given or registered in this process): use workers=1",
                    "workers",
                )
        self.workers, self.pool, self.threads = workers, pool, threads
        self.spec = RunnerSpec(
            self.run_id, settings_hash(self.config), tuple(self.image_metrics), self.metric_options, warmup, os.getpid()
        )
        self._given = given
        self._runner: BatchRunner | None = None

    @property
    def runner(self) -> BatchRunner:
        """The in-process runner, its scorers built on first use (workers build their own)."""
        if self._runner is None:
            scorers = image_scorers(self.image_metrics, self.metric_options, device=self.device, given=self._given)
            self._runner = BatchRunner(self.spec, scorers=scorers, device=self.device)
        return self._runner

    def units(self) -> list[Unit]:
        """What is still to make: every target x prompt x seed not in the store, a plan per prompt."""
        settings, done = self.spec.settings_hash, self.folder.done()
        units = []
        for target, label in zip(self.models, self.labels, strict=True):
            for prompt in self.prompts.itertuples():
                seeds = [s for s in self.seeds if (label, prompt.prompt_id, s, settings) not in done]
                if seeds:
                    plan = resolve(target, prompt.prompt, self.config)
                    units += [Unit(label, prompt.prompt_id, prompt.prompt, prompt.category, s, plan) for s in seeds]
        return units

    def run(self, progress: Callable[[int, int], None] | None = None) -> pd.DataFrame:
        """Make and store what is missing (images; per-image metrics asked for after their images were made),
        export the run's rows (results.parquet), then return this evaluation's rows (``results()``)."""
        self.folder.write_provenance(
            metric_provenance(self.metrics, self.metric_options, self.prompts, images_per_prompt=len(self.seeds))
        )
        units = self.units()
        stored = self.folder.results()
        numbered = {  # a resumed run numbers its batches and rounds on from the stored ones
            f"first_{key}": int(stored[column].max()) + 1 if column in stored and stored[column].notna().any() else 0
            for key, column in (("batch", "batch_id"), ("round", "batch_round"))
        }
        total = len(self.models) * len(self.prompts) * len(self.seeds)
        finished = total - len(units)

        def store(result: BatchResult) -> None:
            nonlocal finished
            self.folder.add(result.rows, result.records)
            finished += len(result.rows)
            if progress is not None:
                progress(finished, total)

        execute(
            plan_batches(units, **numbered), self.spec, store, workers=self.workers, pool=self.pool,
            runner=self.runner if self.pool == "local" and self.workers == 1 else None, threads=self.threads,
        )  # fmt: skip
        self._score_stored()
        self.folder.finish()
        return self.results()

    def _score_stored(self, chunk: int = 32) -> None:
        """Score, from their PNGs, the stored images that lack a per-image metric asked for now (made before it
        was asked for); their rows are stored again with the new columns (``results()`` keeps the latest)."""
        wanted = set(self.image_metrics)
        if not wanted:
            return
        prompts = dict(zip(self.prompts["prompt_id"], self.prompts["prompt"], strict=True))
        latest = {tuple(row.get(k) for k in ROW_KEY): row for row in self.folder.latest()}
        stale = [
            row
            for (model, prompt_id, seed, settings), row in latest.items()
            if model in self.labels and prompt_id in prompts and seed in self.seeds
            and settings == self.spec.settings_hash
            and row.get("status") == "ok" and not wanted <= row.keys()
        ]  # fmt: skip
        missing = set().union(*(wanted - row.keys() for row in stale)) if stale else set()
        scorers = [s for s in self.runner.scorers if missing & set(s.metrics)]
        for start in range(0, len(stale), chunk):
            rows = stale[start : start + chunk]
            images = []
            for row in rows:
                with Image.open(self.output_dir / row["image_path"]) as image:
                    images.append(image.convert("RGB"))
            texts = [prompts[row["prompt_id"]] for row in rows]
            columns = {k: v for scorer in scorers for k, v in scorer.score_columns(images, texts).items()}
            scores = [{k: v[i] for k, v in columns.items()} for i in range(len(rows))]
            self.folder.add([Row.from_dict(row).with_scores(new) for row, new in zip(rows, scores, strict=True)])

    def compare(
        self,
        reference: str | None = None,
        *,
        gpu_hour_cost: float | None = None,
        gpu_type: str | None = None,
        utilisation: float | None = None,
        prices: Prices | str | Path | None = None,
        alpha: float = 0.05,
    ) -> ModelComparison:
        """``model_comparison`` of ``results()`` on this evaluation's metrics: the per-image ones from the
        rows, the per-set ones measured now against the reference set (``set_metrics_by_model``); written into
        the run folder (summary.json, comparisons.json)."""
        results = self.results()
        if results.empty:
            raise ConfigError("nothing to compare: run() has stored no results yet")
        measured = set_metrics_by_model(results, self.output_dir, self.set_metrics, self.metric_options)
        study = model_comparison(
            results, reference, gpu_hour_cost=gpu_hour_cost, gpu_type=gpu_type, utilisation=utilisation,
            prices=prices, metrics=self.image_metrics, set_metrics=measured, metric_options=self.metric_options,
            alpha=alpha,
        )  # fmt: skip
        study.write(self.folder, results)
        return study

    def results(self) -> pd.DataFrame:
        """The stored rows of this evaluation (its models, prompts, seeds and settings; an image's latest row),
        in the order they were given: models, then prompts, then seeds."""
        frame = self.folder.results()
        if frame.empty:
            return frame
        mine = frame[
            frame["model_id"].isin(self.labels)
            & frame["prompt_id"].isin(self.prompts["prompt_id"])
            & frame["seed"].isin(self.seeds)
            & (frame["settings_hash"] == self.spec.settings_hash)
        ].drop_duplicates(list(ROW_KEY), keep="last")  # a failed image made again: its latest row
        order = [  # models, prompts and seeds as given, whichever worker stored a row first
            mine["model_id"].map({label: i for i, label in enumerate(self.labels)}),
            mine["prompt_id"].map({p: i for i, p in enumerate(self.prompts["prompt_id"])}),
            mine["seed"].map({seed: i for i, seed in enumerate(self.seeds)}),
        ]
        return mine.iloc[np.lexsort(order[::-1])].reset_index(drop=True)


# --- latency --------------------------------------------------------------------------------------

NOISY_SPREAD = 0.25  # per-batch latency IQR over its median above this: noisy
LOAD_CHANGE = 0.25  # other processes' CPU share moving by more than this during a model's batches: noisy
BUSY = 0.25  # other processes' median CPU share above this: the machine was busy


def batch_latencies(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per batch: its per-image latency, round, size and the other processes' CPU share (rows made
    before batches were recorded count one batch per row)."""
    rows = rows.assign(**{c: rows.get(c, np.nan) for c in ("batch_id", "batch_round", "cpu_busy_other")})
    rows["batch_id"] = rows["batch_id"].fillna(pd.Series(-1 - np.arange(len(rows)), index=rows.index))
    return rows.groupby("batch_id").agg(
        latency_s=("latency_s", "first"),
        batch_round=("batch_round", "first"),
        cpu_busy_other=("cpu_busy_other", "first"),
        images=("latency_s", "size"),
    )


def _timing_note(batches: pd.DataFrame) -> str:
    """In words: is this model's timing steady, or noisy (spread, or other processes' load changing)? A load
    that stayed high is said too: absolute latencies are then too high, though ratios between interleaved
    models hold."""
    latency = batches["latency_s"].astype(float)
    if len(latency) < 3:
        return f"only {len(latency)} batch(es) timed: too few to judge the timing's noise"
    spread = (latency.quantile(0.75) - latency.quantile(0.25)) / latency.median()
    busy = batches["cpu_busy_other"].dropna().astype(float)
    notes = []
    if spread > NOISY_SPREAD:
        notes.append(f"per-batch latency varies widely (interquartile range {spread:.0%} of the median)")
    if len(busy) and busy.max() - busy.min() > LOAD_CHANGE:
        notes.append(
            f"the machine's load changed while this model ran: other processes used from {busy.min():.0%} to "
            f"{busy.max():.0%} of the CPU"
        )
    note = (
        "noisy timing: " + "; ".join(notes)
        if notes
        else (f"steady timing: interquartile range {spread:.0%} of the median over {len(latency)} batches")
    )
    if len(busy) and busy.median() > BUSY:
        note += (
            f"; the machine was busy (other processes used a median {busy.median():.0%} of the CPU), so absolute "
            "latencies are higher than on an idle machine"
        )
    return note


def latency_summary(rows: pd.DataFrame, reference: str | None = None) -> pd.DataFrame:
    """Per model: the per-image latency median with its distribution-free CI over batches, the ratio to
    ``reference`` (default the first model) with a CI, and the timing note. The ratio pairs the two models'
    batches of the same interleaving round (median of the per-round ratios), so drift that hits a round
    hits both; rows without rounds fall back to a ratio of medians over independent batches."""
    ok = rows[rows["status"] == "ok"]
    batches = {model: batch_latencies(group) for model, group in ok.groupby("model_id", sort=False)}
    if not batches:
        return pd.DataFrame(columns=["model_id"])
    reference = reference if reference is not None else next(iter(batches))
    out = []
    for model, own in batches.items():
        low, high = median_ci(own["latency_s"])
        row = {
            "model_id": model,
            "latency_median_s": own["latency_s"].median(),
            "latency_median_ci_low": low,
            "latency_median_ci_high": high,
            "batches": len(own),
            "batch_images": own["images"].median(),
            "timing_note": _timing_note(own),
        }
        if reference in batches and model != reference:
            keys = ("latency_ratio", "latency_ratio_ci_low", "latency_ratio_ci_high")
            row |= dict(zip(keys, _ratio(batches[reference], own), strict=True))
        out.append(row)
    return pd.DataFrame(out)


def _ratio(reference: pd.DataFrame, other: pd.DataFrame) -> tuple[float, float, float]:
    """other / reference per-image latency: paired by round where rounds were recorded, else independent."""
    paired = pd.concat(
        [reference.groupby("batch_round")["latency_s"].median(), other.groupby("batch_round")["latency_s"].median()],
        axis=1, keys=["a", "b"],
    ).dropna()  # fmt: skip
    if len(paired) >= 2:
        return paired_ratio(paired["a"], paired["b"])
    return ratio_of_medians(reference["latency_s"], other["latency_s"])


# --- the summary and the comparisons ---------------------------------------------------------------


def priced_gpu(rows: pd.DataFrame, prices: Prices) -> str | None:
    """The entry of ``prices`` for the hardware the rows ran on (their ``device_name``): "cpu", or the GPU whose
    name is a word of the device's ("NVIDIA H200" is "H200", not "GH200"; "A100-80GB" needs "80GB" in it).
    None when the rows ran on a GPU the table does not list (or on several kinds)."""
    names = set(rows.get("device_name", pd.Series(dtype=str)).dropna().astype(str))
    devices = set(rows.get("device", pd.Series(dtype=str)).dropna().astype(str))
    if not any(d.startswith("cuda") for d in devices):
        return "cpu" if "cpu" in prices.gpus else None
    if len(names) != 1:
        return None
    (name,) = names

    def named(word: str) -> bool:
        return re.search(rf"\b{re.escape(word)}\b", name.replace(" ", "-"), re.IGNORECASE) is not None

    matches = [
        gpu
        for gpu in prices.gpus
        if gpu != "cpu" and named(gpu.partition("-")[0]) and (not gpu.partition("-")[2] or named(gpu.partition("-")[2]))
    ]
    return matches[0] if len(matches) == 1 else None


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
    first), and what an image costs self-hosted at the measured
    time per image (batch time / images): on ``gpu_type`` (default: the hardware the rows ran on, when the
    price table lists it; else no cost) or at ``gpu_hour_cost`` $/hour, busy ``utilisation`` of the time,
    against every image API in ``prices`` (``workbench.costs``). Only rows with status ``ok`` count towards
    quality, speed and cost."""
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
        if len(latency) and priced:
            batch = int(ok["batch_images"].median()) if ok.get("batch_images", pd.Series()).notna().any() else 1
            cost = self_hosting_cost(
                latency.mean(), gpu_type, usd_per_hour=gpu_hour_cost, utilisation=utilisation, batch_size=batch,
                prices=prices,
            )  # fmt: skip
            row |= cost.to_dict()
        rows.append(row)
    return pd.DataFrame(rows)


def compare_models(
    df: pd.DataFrame, reference: str | None = None, *, metrics: Sequence[str] | None = None, alpha: float = 0.05
) -> pd.DataFrame:
    """Every model against ``reference`` (default the first), on each per-image metric (default: every one
    the rows have values of), prompt by prompt (seeds averaged): mean
    difference with its CI, Wilcoxon p, Holm across models and metrics, win rate, prompts, and the smallest
    difference the study could detect (``compare_groups``). A routed policy (rows with a ``routed_model_id``)
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
    tables = [
        compare_groups(ok, by="model_id", reference=reference, metrics=present, alpha=alpha, lower_is_better=lower)
    ]
    routed = set(ok.loc[ok.get("routed_model_id", pd.Series(index=ok.index)).notna(), "model_id"])
    for policy in (m for m in models if m in routed and m != reference):
        for other in (m for m in models if m in scored and m not in routed and m != reference):
            both = ok[ok["model_id"].isin([policy, other])]
            table = compare_groups(
                both, by="model_id", reference=other, metrics=present, alpha=alpha, lower_is_better=lower
            )
            tables.append(table[table["model_id"] == policy])
    table = pd.concat(tables, ignore_index=True)
    table["p_holm"] = holm(table["p_value"].fillna(1.0))
    return table


@dataclass
class ModelComparison:
    """What the evaluation study reports: per-model ``summary``, paired ``comparisons`` with the reference
    model, the ``verdict`` in words, and ``metrics``: what each reported metric is (``metric_notes``)."""

    summary: pd.DataFrame
    comparisons: pd.DataFrame
    reference: str
    verdict: str
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)

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
        """The comparison into ``folder``: its rows exported (``results``, default the folder's), summary.json
        and comparisons.json."""
        folder.finish(
            self.summary, comparisons=self.comparisons, results=results, reference_model=self.reference,
            verdict=self.verdict, metrics=self.metrics,
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


def model_comparison(
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
) -> ModelComparison:
    """The summary (``summarize``, with the per-set metrics of ``set_metrics``, a ``set_metrics_by_model``
    table, merged in), the paired comparisons (``compare_models`` on the per-image ``metrics``, default
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
    comparisons = compare_models(results, reference, metrics=image_metrics, alpha=alpha)
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
    return ModelComparison(summary, comparisons, reference, words, notes)


def _interval(value: float, low: float, high: float, digits: int) -> str:
    if pd.isna(value):
        return ""
    if pd.isna(low) or pd.isna(high):
        return f"{value:.{digits}f}"
    return f"{value:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def summary_table(summary: pd.DataFrame):
    """The summary as a readable table: labelled columns with units, values with their 95% CIs, rounding; a
    column per metric (↑ higher is better, ↓ lower)."""
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
            columns[f"{name} {better} [95% CI]"] = [
                _interval(r[value], r.get(low), r.get(high), digits) for r in summary.to_dict("records")
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
    """What each reported metric is (a ``ModelComparison.metrics``): kind, which way is better, what it
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
    for api in apis:
        volume = summary[f"breakeven_images_per_month_{api}"]
        times = summary[f"times_cheaper_than_{api}"]
        table[f"vs {api}"] = [
            "never cheaper" if pd.isna(v) else f"from {v:,.0f} images/month; {t:,.0f}x cheaper"
            for v, t in zip(volume, times, strict=True)
        ]
    return table.style.hide(axis="index")
