"""Measuring acceleration toggles: speed against fidelity, interleaved in one run.

``benchmark_acceleration`` times configs against the baseline on the evaluation engine (every round runs
them all, their batches interleaved, so drift hits each alike), scores each image's fidelity against the
baseline image of the same prompt and seed, and
each image on any per-image metric (CLIP score, composition accuracy, ...), paired with its baseline image.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from workbench.config import AUTO_BATCH_SIZE, AccelerationConfig, GenerationConfig
from workbench.engine import BATCH_WARMUP_STEPS, BatchResult, BatchRunner, RunnerSpec, Unit, execute, plan_batches
from workbench.errors import ConfigError
from workbench.generation import as_backend
from workbench.mag_cache import mag_ratios_for
from workbench.metrics import MetricOptions, fidelity, image_scorers, metric_bounds, set_metric_names
from workbench.metrics.provenance import metric_provenance
from workbench.metrics.registry import scorer_options
from workbench.models import denoiser, denoiser_slot, separate_guidance_calls
from workbench.plan import Plan
from workbench.row import settings_hash
from workbench.run_folder import RunFolder
from workbench.stats import difference_ci

__all__ = [
    "TRANSFORMER_METHODS",
    "UNET_METHODS",
    "AccelerationBenchmark",
    "benchmark_acceleration",
    "standard_configs",
]


# Every method at common settings, by the denoiser it applies to (T-GATE's gates are set from the steps).
UNET_METHODS = [
    AccelerationConfig(deepcache_interval=2),
    AccelerationConfig(deepcache_interval=3),
    AccelerationConfig(deepcache_interval=5),
    AccelerationConfig(tome_ratio=0.3),
    AccelerationConfig(tome_ratio=0.5),
    AccelerationConfig(tome_ratio=0.5, deepcache_interval=3),
    AccelerationConfig(channels_last=True),
    AccelerationConfig(attention_backend="eager"),
    AccelerationConfig(dtype="bfloat16"),
    AccelerationConfig(compile=True),
]
TRANSFORMER_METHODS = [
    AccelerationConfig(first_block_cache=0.05),
    AccelerationConfig(first_block_cache=0.1),
    AccelerationConfig(first_block_cache=0.2),
    AccelerationConfig(first_block_cache=0.3),
    AccelerationConfig(first_block_cache=0.5),
    AccelerationConfig(taylorseer_interval=2),
    AccelerationConfig(taylorseer_interval=3),
    AccelerationConfig(faster_cache_interval=2),
    AccelerationConfig(pab_interval=2),
    AccelerationConfig(pab_interval=3),
    AccelerationConfig(mag_cache=0.06),
    AccelerationConfig(mag_cache=0.12),
    AccelerationConfig(mag_cache=0.24),
    AccelerationConfig(dtype="bfloat16"),
    AccelerationConfig(compile=True),
]


def standard_configs(
    pipe, config: GenerationConfig | None = None, *, compile: bool = True, fewer_steps: bool = True
) -> list[AccelerationConfig | dict]:
    """Every acceleration method that applies to ``pipe`` under ``config`` at common settings (``compile=False``
    leaves torch.compile out): UNet methods with T-GATE gated at a quarter and half of the steps; on a
    transformer with diffusers' CacheMixin its caches (FasterCache and pyramid attention broadcast only where
    no true-CFG call of its own runs the negative prompt; MagCache where the model's magnitude ratios are
    known); then, with ``fewer_steps``, half and 70% of the steps
    without toggles, on the same axes."""
    from diffusers.models.cache_utils import CacheMixin

    config = config or GenerationConfig()
    steps = config.steps
    if denoiser_slot(pipe) == "unet":
        gates = sorted({g for g in (steps // 4, steps // 2) if 1 <= g < steps})
        methods = [*UNET_METHODS, *(AccelerationConfig(tgate_step=g) for g in gates)]
    else:
        true_cfg = separate_guidance_calls(pipe) and config.guidance > 1
        refused = {"faster_cache_interval", "pab_interval"} if true_cfg else set()
        if mag_ratios_for(pipe) is None:
            refused.add("mag_cache")
        caches = isinstance(denoiser(pipe), CacheMixin)
        methods = [
            c for c in TRANSFORMER_METHODS
            if c.transformer_cache is None or (caches and c.transformer_cache not in refused)
        ]  # fmt: skip
    fewer = sorted({max(1, steps // 2), max(1, round(steps * 0.7))} - {steps}) if fewer_steps else []
    return [c for c in methods if compile or not c.compile] + [{"steps": n} for n in fewer]


class _DenoiserTimer:
    """Wall time spent inside the denoiser's (UNet's or transformer's) forward calls (synchronised on CUDA)."""

    def __init__(self, pipe):
        self.seconds, self._start, self._pipe = 0.0, None, pipe

    def _sync(self) -> None:
        if self._pipe.device.type == "cuda":
            torch.cuda.synchronize(self._pipe.device)

    def __enter__(self):
        def before(*_):
            self._sync()
            self._start = time.perf_counter()

        def after(*_):
            self._sync()
            self.seconds += time.perf_counter() - self._start

        net = denoiser(self._pipe)
        self._hooks = [net.register_forward_pre_hook(before), net.register_forward_hook(after)]
        return self

    def __exit__(self, *exc) -> None:
        for hook in self._hooks:
            hook.remove()


