"""What produced a metric's values, recorded with each run so that runs are compared only like for like.

Per metric: its name and version, the checkpoint (its id, and the hash of its files: ``workbench.weights``),
the preprocessing, the prompt set (its name and a hash of its prompts), the images per prompt, and for a
per-set metric its reference set. ``differences`` says what differs between two runs' records.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

import pandas as pd

from workbench.metrics.registry import METRICS, MetricOptions
from workbench.weights import checkpoint_hash

__all__ = ["PAIRED_IGNORES", "differences", "metric_provenance", "prompts_hash"]

# What a paired per-image comparison may differ in: it pairs the images both runs have, prompt by prompt.
PAIRED_IGNORES = ("prompt_set", "prompts_hash", "prompts", "images_per_prompt")


def prompts_hash(prompts: pd.DataFrame) -> str:
    """A hash of the prompts (ids and texts, in order)."""
    pairs = list(zip(prompts["prompt_id"].astype(str), prompts["prompt"].astype(str), strict=True))
    return hashlib.sha256(json.dumps(pairs).encode()).hexdigest()[:16]


def _checkpoint(spec: str) -> tuple[str, str | None]:
    """A weights option's checkpoint id and the hash of its files (``inception:<file>`` hashes the file)."""
    path = spec.removeprefix("inception:") if spec.startswith("inception:") else spec
    return spec, checkpoint_hash(path) if spec != "inception" else None


def metric_provenance(
    names: Sequence[str], options: MetricOptions | None, prompts: pd.DataFrame, *, images_per_prompt: int
) -> dict[str, dict[str, Any]]:
    """Per metric of ``names``: what produced its values on ``prompts`` (a prompt frame; ``attrs["prompt_set"]``
    names its set, as ``load_prompts`` records it)."""
    options = options or MetricOptions()
    shared = {
        "prompt_set": prompts.attrs.get("prompt_set"),
        "prompts": len(prompts),
        "prompts_hash": prompts_hash(prompts),
        "images_per_prompt": images_per_prompt,
    }
    records = {}
    for name in names:
        entry = METRICS[name]
        record = {"metric": name, "version": entry.version, "preprocessing": entry.preprocessing}
        if entry.weights is not None:
            record["checkpoint"], record["weights"] = _checkpoint(getattr(options, entry.weights))
            if entry.weights == "preference_model" and options.preference_processor:
                record["processor"] = options.preference_processor
            if entry.weights == "geneval_detector" and options.geneval_detector != "toyworld":
                record["colour_checkpoint"], record["colour_weights"] = _checkpoint(options.geneval_clip)
        if entry.kind == "set":
            record["reference"] = options.reference_images or "the toy world's renders of the same prompts and seeds"
        records[name] = {**record, **shared}
    return records


def differences(a: dict[str, Any], b: dict[str, Any], *, ignore: Sequence[str] = ()) -> list[str]:
    """What differs between two records of one metric, in words ("version: 1 vs 2"). A checkpoint is known by
    its files' hash: the same weights under another id are the same checkpoint (the id is compared only where
    a hash is missing)."""
    keys = [k for k in dict.fromkeys([*a, *b]) if k not in ignore and k != "metric"]
    for checkpoint, digest in (("checkpoint", "weights"), ("colour_checkpoint", "colour_weights")):
        if a.get(digest) and b.get(digest):
            keys.remove(checkpoint)
    return [f"{key}: {a.get(key)!r} vs {b.get(key)!r}" for key in keys if a.get(key) != b.get(key)]
