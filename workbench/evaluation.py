"""Evaluating models: prompts x models x seeds -> one tidy row per image, stored as it finishes.

``ModelEvaluator.run()`` reads like a script::

    for each target (a model id, a pipeline, or a Router: each prompt's route picks model and settings):
      for each prompt: plan.resolve (a model's first use makes one untimed warm-up image)
                       -> plan.run its seeds -> CLIP-score the batch -> save PNGs -> append rows (result_row)

Rows go to a ``ResultStore`` (JSON lines, one fsync'd line per row), so a study killed half-way
resumes where it stopped: rows already stored are skipped, nothing is done twice or lost.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from workbench.config import GenerationConfig
from workbench.errors import ConfigError, WorkbenchError
from workbench.generation import save_image
from workbench.plan import ROUTED, resolve, run, target_label

__all__ = [
    "ROW_KEY",
    "ModelEvaluator",
    "ResultStore",
    "bootstrap_ci",
    "prompt_frame",
    "result_row",
    "settings_key",
    "summarize",
    "summary_table",
]

ROW_KEY = ("model_id", "prompt_id", "seed", "settings")  # what makes a row unique within a run


class ResultStore:
    """Append-only JSON-lines file of result rows. A line cut short by a crash is dropped on reading."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def rows(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        rows = []
        for line in self.path.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a partial last line from an interrupted write
        return rows

    def done(self) -> set[tuple]:
        """The keys (ROW_KEY) of the rows already stored."""
        return {tuple(row[k] for k in ROW_KEY) for row in self.rows()}

    def append(self, rows: Sequence[dict[str, Any]]) -> None:
        with open(self.path, "a+b") as fh:
            fh.seek(0, os.SEEK_END)
            if fh.tell() and not self._ends_with_newline(fh):
                fh.write(b"\n")  # close off a line cut short by a crash
            for row in rows:
                fh.write(json.dumps(row, default=str).encode() + b"\n")
            fh.flush()
            os.fsync(fh.fileno())

    @staticmethod
    def _ends_with_newline(fh) -> bool:
        fh.seek(-1, os.SEEK_END)
        return fh.read(1) == b"\n"

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows())


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


def settings_key(config: GenerationConfig) -> str:
    """A short hash of the settings: rows made with other settings are other rows."""
    return hashlib.sha256(config.to_json().encode()).hexdigest()[:12]


def result_row(
    record,
    *,
    target: str,
    run_id: str,
    prompt_id: str,
    category: str,
    settings: str,
    image_path: str | None,
    scores=None,
    index: int = 0,
    **extra: Any,
) -> dict[str, Any]:
    """One image's row, the same columns in every study: who made it (``target``: a model id, or "routed" with
    the model used as routed_model_id), the prompt, seed and settings, the measurements, the CLIP score
    (``scores``, a ``ClipScores`` for the batch, this image at ``index``) and where the PNG is."""
    return {
        "run_id": run_id,
        "model_id": target,
        "routed_model_id": record.model_id if record.model_id != target else None,
        "prompt": record.prompt,
        "prompt_id": prompt_id,
        "category": category,
        "seed": record.seed,
        "settings": settings,
        **{k: v for k, v in record.to_row().items() if k not in {"model_id", "prompt", "seed"}},
        **extra,
        "clip_score": scores.scores[index] if scores else None,
        "clip_model": scores.clip_model if scores else None,
        "clip_truncated": scores.truncated[index] if scores else None,
        "image_path": image_path,
    }


