"""Evaluating models: prompts x models x seeds -> one tidy row per image, stored as it finishes.

``ModelEvaluator.run()`` reads like a script::

    units: for each target (a model id, a pipeline, or a Router: each prompt's route picks model and settings)
           x each prompt x each seed not yet stored -> plan.resolve once per prompt
    engine: batches across prompts, targets interleaved in rotating rounds -> run inline, on worker
           processes (one per device) or on Ray actors -> the driver saves PNGs and appends rows

Rows go to a ``ResultStore`` (JSON lines, one fsync'd append per batch), so a study killed half-way resumes
where it stopped. ``summarize`` gives each model's latency (median with a CI, a ratio to the reference model
with a CI, and a note when the timing is noisy), quality and cost; ``compare_models`` pairs every model with
the reference prompt by prompt (``workbench.stats``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from workbench.config import GenerationConfig
from workbench.engine import BatchResult, BatchRunner, RunnerSpec, Unit, execute, plan_batches
from workbench.errors import ConfigError
from workbench.generation import save_image
from workbench.plan import ROUTED, resolve, target_label
from workbench.results import ResultStore, settings_key
from workbench.stats import compare_groups, holm, mean_over_prompts, median_ci, paired_ratio, ratio_of_medians

__all__ = [
    "ModelEvaluator",
    "compare_models",
    "latency_summary",
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

    ``workers``: 1 runs here; a count spreads batches over worker processes, one per visible GPU (or CPU
    workers sharing the cores), or give a list of devices; ``backend="ray"`` runs ``workers`` Ray actors
    ($RAY_ADDRESS, or a local Ray). Workers load their own pipelines, so targets must then be model ids or
    Routers. ``threads``: CPU threads per worker (default: the cores shared out).
    """

    def __init__(
        self,
        prompts: Sequence[str] | pd.DataFrame,
        models: Sequence[Any],
        seeds: Sequence[int],
        config: GenerationConfig | None = None,
        *,
        output_dir: str | Path,
        scorer=None,
        run_id: str = "run",
        device: str | None = None,
        warmup: bool = True,
        workers: int | Sequence[str] = 1,
        backend: str = "local",
        threads: int | None = None,
    ):
        if isinstance(models, str) or not models:
            raise ConfigError(f"models must be a non-empty list of model ids, pipelines or Routers, got {models!r}")
        if ROUTED in models:
            raise ConfigError(f"to route prompts pass a Router (wb.Router(...)), not the name {ROUTED!r}", "models")
        self.prompts = prompt_frame(prompts)
        self.models = list(models)
        self.labels = [target_label(m) for m in self.models]
        if len(set(self.labels)) < len(self.labels):
            raise ConfigError(f"each model may appear once, got {self.labels}", "models")
        self.seeds = [int(s) for s in seeds]
        if not self.seeds:
            raise ConfigError("seeds must not be empty")
        self.config = config or GenerationConfig()
        self.output_dir = Path(output_dir)
        self.store = ResultStore(self.output_dir / "results.jsonl")
        self.scorer = scorer
        self.run_id = run_id
        self.device = device
        self.workers, self.backend, self.threads = workers, backend, threads
        self.spec = RunnerSpec(
            run_id, settings_key(self.config), type(scorer) if scorer else None,
            getattr(scorer, "model_id", None), warmup,
        )  # fmt: skip
        self.runner = BatchRunner(self.spec, scorer=scorer, device=device)

    def units(self) -> list[Unit]:
        """What is still to make: every target x prompt x seed not in the store, a plan per prompt."""
        settings, done = self.spec.settings, self.store.done()
        units = []
        for target, label in zip(self.models, self.labels, strict=True):
            for prompt in self.prompts.itertuples():
                seeds = [s for s in self.seeds if (label, prompt.prompt_id, s, settings) not in done]
                if seeds:
                    plan = resolve(target, prompt.prompt, self.config)
                    units += [Unit(label, prompt.prompt_id, prompt.prompt, prompt.category, s, plan) for s in seeds]
        return units

    def run(self, progress: Callable[[int, int], None] | None = None) -> pd.DataFrame:
        """Make and store what is missing, then return this evaluation's rows (``results()``)."""
        units = self.units()
        total = len(self.models) * len(self.prompts) * len(self.seeds)
        finished = total - len(units)

        def store(result: BatchResult) -> None:
            nonlocal finished
            for record in result.records:  # images first: a stored row always has its PNG
                save_image(record, self.output_dir / "images")
            self.store.append(result.rows)
            finished += len(result.rows)
            if progress is not None:
                progress(finished, total)

        execute(
            plan_batches(units), self.spec, store, workers=self.workers, backend=self.backend,
            runner=self.runner, threads=self.threads,
        )  # fmt: skip
        return self.results()

    def results(self) -> pd.DataFrame:
        """The stored rows of this evaluation (its models, prompts, seeds and settings), in stored order."""
        frame = self.store.frame()
        if frame.empty:
            return frame
        mine = (
            frame["model_id"].isin(self.labels)
            & frame["prompt_id"].isin(self.prompts["prompt_id"])
            & frame["seed"].isin(self.seeds)
            & (frame["settings"] == self.spec.settings)
        )
        return frame[mine].reset_index(drop=True)


# --- latency --------------------------------------------------------------------------------------

