"""A result row: ``Row``, the only definition of a row's columns, made from an image made or one that failed;
the schema version every row carries and the migration of rows an earlier version stored (``migrate_rows``).
``workbench.run_folder`` stores rows; ``settings_hash`` and ``ROW_KEY`` say which rows are the same image.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from workbench.config import GenerationConfig
from workbench.errors import ConfigError
from workbench.records import GenerationRecord
from workbench.system_load import LOAD_COLUMNS

__all__ = [
    "ADDED_COLUMNS",
    "BATCH_FIELDS",
    "ROW_KEY",
    "SCHEMA_VERSION",
    "TIMING_COLUMNS",
    "Row",
    "check_context",
    "is_error",
    "migrate_frame",
    "migrate_rows",
    "settings_hash",
]

# 2: rows with batch and machine-load columns; summary.json an object with "rows", whose cost is usd_per_image
# (version 1's cost_per_image, read as usd_per_image) with the workbench.costs columns beside it
# 3: rows with a column per per-image metric (workbench.metrics); summary rows with <metric>_mean, _ci_low and
# _ci_high per per-image metric (versions 1 and 2's clip_mean, clip_ci_low and clip_ci_high are read as
# clip_score_mean, ...) and <metric>, _ci_low, _ci_high per per-set metric; summary.json's "metrics" says what
# each metric is
# 4: the settings' hash column is settings_hash (version 3's settings); every row has every Row column; rows
# carry the run id of the run folder's manifest; provenance.json says what produced each metric
# 5: rows have a variant (an A/B arm, an acceleration variant; "" in a model evaluation), part of ROW_KEY
# 6: rows say the batch size asked for (batch_asked) and how many times a batch that ran out of memory was
# split (batch_splits); batch_size may be "auto" (the engine probes for one; the rows' batch_size is the size
# chosen, the settings hash that of "auto"), the default of the studies, whose images therefore differ from
# runs at their earlier fixed size by batch-mate rounding (within 2/255); energy_wh where the GPU reports it
SCHEMA_VERSION = 6

ROW_KEY = ("model_id", "variant", "prompt_id", "seed", "settings_hash")  # what makes a row unique within a run
# What differs between two runs of the same units on the same batches: which run, when and how fast they ran,
# and where.
TIMING_COLUMNS = ("run_id", "latency_s", "peak_mem_mb", "batch_started", "worker", *LOAD_COLUMNS)

# The row columns each version added, with the value older rows get: callers can rely on every column.
ADDED_COLUMNS: dict[int, dict[str, Any]] = {
    2: {
        "batch_id": float("nan"),  # the engine's batch (one pipeline call) that made this image
        "batch_round": float("nan"),  # its round of the interleaved models
        "batch_images": float("nan"),  # the images in that call
        "batch_started": float("nan"),  # when the call started (seconds since the epoch)
        "worker": None,  # the worker (device or Ray actor) that ran it
        "device_name": None,  # the hardware it ran on ("NVIDIA H200", "cpu"): what its cost is priced as
        **dict.fromkeys(LOAD_COLUMNS, float("nan")),  # the machine's load meanwhile (system_load)
    },
    5: {"variant": ""},  # the A/B arm or acceleration variant that made the image (rows of one run apart)
    6: {
        "batch_asked": float("nan"),  # the batch size asked for (the plan's, or the one the probe chose)
        "batch_splits": float("nan"),  # how many times the batch was halved after running out of memory
    },
}


def settings_hash(config: GenerationConfig) -> str:
    """A short hash of the generation settings: rows made with other settings are other rows."""
    return hashlib.sha256(config.to_json().encode()).hexdigest()[:12]


def is_error(status: Any) -> bool:
    """Whether a row's status says its image failed (``error: ...``), rather than was made (ok, nan, black)."""
    return str(status).startswith("error")


