"""Latency statistics of a study's rows: per batch, per model with a CI, as a ratio to a reference, in words.

A batch's images share its time, so the batch is the unit of timing: ``batch_latencies`` gives one per-image
latency per batch, ``latency_summary`` each model's median over its batches with a distribution-free CI and
its ratio to the reference model with a CI (pairing the batches of each interleaving round), and a note
saying when the timing was noisy (a wide spread, other processes' load changing) or the machine busy.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from workbench.stats import median_ci, paired_ratio, ratio_of_medians

__all__ = ["BUSY", "LOAD_CHANGE", "NOISY_SPREAD", "batch_latencies", "latency_summary"]

NOISY_SPREAD = 0.25  # per-batch latency IQR over its median above this: noisy
LOAD_CHANGE = 0.25  # other processes' CPU share moving by more than this during a model's batches: noisy
BUSY = 0.25  # other processes' median CPU share above this: the machine was busy


def batch_latencies(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per pipeline call (a batch, or each part of a batch split after running out of memory): its
    per-image latency, round, size, the size asked for, how often it was split, and the other processes' CPU
    share (rows made before batches were recorded count one call per row)."""
    columns = ("batch_id", "batch_round", "batch_started", "batch_asked", "batch_splits", "cpu_busy_other")
    rows = rows.assign(**{c: rows.get(c, np.nan) for c in columns})
    rows["batch_id"] = rows["batch_id"].fillna(pd.Series(-1 - np.arange(len(rows)), index=rows.index))
    calls = rows.groupby(["batch_id", "batch_started"], dropna=False).agg(
        latency_s=("latency_s", "first"),
        batch_round=("batch_round", "first"),
        cpu_busy_other=("cpu_busy_other", "first"),
        images=("latency_s", "size"),
        asked=("batch_asked", "first"),
        splits=("batch_splits", "first"),
    )
    return calls.reset_index(level="batch_started", drop=True)


def _sizes_note(batches: pd.DataFrame) -> str:
    """The batch sizes a model ran at, in words, where some of its batches ran in smaller calls after the
    device ran out of memory."""
    if not (batches["splits"].fillna(0) > 0).any():
        return ""
    sizes = ", ".join(str(int(n)) for n in sorted(batches["images"].unique()))
    return (f"{int((batches['splits'].fillna(0) > 0).sum())} of its calls were smaller than asked, to fit in "
            f"memory: it ran at batch sizes {sizes} (asked for {int(batches['asked'].max())})")  # fmt: skip


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
        if note := _sizes_note(own):
            row["timing_note"] += f"; {note}"
        out.append(row)
    largest = {model: own["images"].max() for model, own in batches.items()}  # the size each model ran at
    if len(set(largest.values())) > 1:  # a per-image latency depends on the batch size
        sizes = ", ".join(f"{model} {int(size)}" for model, size in largest.items())
        for row in out:
            row["timing_note"] += f"; the models ran at different batch sizes ({sizes}), which their latencies reflect"
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
