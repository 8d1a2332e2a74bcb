"""What a study run leaves in its folder, versioned: results.parquet, summary.json and comparisons.json.

``SCHEMA_VERSION`` is carried by every row (``schema_version``), by summary.json and by the manifest. Runs
written before versions existed (version 1: rows without the column, summary.json a bare list) are
migrated when read, so ``compare``, the run index and ``--resume`` keep working on them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = ["SCHEMA_VERSION", "read_summary", "save_study_results"]

SCHEMA_VERSION = 2  # 2: rows with batch and machine-load columns; summary.json an object with "rows"


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
    results.assign(schema_version=SCHEMA_VERSION).to_parquet(output_dir / "results.parquet", index=False)
    document = {"schema_version": SCHEMA_VERSION, "rows": _records(summary), **extra}
    (output_dir / "summary.json").write_text(json.dumps(document, indent=2, default=str, allow_nan=False))
    if comparisons is not None:
        (output_dir / "comparisons.json").write_text(
            json.dumps(_records(comparisons), indent=2, default=str, allow_nan=False)
        )


def read_summary(path: str | Path) -> dict[str, Any]:
    """summary.json (a run folder or the file) in the current form: a version-1 list becomes ``{"rows": ...}``."""
    path = Path(path)
    data = json.loads((path / "summary.json" if path.is_dir() else path).read_text())
    if isinstance(data, list):
        return {"schema_version": 1, "rows": data}
    return data


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as JSON-ready dicts; NaN becomes null (JSON has no NaN)."""
    return json.loads(frame.to_json(orient="records"))
