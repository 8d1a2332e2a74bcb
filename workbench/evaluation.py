"""Evaluating models: prompts x models x seeds -> one tidy row per image, stored as it finishes.

``ModelEvaluator.run()`` reads like a script::

    units: for each target (a model id, a pipeline, or a Router: each prompt's route picks model and settings)
           x each prompt x each seed not yet stored -> plan.resolve once per prompt
    engine: batches across prompts, targets interleaved in rotating rounds -> run inline, on worker
           processes (one per device) or on Ray actors -> the driver saves PNGs and appends rows

Rows and PNGs go to the ``RunFolder`` (JSON lines, one fsync'd append per batch), so a study killed half-way
resumes where it stopped. ``ModelEvaluator.report()`` then gives the ``EvaluationReport``
(``workbench.evaluation_summary``): each model's latency, quality and cost, every model paired with the reference
prompt by prompt, the verdict; ``workbench.report_tables`` shows it as tables.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from PIL import Image

from workbench.config import AUTO_BATCH_SIZE, GenerationConfig
from workbench.costs import Prices
from workbench.deprecation import moved_attributes, renamed, renamed_keyword
from workbench.device_memory import release_memory
from workbench.engine import (
    BatchResult,
    BatchRunner,
    RunnerSpec,
    Unit,
    check_workers,
    execute,
    plan_batches,
    sized_units,
    worker_devices,
    worker_threads,
)
from workbench.errors import ConfigError
from workbench.evaluation_summary import EvaluationReport, evaluation_report
from workbench.generation import as_list, check_seeds
from workbench.metrics import (
    ImageScorer,
    MetricOptions,
    check_metrics,
    image_metric_names,
    image_scorers,
    set_metric_names,
)
from workbench.metrics.provenance import metric_provenance
from workbench.metrics.registry import BUILT_IN, rebuildable, scorer_options
from workbench.metrics.sets import set_metrics_by_model
from workbench.models import PipelineCache, pick_device
from workbench.plan import ROUTED, resolve, target_label
from workbench.row import ROW_KEY, Row, settings_hash
from workbench.run_folder import RunFolder

__all__ = ["ModelEvaluator", "prompt_frame"]


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
    per-set ones are measured by ``report()`` against the reference set of ``metric_options``. Default:
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
                seeds = [s for s in self.seeds if (label, "", prompt.prompt_id, s, settings) not in done]
                if seeds:
                    plan = resolve(target, prompt.prompt, self.config)
                    units += [Unit(label, prompt.prompt_id, prompt.prompt, prompt.category, s, plan) for s in seeds]
        return units

    def run(self, progress: Callable[[int, int], None] | None = None) -> pd.DataFrame:
        """Make and store what is missing (images; per-image metrics asked for after their images were made),
        export the run's rows (results.parquet), then return this evaluation's rows (``results()``)."""
        self.folder.write_provenance(self._provenance())
        units = self._sized(self.units())
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
        self.folder.write_provenance(self._provenance())  # again: a checkpoint fetched while scoring has a hash now
        self.folder.finish()
        return self.results()

    def _sized(self, units: list[Unit]) -> list[Unit]:
        """``units`` with ``batch_size="auto"`` chosen per plan (``engine.sized_units``), the probes recorded in
        the run folder; a resumed run takes the probes it recorded. Workers in processes or on Ray are probed
        for in this process, on the first worker's device (local) or this machine's (Ray: give a number where
        the actors' machines differ from it), at a worker's CPU thread count."""
        if not any(u.plan.config.batch_size == AUTO_BATCH_SIZE for u in units):
            return units
        if self.pool == "local" and self.workers == 1:
            units, probes = sized_units(units, self.runner, self.folder.batch_probes())
        else:
            devices = worker_devices(self.workers) if self.pool == "local" else [str(pick_device(self.device))]
            before = torch.get_num_threads()
            runner = BatchRunner(self.spec, device=devices[0], cache=PipelineCache(), worker="probe")
            try:
                if devices[0] == "cpu":
                    torch.set_num_threads(worker_threads(self.workers, self.pool, self.threads))
                units, probes = sized_units(units, runner, self.folder.batch_probes())
            finally:
                torch.set_num_threads(before)
                del runner
                release_memory(pick_device(devices[0]))
        if probes:
            self.folder.write_batch_probes(probes)
        return units

    def _provenance(self) -> dict[str, dict[str, Any]]:
        return metric_provenance(self.metrics, self.metric_options, self.prompts, images_per_prompt=len(self.seeds))

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
            for (model, _variant, prompt_id, seed, settings), row in latest.items()
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

    def report(
        self,
        reference: str | None = None,
        *,
        gpu_hour_cost: float | None = None,
        gpu_type: str | None = None,
        utilisation: float | None = None,
        prices: Prices | str | Path | None = None,
        alpha: float = 0.05,
    ) -> EvaluationReport:
        """``evaluation_report`` of ``results()`` on this evaluation's metrics: the per-image ones from the
        rows, the per-set ones measured now against the reference set (``set_metrics_by_model``); written into
        the run folder (summary.json, comparisons.json)."""
        results = self.results()
        if results.empty:
            raise ConfigError("nothing to report: run() has stored no results yet")
        measured = set_metrics_by_model(results, self.output_dir, self.set_metrics, self.metric_options)
        study = evaluation_report(
            results, reference, gpu_hour_cost=gpu_hour_cost, gpu_type=gpu_type, utilisation=utilisation,
            prices=prices, metrics=self.image_metrics, set_metrics=measured, metric_options=self.metric_options,
            alpha=alpha,
        )  # fmt: skip
        study.write(self.folder, results)
        return study

    def compare(self, *args: Any, **kwargs: Any) -> EvaluationReport:
        """The old name of ``report``."""
        renamed("ModelEvaluator.compare", "ModelEvaluator.report")
        return self.report(*args, **kwargs)

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


# Names that lived here before the summaries, latency statistics, pricing and tables got modules of their own.
__getattr__ = moved_attributes(
    __name__,
    {
        "BUSY": "workbench.latency.BUSY",
        "LOAD_CHANGE": "workbench.latency.LOAD_CHANGE",
        "NOISY_SPREAD": "workbench.latency.NOISY_SPREAD",
        "batch_latencies": "workbench.latency.batch_latencies",
        "latency_summary": "workbench.latency.latency_summary",
        "priced_gpu": "workbench.costs.priced_gpu",
        "ModelComparison": "workbench.evaluation_summary.EvaluationReport",
        "compare_models": "workbench.evaluation_summary.paired_comparisons",
        "image_metrics_in": "workbench.evaluation_summary.image_metrics_in",
        "metric_notes": "workbench.evaluation_summary.metric_notes",
        "metric_summary_columns": "workbench.evaluation_summary.metric_summary_columns",
        "model_comparison": "workbench.evaluation_summary.evaluation_report",
        "prompt_differences": "workbench.evaluation_summary.prompt_differences",
        "summarize": "workbench.evaluation_summary.summarize",
        "comparisons_table": "workbench.report_tables.comparisons_table",
        "cost_table": "workbench.report_tables.cost_table",
        "metrics_table": "workbench.report_tables.metrics_table",
        "summary_table": "workbench.report_tables.summary_table",
    },
)
