"""Evaluating models: prompts x models x seeds -> one tidy row per image, stored as it finishes.

``ModelEvaluator.run()`` reads like a script::

    for each model choice (a model id, or "routed": each prompt's route picks model and settings):
      for each prompt: load (cached; a model's first use makes one untimed warm-up image)
                       -> generate its seeds -> CLIP-score the batch -> save PNGs -> append rows

Rows go to a ``ResultStore`` (JSON lines, one fsync'd line per row), so a study killed half-way
resumes where it stopped: rows already stored are skipped, nothing is done twice or lost.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from workbench.config import GenerationConfig
from workbench.errors import ConfigError, WorkbenchError

__all__ = [
    "ROUTED",
    "ROW_KEY",
    "ModelEvaluator",
    "ResultStore",
    "bootstrap_ci",
    "prompt_frame",
    "summarize",
    "summary_table",
]

ROW_KEY = ("model_id", "prompt_id", "seed", "settings")  # what makes a row unique within a run
ROUTED = "routed"  # a model choice: each prompt goes to the model and settings of its route (routing.Router)


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


def _settings_key(config: GenerationConfig) -> str:
    return hashlib.sha256(config.to_json().encode()).hexdigest()[:12]


class ModelEvaluator:
    """Runs every prompt with every model and seed, scores and stores each image as a row.

    ``models`` may include ``"routed"``: each prompt is then routed by ``router`` (the toy world route
    table by default) and generated with its route's model and settings (``batch_size`` from ``config``);
    those rows have model_id "routed", the model used as routed_model_id, and the routing decision.
    """

    def __init__(
        self,
        prompts: Sequence[str] | pd.DataFrame,
        models: Sequence[str],
        seeds: Sequence[int],
        config: GenerationConfig | None = None,
        *,
        output_dir: str | Path,
        scorer=None,
        run_id: str = "run",
        device: str | None = None,
        warmup: bool = True,
        router=None,
    ):
        if isinstance(models, str) or not models:
            raise ConfigError(f"models must be a non-empty list of model ids, got {models!r}")
        self.prompts = prompt_frame(prompts)
        self.models = list(models)
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
        if ROUTED in self.models and router is None:
            from workbench.routing import Router

            router = Router(device=device)
        self.router = router

    def run(self, progress: Callable[[int, int], None] | None = None) -> pd.DataFrame:
        """Generate what is missing from the store, then return this evaluation's rows (``results()``)."""
        from workbench.generation import generate, save_image
        from workbench.models import load

        settings = _settings_key(self.config)
        done = self.store.done()
        todo = {
            model_id: [
                (prompt, missing)
                for prompt in self.prompts.itertuples()
                if (missing := [s for s in self.seeds if (model_id, prompt.prompt_id, s, settings) not in done])
            ]
            for model_id in self.models
        }
        total = len(self.models) * len(self.prompts) * len(self.seeds)
        finished = total - sum(len(seeds) for work in todo.values() for _, seeds in work)
        warmed: set[str] = set()
        for choice, work in todo.items():
            for prompt, seeds in work:
                # 1. Load (cached); a model's first use makes an untimed warm-up image (one-off costs).
                model_id, config, context = self._plan(choice, prompt.prompt)
                pipe = load(model_id, device=self.device)
                if self.warmup and model_id not in warmed:
                    generate(pipe, prompt.prompt, config.replace(batch_size=1), seeds=0)
                    warmed.add(model_id)
                # 2. Generate this prompt's missing seeds; a failure becomes rows that say so.
                try:
                    records = generate(pipe, prompt.prompt, config, seeds, model_id=model_id, context=context)
                except WorkbenchError:
                    raise
                except Exception as error:  # keep the study going; the row records what happened
                    self.store.append([self._error_row(choice, prompt, s, settings, error) for s in seeds])
                    finished += len(seeds)
                    continue
                # 3. Score, save, store.
                scores = (
                    self.scorer.score([r.image for r in records], [r.prompt for r in records]) if self.scorer else None
                )
                rows = []
                for i, record in enumerate(records):
                    path = save_image(record, self.output_dir / "images")
                    rows.append(self._row(choice, record, prompt, settings, path, scores, i))
                self.store.append(rows)
                finished += len(rows)
                if progress is not None:
                    progress(finished, total)
        return self.results()

    def _plan(self, choice: str, prompt: str) -> tuple[str, GenerationConfig, dict[str, Any]]:
        """The model id, config and recorded context for one prompt of one model choice."""
        if choice != ROUTED:
            return choice, self.config, {}
        spec, decision = self.router.plan(prompt)
        return spec.model_id, spec.config.replace(batch_size=self.config.batch_size), decision.to_context()

    def results(self) -> pd.DataFrame:
        """The stored rows of this evaluation (its models, prompts, seeds and settings), in stored order."""
        frame = self.store.frame()
        if frame.empty:
            return frame
        mine = (
            frame["model_id"].isin(self.models)
            & frame["prompt_id"].isin(self.prompts["prompt_id"])
            & frame["seed"].isin(self.seeds)
            & (frame["settings"] == _settings_key(self.config))
        )
        return frame[mine].reset_index(drop=True)

    def _row(self, choice: str, record, prompt, settings: str, path: Path, scores, i: int) -> dict[str, Any]:
        row = {
            "run_id": self.run_id,
            "model_id": choice,
            **({"routed_model_id": record.model_id} if choice == ROUTED else {}),
            "prompt": record.prompt,
            "prompt_id": prompt.prompt_id,
            "category": prompt.category,
            "seed": record.seed,
            "settings": settings,
            **{k: v for k, v in record.to_row().items() if k not in {"model_id", "prompt", "seed"}},
            "clip_score": scores.scores[i] if scores else None,
            "clip_model": scores.clip_model if scores else None,
            "clip_truncated": scores.truncated[i] if scores else None,
            "image_path": str(path.relative_to(self.output_dir)),
        }
        return row

    def _error_row(self, choice: str, prompt, seed: int, settings: str, error: Exception) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "model_id": choice,
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