@dataclass(frozen=True)
class Row:
    """One image of a run, the only definition of a result row's columns. ``to_dict`` flattens it into the
    stored row: the fixed columns, the generation settings (``config``), what chose them (``context``: a
    route decision, an A/B arm), the machine's load (``load``) and the metric columns (``scores``)."""

    run_id: str
    model_id: str  # the target: a model id, or "routed" with the model used as routed_model_id
    prompt_id: str
    prompt: str  # as generated (an A/B arm's text, an optimized prompt)
    category: str
    seed: int
    settings_hash: str  # settings_hash() of the settings the study asked for
    config: GenerationConfig
    status: str  # ok | nan | black | error: ...
    variant: str = ""  # the A/B arm or acceleration variant that made it ("" in a model evaluation)
    routed_model_id: str | None = None
    scheduler_class: str | None = None
    device: str | None = None
    dtype: str | None = None
    acceleration: str = "baseline"  # the toggles' label
    batch: str | None = None  # JSON [[prompt, seed], ...]: the batch mates an image depends on (else None)
    latency_s: float = float("nan")  # the batch's time over its images
    peak_mem_mb: float = float("nan")
    mem_kind: str | None = None
    token_count: int | None = None
    token_limit: int | None = None
    prompt_truncated: bool | None = None
    dropped_text: str | None = None
    batch_id: int | None = None
    batch_round: int | None = None
    batch_images: int | None = None
    batch_asked: int | None = None
    batch_splits: int | None = None
    batch_started: float | None = None
    worker: str | None = None
    device_name: str | None = None
    load: Mapping[str, Any] = field(default_factory=dict)  # LOAD_COLUMNS
    context: Mapping[str, Any] = field(default_factory=dict)
    scores: Mapping[str, Any] = field(default_factory=dict)
    image_path: str | None = None  # relative to the run folder
    schema_version: int = SCHEMA_VERSION

    @classmethod
    def made(
        cls, record: GenerationRecord, *, target: str, run_id: str, prompt_id: str, category: str,
        settings_hash: str, variant: str = "", scores: Mapping[str, Any] | None = None, **columns: Any,
    ) -> Row:  # fmt: skip
        """The row of an image ``record`` made; ``columns``: the batch's and load columns, extra context."""
        fixed, context = _split(columns)
        token = record.tokens
        return cls(
            run_id=run_id, model_id=target, prompt_id=prompt_id, prompt=record.prompt, category=category,
            seed=record.seed, settings_hash=settings_hash, config=record.config, status=record.status,
            variant=variant, routed_model_id=record.model_id if record.model_id != target else None,
            scheduler_class=record.scheduler_class, device=record.device, dtype=record.dtype,
            acceleration=record.acceleration.label() if record.acceleration else "baseline",
            batch=json.dumps([list(job) for job in record.batch]) if record.batch else None,
            latency_s=record.latency_s, peak_mem_mb=record.peak_mem_mb, mem_kind=record.mem_kind,
            token_count=token.count, token_limit=token.limit, prompt_truncated=token.truncated,
            dropped_text=token.dropped_text, context={**record.context, **context}, scores=dict(scores or {}),
            **fixed,
        )  # fmt: skip

    @classmethod
    def failed(
        cls, error: BaseException, *, target: str, run_id: str, prompt_id: str, prompt: str, category: str,
        seed: int, settings_hash: str, config: GenerationConfig, variant: str = "", **columns: Any,
    ) -> Row:  # fmt: skip
        """The row of an image that failed: its keys and settings, and the error as its status."""
        fixed, context = _split(columns)
        return cls(
            run_id=run_id, model_id=target, prompt_id=prompt_id, prompt=prompt, category=category, seed=seed,
            settings_hash=settings_hash, config=config, status=f"error: {type(error).__name__}: {error}",
            variant=variant, context=context, **fixed,
        )  # fmt: skip

    def with_scores(self, scores: Mapping[str, Any]) -> Row:
        return dataclasses.replace(self, scores={**self.scores, **scores})

    def to_dict(self) -> dict[str, Any]:
        """The stored row: one flat, JSON-ready dict."""
        fixed = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in _GROUPS}
        head = {k: fixed.pop(k) for k in ("schema_version", "run_id", "model_id", "variant", "routed_model_id",
                                          "prompt", "prompt_id", "category", "seed", "settings_hash")}  # fmt: skip
        image_path = fixed.pop("image_path")
        load = {column: self.load.get(column) for column in LOAD_COLUMNS}
        return {**head, **self.config.to_dict(), **self.context, **fixed, **load, **self.scores,
                "image_path": image_path}  # fmt: skip

    @classmethod
    def from_dict(cls, row: Mapping[str, Any]) -> Row:
        """The row ``to_dict`` wrote (migrated from an earlier version: ``migrate_rows``); columns that are
        neither fixed nor settings nor load come back as ``context`` (metric columns too: ``to_dict`` writes
        both groups flat, so a round trip keeps the row)."""
        (row,) = migrate_rows([dict(row)])
        optional = {f.name for f in dataclasses.fields(cls) if f.default is None}  # NaN read back as None
        names = {f.name for f in dataclasses.fields(cls)} - _GROUPS
        settings = GenerationConfig.__dataclass_fields__
        config = GenerationConfig.from_dict({k: row[k] for k in settings if k in row})
        rest = {k: v for k, v in row.items() if k not in names and k not in settings and k not in LOAD_COLUMNS}
        return cls(
            **{k: _plain(row[k]) if k in optional else row[k] for k in names if k in row}, config=config,
            load={k: row.get(k) for k in LOAD_COLUMNS}, context=rest,
        )  # fmt: skip