class ModelEvaluator:
    """Runs every prompt with every model and seed, scores and stores each image as a row.

    ``models`` are targets: model ids, pipelines, or a ``Router`` (each prompt then goes to the model and
    settings of its route, ``batch_size`` from ``config``; its rows have model_id "routed", the model used as
    routed_model_id, and the routing decision).
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
    ):
        if isinstance(models, str) or not models:
            raise ConfigError(f"models must be a non-empty list of model ids, pipelines or Routers, got {models!r}")
        if ROUTED in models:
            raise ConfigError(f"to route prompts pass a Router (wb.Router(...)), not the name {ROUTED!r}", "models")
        self.prompts = prompt_frame(prompts)
        self.models = list(models)
        self.labels = [target_label(m) for m in self.models]
        self.seeds = [int(s) for s in seeds]
        if not self.seeds:
            raise ConfigError("seeds must not be empty")
        self.config = config or GenerationConfig()
        self.output_dir = Path(output_dir)
        self.store = ResultStore(self.output_dir / "results.jsonl")
        self.scorer = scorer
        self.run_id = run_id
        self.device = device
        self.warmup = warmup

    def run(self, progress: Callable[[int, int], None] | None = None) -> pd.DataFrame:
        """Generate what is missing from the store, then return this evaluation's rows (``results()``)."""
        settings = settings_key(self.config)
        done = self.store.done()
        todo = [
            (target, label, [
                (prompt, missing)
                for prompt in self.prompts.itertuples()
                if (missing := [s for s in self.seeds if (label, prompt.prompt_id, s, settings) not in done])
            ])
            for target, label in zip(self.models, self.labels, strict=True)
        ]  # fmt: skip
        total = len(self.models) * len(self.prompts) * len(self.seeds)
        finished = total - sum(len(seeds) for _, _, work in todo for _, seeds in work)
        warmed: set[str] = set()
        for target, label, work in todo:
            for prompt, seeds in work:
                # 1. Plan (a Router decides per prompt); a model's first use makes an untimed warm-up image.
                plan = resolve(target, prompt.prompt, self.config)
                if self.warmup and plan.model_id not in warmed:
                    warmup = replace(plan, config=plan.config.replace(batch_size=1))
                    run(warmup, prompt.prompt, 0, device=self.device)
                    warmed.add(plan.model_id)
                # 2. Generate this prompt's missing seeds; a failure becomes rows that say so.
                try:
                    records = run(plan, prompt.prompt, seeds, device=self.device)
                except WorkbenchError:
                    raise
                except Exception as error:  # keep the study going; the row records what happened
                    self.store.append([self._error_row(label, prompt, s, settings, error) for s in seeds])
                    finished += len(seeds)
                    continue
                # 3. Score, save, store.
                scores = (
                    self.scorer.score([r.image for r in records], [r.prompt for r in records]) if self.scorer else None
                )
                rows = [
                    result_row(
                        record, target=label, run_id=self.run_id, prompt_id=prompt.prompt_id,
                        category=prompt.category, settings=settings, scores=scores, index=i,
                        image_path=str(save_image(record, self.output_dir / "images").relative_to(self.output_dir)),
                    )
                    for i, record in enumerate(records)
                ]  # fmt: skip
                self.store.append(rows)
                finished += len(rows)
                if progress is not None:
                    progress(finished, total)
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
            & (frame["settings"] == settings_key(self.config))
        )
        return frame[mine].reset_index(drop=True)

    def _error_row(self, label: str, prompt, seed: int, settings: str, error: Exception) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "model_id": label,
            "prompt": prompt.prompt,
            "prompt_id": prompt.prompt_id,
            "category": prompt.category,
            "seed": seed,
            "settings": settings,
            **self.config.to_dict(),
            "status": f"error: {type(error).__name__}: {error}",
        }


def bootstrap_ci(values: Sequence[float], *, n: int = 2000, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of the mean."""
    values = np.asarray(values, dtype=float)
    if len(values) < 2:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(n, len(values)))].mean(axis=1)
    tail = (1 - level) / 2 * 100
    return float(np.percentile(means, tail)), float(np.percentile(means, 100 - tail))


def clip_over_prompts(rows: pd.DataFrame) -> dict[str, float]:
    """clip_mean with clip_ci_low/clip_ci_high: a 95% bootstrap CI over prompts, seeds averaged within a
    prompt first (prompts, not images, are the independent units)."""
    per_prompt = rows.groupby("prompt_id")["clip_score"].mean()
    low, high = bootstrap_ci(per_prompt.to_numpy())
    return {"clip_mean": per_prompt.mean(), "clip_ci_low": low, "clip_ci_high": high}


def summarize(df: pd.DataFrame, gpu_hour_cost: float | None = None) -> pd.DataFrame:
    """Per model: images, latency mean/median/p95, images per second, peak memory, CLIP mean with a
    95% bootstrap CI over prompts (seeds averaged within a prompt first), and cost per image from a
    price per GPU-hour. Only rows with status ``ok`` count towards quality and speed."""
    if df.empty:
        raise ConfigError("no results to summarize")
    rows = []
    for model_id, group in df.groupby("model_id", sort=False):
        ok = group[group["status"] == "ok"]
        latency = ok["latency_s"].astype(float)
        row = {
            "model_id": model_id,
            "images": len(group),
            "failed": int((group["status"] != "ok").sum()),
            "latency_mean_s": latency.mean(),
            "latency_median_s": latency.median(),
            "latency_p95_s": latency.quantile(0.95),
            "images_per_s": 1 / latency.mean() if len(latency) else float("nan"),
            "peak_mem_mb": ok["peak_mem_mb"].max(),
            "mem_kind": ", ".join(sorted(ok["mem_kind"].dropna().unique())) if "mem_kind" in ok else "",
        }
        if "clip_score" in ok and ok["clip_score"].notna().any():
            row |= clip_over_prompts(ok)
        if gpu_hour_cost is not None:
            row["cost_per_image"] = gpu_hour_cost * latency.mean() / 3600
        rows.append(row)
    return pd.DataFrame(rows)


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
