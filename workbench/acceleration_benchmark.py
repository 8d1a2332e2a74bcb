"""Measuring acceleration toggles: speed against fidelity, interleaved in one run.

``benchmark_acceleration`` times configs against the baseline (every round runs them all, in turn, so drift
hits each alike) and scores each image's fidelity against the baseline image of the same prompt and seed.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from workbench.config import AccelerationConfig, GenerationConfig
from workbench.generation import accelerate, generate
from workbench.metrics import fidelity

__all__ = ["AccelerationBenchmark", "benchmark_acceleration"]


class _UNetTimer:
    """Wall time spent inside the UNet's forward calls (synchronised on CUDA)."""

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

        unet = self._pipe.unet
        self._hooks = [unet.register_forward_pre_hook(before), unet.register_forward_hook(after)]
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


def benchmark_acceleration(
    pipe,
    prompts: Sequence[str],
    seeds: Sequence[int],
    configs: Sequence[AccelerationConfig],
    *,
    config: GenerationConfig | None = None,
    scorer=None,
    rounds: int = 3,
) -> AccelerationBenchmark:
    """Time each config against the baseline, interleaved (every round runs them all, in turn), and
    compare its images with the baseline's of the same prompt and seed.

    Per config: UNet and total seconds per image (median over rounds), speed-ups against the baseline of
    the same rounds, PSNR/SSIM/CLIP image cosine against the baseline images (PSNR: the mean over the
    images that differ; inf, "identical", where none does), the CLIP score change
    (with ``scorer``), whether the images changed at all, and the first (cold) call's extra time, which
    is torch.compile's compile time where it is on.
    """
    config = config or GenerationConfig()
    baseline = AccelerationConfig()
    configs = [baseline] + [c for c in configs if c != baseline]
    labels = [c.label() for c in configs]
    prompts, seeds = list(prompts), list(seeds)
    n_images = len(prompts) * len(seeds)
    timings = {label: {"total": [], "unet": []} for label in labels}
    cold, images = {}, {}
    for round_index in range(rounds):
        for label, acceleration in zip(labels, configs, strict=True):
            with accelerate(pipe, acceleration):
                start = time.perf_counter()
                generate(pipe, prompts[0], config.replace(batch_size=1), seeds[0])  # warm-up (compiles)
                warmup = time.perf_counter() - start
                with _UNetTimer(pipe) as unet_time:
                    start = time.perf_counter()
                    records = generate(pipe, prompts, config, seeds)
                    total = time.perf_counter() - start
            if round_index == 0:
                cold[label] = warmup
                images |= {(label, r.prompt, r.seed): r.image for r in records}
            timings[label]["total"].append(total / n_images)
            timings[label]["unet"].append(unet_time.seconds / n_images)

    rows = []
    for label in labels:
        for prompt in prompts:
            for seed in seeds:
                image, reference = images[(label, prompt, seed)], images[(labels[0], prompt, seed)]
                rows.append(
                    {"config": label, "prompt": prompt, "seed": seed, **fidelity(reference, image, scorer),
                     "identical": bool(np.array_equal(np.asarray(image), np.asarray(reference)))}
                )  # fmt: skip
    rows = pd.DataFrame(rows)
    if scorer is not None:
        rows["clip_score"] = scorer.score([images[(r.config, r.prompt, r.seed)] for r in rows.itertuples()],
                                          list(rows["prompt"])).scores  # fmt: skip

    base = {kind: np.median(timings[labels[0]][kind]) for kind in ("total", "unet")}
    table = []
    for label, acceleration in zip(labels, configs, strict=True):
        mine = rows[rows["config"] == label]
        total, unet = np.median(timings[label]["total"]), np.median(timings[label]["unet"])
        entry = {
            "config": label,
            "total_s_per_image": total,
            "unet_s_per_image": unet,
            "speedup_total": base["total"] / total,
            "speedup_unet": base["unet"] / unet,
            "psnr": _mean_psnr(mine["psnr"]),
            "ssim": mine["ssim"].mean(),
            "clip_cosine": mine["clip_cosine"].mean() if scorer is not None else np.nan,
            "changed": not mine["identical"].all(),
            "cold_extra_s": max(0.0, cold[label] - total),
            **acceleration.to_dict(),
        }
        if scorer is not None:
            entry["clip_score"] = mine["clip_score"].mean()
            entry["clip_delta"] = entry["clip_score"] - rows.loc[rows["config"] == labels[0], "clip_score"].mean()
        table.append(entry)
    return AccelerationBenchmark(pd.DataFrame(table), rows, images)