_GROUPS = {"config", "load", "context", "scores"}


# The Row fields a row's maker passes as keyword columns (the batch's, the worker's); made and failed set the rest.
BATCH_FIELDS = frozenset({"batch_id", "batch_round", "batch_images", "batch_asked", "batch_splits", "batch_started",
                          "worker", "device_name"})  # fmt: skip


def check_context(columns: Mapping[str, Any]) -> None:
    """Refuse context columns (a route decision's, an A/B arm's, a unit's own) named like a column the row sets
    itself or a setting: they would overwrite it."""
    names = {f.name for f in dataclasses.fields(Row)} - BATCH_FIELDS
    taken = sorted(set(columns) & (names | set(GenerationConfig.__dataclass_fields__)))
    if taken:
        raise ConfigError(f"a row's context may not name a column the row has already, got {taken}", taken[0])


def _split(columns: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Keyword columns as (Row fields, context); load columns go into ``load``."""
    check_context(columns)
    names = {f.name for f in dataclasses.fields(Row)}
    fixed = {k: v for k, v in columns.items() if k in names}
    load = {k: v for k, v in columns.items() if k in LOAD_COLUMNS}
    if load:
        fixed["load"] = {**fixed.get("load", {}), **load}
    return fixed, {k: v for k, v in columns.items() if k not in names and k not in LOAD_COLUMNS}


def _plain(value: Any) -> Any:
    """NaN (pandas' missing value) as None."""
    return None if isinstance(value, float) and value != value else value


def migrate_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Stored rows in the current form: rows without ``schema_version`` are version 1, version 3's
    ``settings`` hash is ``settings_hash``, and the columns later versions added are there."""
    for row in rows:
        row["schema_version"] = int(_plain(row.get("schema_version")) or 1)
        if "settings_hash" not in row and isinstance(row.get("settings"), str):
            row["settings_hash"] = row.pop("settings")
        for added in ADDED_COLUMNS.values():
            for column, missing in added.items():
                row.setdefault(column, missing)
    return rows


def migrate_frame(results: pd.DataFrame) -> pd.DataFrame:
    """A table of stored rows (an exported results.parquet) in the current form, as ``migrate_rows``."""
    version = results["schema_version"] if "schema_version" in results else pd.Series(1, index=results.index)
    results["schema_version"] = version.fillna(1).astype(int)
    if "settings_hash" not in results and "settings" in results and results["settings"].map(type).eq(str).all():
        results = results.rename(columns={"settings": "settings_hash"})
    for added in ADDED_COLUMNS.values():
        for column, missing in added.items():
            if column not in results:
                results[column] = missing
    return results