def _mean_psnr(values: pd.Series) -> float:
    """The mean PSNR over the images that differ from their baseline (an identical image's PSNR is inf);
    inf where every image is identical, NaN only where there are no values."""
    values = values.dropna()
    finite = values[np.isfinite(values)]
    if len(finite):
        return float(finite.mean())
    return float("inf") if len(values) else float("nan")


@dataclass
class AccelerationBenchmark:
    """Per-config figures (``table``), per-image rows (``rows``) and the images, keyed (label, prompt, seed)."""

    table: pd.DataFrame
    rows: pd.DataFrame
    images: dict = field(default_factory=dict, repr=False)


def variant_label(item: AccelerationConfig | dict) -> str:
    """A config's name in the benchmark's table: the toggles' label, or the settings a dict changes."""
    if isinstance(item, AccelerationConfig):
        return item.label()
    if isinstance(item, dict):
        return ", ".join(f"{k}={v}" for k, v in item.items())
    raise ConfigError(f"configs holds AccelerationConfigs and dicts of GenerationConfig changes, got {item!r}")


def _variants(
    configs: Sequence[AccelerationConfig | dict], config: GenerationConfig
) -> dict[str, tuple[AccelerationConfig, GenerationConfig]]:
    """Label -> (toggles, settings): the baseline first, then each config; a dict is a change of the
    generation settings without toggles (fewer steps, another scheduler), shown on the same axes."""
    variants = {"baseline": (AccelerationConfig(), config)}
    for item in configs:
        label = variant_label(item)
        toggles = isinstance(item, AccelerationConfig)
        variant = (item, config) if toggles else (AccelerationConfig(), config.replace(**item))
        if label in variants and variants[label] != variant:
            raise ConfigError(f"two configs are both labelled {label!r}")
        variants[label] = variant
    return variants


