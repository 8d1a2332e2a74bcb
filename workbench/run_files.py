"""What a study run leaves in its folder, versioned: results.parquet, summary.json, comparisons.json and
manifest.json.

``SCHEMA_VERSION`` is carried by every row (``schema_version``), by summary.json and by the manifest. Runs
written before versions existed (version 1: rows without the column, summary.json a bare list, a manifest
without ``schema_version``) are migrated when read, so ``compare``, the run index and ``--resume`` keep
working on them: everything that opens a run reads it through ``read_results``, ``read_summary``,
``read_comparisons`` and ``read_manifest``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from workbench.errors import ConfigError
from workbench.system_load import LOAD_COLUMNS

__all__ = [
    "ADDED_COLUMNS",
    "COMPARISON_COLUMNS",
    "SCHEMA_VERSION",
    "read_comparisons",
    "read_manifest",
    "read_results",
    "read_summary",
    "save_study_results",
]

# 2: rows with batch and machine-load columns; summary.json an object with "rows", whose cost is usd_per_image
# (version 1's cost_per_image, read as usd_per_image) with the workbench.costs columns beside it
# 3: rows with a column per per-image metric (workbench.metrics); summary rows with <metric>_mean, _ci_low and
# _ci_high per per-image metric (versions 1 and 2's clip_mean, clip_ci_low and clip_ci_high are read as
# clip_score_mean, ...) and <metric>, _ci_low, _ci_high per per-set metric; summary.json's "metrics" says what
# each metric is
SCHEMA_VERSION = 3

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
}

# The columns of comparisons.json (one row per compared group and metric).
COMPARISON_COLUMNS = [
    "metric", "model_id", "reference", "mean_diff", "ci_low", "ci_high", "p_value", "p_holm",
    "win_rate", "n_prompts", "min_detectable", "prompts_needed",
]  # fmt: skip


def save_study_results(
    results: pd.DataFrame,
    summary: pd.DataFrame,
    output_dir: str | Path,
    *,
    comparisons: pd.DataFrame | None = None,
    **extra: Any,
) -> None:
    """What a study notebook leaves for its manifest and the run index: results.parquet, summary.json
    (``{"schema_version", "rows": one per model or arm, **extra}``) and, given, comparisons.json."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    # Rows keep the version they were made with (a resumed version-1 run's old rows stay 1).
    version = results["schema_version"].fillna(1) if "schema_version" in results else SCHEMA_VERSION
    results.assign(schema_version=version).to_parquet(output_dir / "results.parquet", index=False)
    document = {"schema_version": SCHEMA_VERSION, "rows": _records(summary), **extra}
    (output_dir / "summary.json").write_text(json.dumps(document, indent=2, default=str, allow_nan=False))
    if comparisons is not None:
        (output_dir / "comparisons.json").write_text(
            json.dumps(_records(comparisons), indent=2, default=str, allow_nan=False)
        )


def read_summary(path: str | Path) -> dict[str, Any]:
    """summary.json (a run folder or the file) in the current form: a version-1 list becomes ``{"rows": ...}``."""
    data = json.loads(_file(path, "summary.json").read_text())
    if isinstance(data, list):
        data = {"schema_version": 1, "rows": _version_1_rows(data)}
    if data.get("schema_version", 1) < 3:
        data["rows"] = _version_2_rows(data["rows"])
    return data


def read_results(path: str | Path) -> pd.DataFrame:
    """results.parquet (a run folder or the file) in the current form: rows without ``schema_version`` are
    version 1, and the columns later versions added are there (None or NaN where a row predates them)."""
    file = _file(path, "results.parquet")
    results = pd.read_parquet(file)
    version = results["schema_version"] if "schema_version" in results else pd.Series(1, index=results.index)
    results["schema_version"] = version.fillna(1).astype(int)
    for added in ADDED_COLUMNS.values():
        for column, missing in added.items():
            if column not in results:
                results[column] = missing
    return results


def read_comparisons(path: str | Path) -> pd.DataFrame:
    """comparisons.json (a run folder or the file) as a frame; an empty one with ``COMPARISON_COLUMNS`` when
    the run wrote none."""
    path = Path(path)
    file = path / "comparisons.json" if path.is_dir() else path
    if not file.is_file():
        return pd.DataFrame(columns=COMPARISON_COLUMNS)
    return pd.DataFrame(json.loads(file.read_text()))


def read_manifest(path: str | Path) -> dict[str, Any]:
    """manifest.json (a run folder or the file) in the current form: without ``schema_version`` it is
    version 1, and its ``summary`` is always the list of summary rows."""
    manifest = json.loads(_file(path, "manifest.json").read_text())
    manifest.setdefault("schema_version", 1)
    if isinstance(manifest.get("summary"), dict):
        manifest["summary"] = manifest["summary"].get("rows", [])
    elif manifest["schema_version"] == 1 and manifest.get("summary"):
        manifest["summary"] = _version_1_rows(manifest["summary"])
    if manifest["schema_version"] < 3 and manifest.get("summary"):
        manifest["summary"] = _version_2_rows(manifest["summary"])
    return manifest


def _version_1_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Version-1 summary rows with version 2's names added: cost_per_image is usd_per_image."""
    return [{"usd_per_image": row["cost_per_image"], **row} if "cost_per_image" in row else row for row in rows]


def _version_2_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Summary rows before version 3 with its names added: clip_mean is clip_score_mean (and its CI)."""
    renamed = {"clip_mean": "clip_score_mean", "clip_ci_low": "clip_score_ci_low", "clip_ci_high": "clip_score_ci_high"}
    return [{**row, **{new: row[old] for old, new in renamed.items() if old in row}} for row in rows]


def _file(path: str | Path, name: str) -> Path:
    """``name`` in the run folder ``path``, or ``path`` itself; refused, naming it, when it is not there."""
    path = Path(path)
    file = path / name if path.is_dir() else path
    if not file.is_file():
        raise ConfigError(f"{path} has no {name}: not a study run folder, or the run stored nothing yet", "run")
    return file


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as JSON-ready dicts; NaN becomes null (JSON has no NaN)."""
    return json.loads(frame.to_json(orient="records"))