NOISY_SPREAD = 0.25  # per-batch latency IQR over its median above this: noisy
LOAD_CHANGE = 0.25  # other processes' CPU share moving by more than this during a model's batches: noisy


def _batch_latencies(rows: pd.DataFrame) -> pd.DataFrame:
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
    """In words: is this model's timing steady, or noisy (spread, or other processes' load changing)?"""
    latency = batches["latency_s"].astype(float)
    if len(latency) < 3:
        return f"only {len(latency)} batch(es) timed: too few to judge the timing's noise"
    median = latency.median()
    spread = (latency.quantile(0.75) - latency.quantile(0.25)) / median
    notes = []
    if spread > NOISY_SPREAD:
        notes.append(f"per-batch latency varies widely (interquartile range {spread:.0%} of the median)")
    busy = batches["cpu_busy_other"].dropna().astype(float)
    if len(busy) and busy.max() - busy.min() > LOAD_CHANGE:
        notes.append(
            f"the machine's load changed during the study: other processes used {busy.min():.0%} to "
            f"{busy.max():.0%} of the CPU while this model ran"
        )
    if notes:
        return "noisy timing: " + "; ".join(notes)
    load = f", other processes at most {busy.max():.0%} of the CPU" if len(busy) else ""
    return f"steady timing: interquartile range {spread:.0%} of the median over {len(latency)} batches{load}"


def latency_summary(rows: pd.DataFrame, reference: str | None = None) -> pd.DataFrame:
    """Per model: the per-image latency median with its distribution-free CI over batches, the ratio to
    ``reference`` (default the first model) with a CI, and the timing note. The ratio pairs the two models'
    batches of the same interleaving round (median of the per-round ratios), so drift that hits a round
    hits both; rows without rounds fall back to a ratio of medians over independent batches."""
    ok = rows[rows["status"] == "ok"]
    batches = {model: _batch_latencies(group) for model, group in ok.groupby("model_id", sort=False)}
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


def summarize(df: pd.DataFrame, gpu_hour_cost: float | None = None, *, reference: str | None = None) -> pd.DataFrame:
    """Per model: images, latency (mean, median with a CI, p95; the ratio to ``reference``, default the first
    model, with a CI; a note on the timing's noise), images per second, peak memory, CLIP mean with a 95% CI
    over prompts (seeds averaged within a prompt first), and cost per image from a price per GPU-hour.
    Only rows with status ``ok`` count towards quality and speed."""
    if df.empty:
        raise ConfigError("no results to summarize")
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
        if "clip_score" in ok and ok["clip_score"].notna().any():
            row |= mean_over_prompts(ok, "clip_score")
        if gpu_hour_cost is not None:
            row["cost_per_image"] = gpu_hour_cost * latency.mean() / 3600
        rows.append(row)
    return pd.DataFrame(rows)


def compare_models(
    df: pd.DataFrame, reference: str | None = None, *, metrics: Sequence[str] = ("clip_score",), alpha: float = 0.05
) -> pd.DataFrame:
    """Every model against ``reference`` (default the first), prompt by prompt (seeds averaged): mean
    difference with its CI, Wilcoxon p, Holm across models and metrics, win rate, prompts, and the smallest
    difference the study could detect (``compare_groups``). A routed target is also compared with
    every single model, so the policy's quality stands against each model it chooses among."""
    models = list(dict.fromkeys(df["model_id"]))
    reference = reference if reference is not None else models[0]
    if reference not in models:
        raise ConfigError(f"reference model {reference!r} is not among the results' models {models}", "reference_model")
    if len(models) < 2:
        return pd.DataFrame()
    tables = [compare_groups(df, by="model_id", reference=reference, metrics=metrics, alpha=alpha)]
    if ROUTED in models:
        for other in (m for m in models if m not in (ROUTED, reference)):
            both = df[df["model_id"].isin([ROUTED, other])]
            table = compare_groups(both, by="model_id", reference=other, metrics=metrics, alpha=alpha)
            tables.append(table[table["model_id"] == ROUTED])
    table = pd.concat(tables, ignore_index=True)
    table["p_holm"] = holm(table["p_value"].fillna(1.0))
    return table


def summary_table(summary: pd.DataFrame):
    """The summary as a readable table: labelled columns with units, sensible rounding."""
    columns = {
        "model_id": ("model", "{}"),
        "images": ("images", "{}"),
        "failed": ("failed", "{}"),
        "latency_mean_s": ("latency mean (s)", "{:.3f}"),
        "latency_median_s": ("median (s)", "{:.3f}"),
        "latency_p95_s": ("p95 (s)", "{:.3f}"),
        "images_per_s": ("images / s", "{:.1f}"),
        "peak_mem_mb": ("peak memory (MB)", "{:.0f}"),
        "mem_kind": ("memory measure", "{}"),
        "clip_mean": ("CLIP score", "{:.2f}"),
        "clip_ci_low": ("95% CI low", "{:.2f}"),
        "clip_ci_high": ("95% CI high", "{:.2f}"),
        "cost_per_image": ("$ / image", "${:.6f}"),
    }
    shown = summary[[c for c in columns if c in summary]].rename(columns={k: v[0] for k, v in columns.items()})
    formats = {label: fmt for key, (label, fmt) in columns.items() if key in summary}
    return shown.style.format(formats).hide(axis="index")