def benchmark_acceleration(
    pipe,
    prompts: Sequence[str],
    seeds: Sequence[int],
    configs: Sequence[AccelerationConfig | dict],
    *,
    config: GenerationConfig | None = None,
    scorer=None,
    rounds: int = 3,
    metrics: Sequence[str] = (),
    metric_options: MetricOptions | None = None,
    output_dir: str | Path | None = None,
) -> AccelerationBenchmark:
    """Time each config against the baseline on the evaluation engine (every round runs each config's batches,
    interleaved, after an untimed warm-up per config and batch shape), and compare its images with the
    baseline's of the same prompt and seed. A config is an ``AccelerationConfig`` or a dict of
    ``GenerationConfig`` changes (``{"steps": 10}``: fewer steps on the same axes).

    Per config: denoiser (UNet or transformer) and total seconds per image (median over rounds), speed-ups
    against the baseline of the same rounds, PSNR/SSIM/CLIP image cosine against the baseline images
    (PSNR: the mean over the images that differ; inf, "identical", where none does), whether the images
    changed at all, the warm-up's extra time over a warm call of the same shape (torch.compile's compile time
    where it is on), and per metric (the CLIP score with ``scorer``; any per-image metric of the registry in
    ``metrics``, e.g. "composition_all") its mean, its change against the baseline and that change's 95%
    interval over the images (each paired with the baseline image of its prompt and seed;
    ``stats.difference_ci``: by the metric's range where the registry knows it, so that a toggle that
    changed no image's score still gets an interval, and none without a range). Given an
    ``output_dir``, the first round's images and rows go into that run folder.
    """
    per_set = set_metric_names(metrics)
    if per_set:
        raise ConfigError(f"metrics must be per-image metrics here (each image against its baseline), got {per_set}")
    config = config or GenerationConfig()
    if config.batch_size == AUTO_BATCH_SIZE:
        raise ConfigError("the acceleration benchmark times every variant at one batch size: give batch_size a "
                          "number, not 'auto'", "batch_size")  # fmt: skip
    variants = _variants(configs, config)
    labels = list(variants)
    prompts, seeds = list(prompts), list(seeds)
    model_id = as_backend(pipe).workbench_model_id
    prompt_ids = [f"p{index:03d}" for index in range(len(prompts))]
    units = [
        Unit(model_id, prompt_id, prompt, "", seed,
             Plan(model_id, settings, pipe, acceleration if acceleration.changes() else None), label)
        for label, (acceleration, settings) in variants.items()
        for prompt_id, prompt in zip(prompt_ids, prompts, strict=True)
        for seed in seeds
    ]  # fmt: skip
    scorers = image_scorers(metrics, metric_options, given=[scorer] if scorer is not None else [])
    names = [m for one in scorers for m in one.metrics if m in metrics or one is scorer]
    denoiser_s: dict[int, float] = {}

    @contextmanager
    def denoiser_clock(batch):
        with _DenoiserTimer(pipe) as clock:
            yield
        denoiser_s[batch.batch_id] = clock.seconds

    folder = RunFolder(output_dir) if output_dir is not None else None
    if folder is not None:
        given = [scorer] if scorer is not None else []
        options = scorer_options(metric_options or MetricOptions(), given)
        prompt_table = pd.DataFrame({"prompt_id": prompt_ids, "prompt": prompts})
        folder.write_provenance(metric_provenance(names, options, prompt_table, images_per_prompt=len(seeds)))
    spec = RunnerSpec(folder.run_id if folder else "acceleration", settings_hash(config))
    runner = BatchRunner(spec, scorers=scorers, timed=denoiser_clock)
    made, timings, warmups, failed, passes = {}, [], {}, [], []  # passes: the rounds of timing, so far

    def store(result: BatchResult) -> None:
        label = result.batch.units[0].variant
        if any(row.batch_splits for row in result.rows):  # variants compared at one batch size, or not at all
            raise ConfigError(f"{label} ran out of memory at batch size {config.batch_size}: the benchmark times "
                              "every variant at one size, so give a smaller batch_size", "batch_size")  # fmt: skip
        if not result.records:  # a failed batch: its rows say why
            failed.extend(row.status for row in result.rows)
            return
        timings.append((len(passes) - 1, label, len(result.rows), result.rows[0].latency_s,
                        denoiser_s[result.batch.batch_id]))  # fmt: skip
        if result.warmup_s is not None:
            warmups.setdefault(label, (result.warmup_s, result.rows[0].latency_s * len(result.rows),
                                       result.rows[0].config.steps))  # fmt: skip
        if len(passes) == 1:
            rows = folder.add(result.rows, result.records) if folder else result.rows
            made.update({(label, r.prompt, r.seed): (row, r) for row, r in zip(rows, result.records, strict=True)})

    for _ in range(rounds):
        batches = plan_batches(units, first_batch=len(timings), first_round=passes[-1] + 1 if passes else 0)
        passes.append(batches[-1].round)
        execute(batches, spec, store, runner=runner)
        runner.scorers = []  # later rounds only time: their images are the first round's again
    if failed:
        raise ConfigError(f"{len(failed)} benchmark images failed, e.g. {failed[0]}")

    rows = []
    for label in labels:
        for prompt in prompts:
            for seed in seeds:
                row, record = made[(label, prompt, seed)]
                reference = made[(labels[0], prompt, seed)][1].image
                rows.append({
                    "config": label, "prompt": prompt, "seed": seed, **fidelity(reference, record.image, scorer),
                    "identical": bool(np.array_equal(np.asarray(record.image), np.asarray(reference))),
                    **{name: row.scores.get(name) for name in names},
                })  # fmt: skip
    rows = pd.DataFrame(rows)
    for name in names:
        rows[name] = pd.to_numeric(rows[name], errors="coerce")
    images = {key: record.image for key, (_, record) in made.items()}

    per_round = pd.DataFrame(timings, columns=["round", "config", "images", "total", "denoiser"])
    per_round["total"] *= per_round["images"]
    per_round = per_round.groupby(["config", "round"])[["images", "total", "denoiser"]].sum()
    per_image = per_round[["total", "denoiser"]].div(per_round["images"], axis=0).groupby("config").median()
    base, bounds = per_image.loc[labels[0]], metric_bounds(names)
    baseline_rows = rows[rows["config"] == labels[0]].set_index(["prompt", "seed"])
    table = []
    for label, (acceleration, settings) in variants.items():
        mine = rows[rows["config"] == label]
        total, net = per_image.loc[label, "total"], per_image.loc[label, "denoiser"]
        warmup, batch_time, steps = warmups.get(label, (np.nan, np.nan, 1))
        entry = {
            "config": label,
            "total_s_per_image": total,
            "denoiser_s_per_image": net,
            "speedup_total": base["total"] / total,
            "speedup_denoiser": base["denoiser"] / net,
            "psnr": _mean_psnr(mine["psnr"]),
            "ssim": mine["ssim"].mean(),
            "clip_cosine": mine["clip_cosine"].mean() if scorer is not None else np.nan,
            "changed": not mine["identical"].all(),
            # the warm-up ran BATCH_WARMUP_STEPS of the steps: its time less a warm call's of that many steps
            "cold_extra_s": max(0.0, warmup - batch_time * min(steps, BATCH_WARMUP_STEPS) / steps),
            "steps": settings.steps,
            "scheduler": settings.scheduler,
            **acceleration.to_dict(),
        }
        for name in names:  # the metric, and its change against the baseline image by image (paired)
            paired = mine.set_index(["prompt", "seed"])[name] - baseline_rows[name]
            # the baseline against its own images: no change by construction, not by a sample
            low, high = (0.0, 0.0) if label == labels[0] else difference_ci(paired.dropna(), bounds.get(name))
            entry |= {name: mine[name].mean(), f"{name}_delta": paired.mean(),
                      f"{name}_delta_ci_low": low, f"{name}_delta_ci_high": high}  # fmt: skip
        table.append(entry)
    return AccelerationBenchmark(pd.DataFrame(table), rows, images)
