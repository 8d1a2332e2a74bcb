"""Result rows: one builder for every study's rows, and the append-only store a study resumes from.

A row is one image: who made it, the prompt, seed and settings, the measurements, the metrics and where
the PNG is; rows made by the evaluation engine add the batch they ran in and the machine's load meanwhile.
The ``ResultStore`` is a JSON-lines file written by one writer, one fsync'd append per batch, so a study
killed half-way resumes where it stopped: images already made are skipped, nothing is done twice or lost,
and an image that failed is tried again (its later row supersedes the error).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from workbench.config import GenerationConfig
from workbench.run_files import SCHEMA_VERSION
from workbench.system_load import LOAD_COLUMNS

__all__ = ["ROW_KEY", "TIMING_COLUMNS", "ResultStore", "error_row", "is_error", "result_row", "settings_key"]

ROW_KEY = ("model_id", "prompt_id", "seed", "settings")  # what makes a row unique within a run
# What differs between two runs of the same units on the same batches: when and how fast they ran, and where.
TIMING_COLUMNS = ("latency_s", "peak_mem_mb", "batch_started", "worker", *LOAD_COLUMNS)


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
    the model used as routed_model_id), the prompt, seed and settings, the measurements, the metrics
    (``scores``: the batch's metric columns, ``ImageScorer.score_columns``, this image at ``index``) and
    where the PNG is."""
    return {
        "schema_version": SCHEMA_VERSION,
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
        **{column: values[index] for column, values in (scores or {}).items()},
        "image_path": image_path,
    }


def is_error(status: Any) -> bool:
    """Whether a row's status says its image failed (``error: ...``), rather than was made (ok, nan, black)."""
    return str(status).startswith("error")


def error_row(
    *,
    target: str,
    run_id: str,
    prompt_id: str,
    prompt: str,
    category: str,
    seed: int,
    settings: str,
    config: GenerationConfig,
    error: Exception,
    **extra: Any,
) -> dict[str, Any]:
    """The row of an image that failed: its keys and settings, and the error as its status."""
    return {
        "schema_version": SCHEMA_VERSION,
        "run_id": run_id,
        "model_id": target,
        "prompt": prompt,
        "prompt_id": prompt_id,
        "category": category,
        "seed": seed,
        "settings": settings,
        **config.to_dict(),
        **extra,
        "status": f"error: {type(error).__name__}: {error}",
    }


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
        """The keys (ROW_KEY) of the images already made (an image that failed is made again on a rerun)."""
        return {tuple(row[k] for k in ROW_KEY) for row in self.rows() if not is_error(row.get("status"))}

    def append(self, rows: Sequence[dict[str, Any]]) -> None:
        with open(self.path, "a+b") as fh:
            fh.seek(0, os.SEEK_END)
            if fh.tell() and not self._ends_with_newline(fh):
                fh.write(b"\n")  # close off a line cut short by a crash
            fh.write(b"".join(json.dumps(row, default=str).encode() + b"\n" for row in rows))
            fh.flush()
            os.fsync(fh.fileno())

    @staticmethod
    def _ends_with_newline(fh) -> bool:
        fh.seek(-1, os.SEEK_END)
        return fh.read(1) == b"\n"

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows())
