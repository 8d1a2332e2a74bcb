"""A run's folder: the only code that writes a run's files, and their readers.

::

    <run>/results.jsonl     every row as it was made, one fsync'd append per batch: the run's record, so a run
                            killed half-way opens and resumes (an image's latest row wins)
    <run>/images/           the PNGs, each with its full settings (written before their rows)
    <run>/results.parquet   the latest row per image, exported when the run finishes
    <run>/summary.json      per model or arm (``{"schema_version", "rows", ...}``)
    <run>/comparisons.json  paired comparisons, one row per compared group and metric
    <run>/provenance.json   what produced each metric's values (``workbench.metrics.provenance``)
    <run>/batch_sizes.json  the probes behind ``batch_size="auto"`` (``workbench.batch_probe``), by probe key
    <run>/manifest.json     the study run: parameters, environment, outcome (``workbench.studies``)

Its rows are ``workbench.row.Row``s. ``SCHEMA_VERSION`` is carried by every row, by summary.json and by the
manifest. Runs written by earlier versions are migrated when read (rows by ``migrate_rows``, summaries here),
so ``compare``, the run index and ``--resume`` keep working on them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from workbench.batch_probe import BatchProbe
from workbench.deprecation import renamed
from workbench.errors import ConfigError
from workbench.generation import save_image
from workbench.records import GenerationRecord
from workbench.row import (
    ROW_KEY,
    SCHEMA_VERSION,
    Row,
    is_error,
    migrate_frame,
    migrate_rows,
)

__all__ = [
    "COMPARISON_COLUMNS",
    "IMAGES",
    "ResultStore",
    "RunFolder",
    "json_records",
    "read_comparisons",
    "read_manifest",
    "read_results",
    "read_summary",
    "save_study_results",
]

IMAGES = "images"  # the run folder's PNGs
# The columns of comparisons.json (one row per compared group and metric).
COMPARISON_COLUMNS = [
    "metric", "model_id", "reference", "mean_diff", "ci_low", "ci_high", "p_value", "p_holm",
    "win_rate", "n_prompts", "n_differing", "min_detectable", "prompts_needed",
]  # fmt: skip


class RunFolder:
    """The folder of one run (see the module docstring): the only code that writes its files.

    ``run_id``: the run id of the folder's manifest (a study run: rows, manifest and index share it), else the
    one given, else the folder's name.
    Rows are appended by one writer (the process that owns the run), each batch's images first, so a stored
    row always has its PNG."""

    RESULTS, EXPORT, SUMMARY, COMPARISONS = "results.jsonl", "results.parquet", "summary.json", "comparisons.json"
    PROVENANCE, MANIFEST, BATCH_SIZES = "provenance.json", "manifest.json", "batch_sizes.json"

    def __init__(self, path: str | Path, run_id: str | None = None):
        self.path = Path(path)
        manifest = self.path / self.MANIFEST
        recorded = read_manifest(manifest).get("run_id") if manifest.is_file() else None
        self.run_id = str(recorded or run_id or self.path.resolve().name)

    # --- writing ------------------------------------------------------------------------------------

    def add(self, rows: Sequence[Row], records: Sequence[GenerationRecord | None] = ()) -> list[Row]:
        """Save each row's image (``records[i]``, None for a failed image) as a PNG under images/, then append
        the rows, their ``image_path`` set, in one fsync'd write. Returns the rows as stored."""
        stored = []
        for index, row in enumerate(rows):
            record = records[index] if index < len(records) else None
            if record is not None:
                saved = save_image(record, self.path / IMAGES)
                row = dataclasses.replace(row, image_path=str(saved.relative_to(self.path)))
            stored.append(dataclasses.replace(row, run_id=self.run_id))
        self._append([row.to_dict() for row in stored])
        return stored

    def _append(self, rows: list[dict[str, Any]]) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.path / self.RESULTS, "a+b") as fh:
            fh.seek(0, os.SEEK_END)
            if fh.tell():
                fh.seek(-1, os.SEEK_END)
                if fh.read(1) != b"\n":
                    fh.write(b"\n")  # close off a line cut short by a crash
            fh.write(b"".join(json.dumps(row, default=str).encode() + b"\n" for row in rows))
            fh.flush()
            os.fsync(fh.fileno())

    def finish(self, summary: pd.DataFrame | None = None, *, comparisons: pd.DataFrame | None = None,
               results: pd.DataFrame | None = None, **extra: Any) -> None:  # fmt: skip
        """Export the rows to results.parquet (``results``, default the latest row per image) and, given a
        ``summary``, write summary.json (``{"schema_version", "rows": one per model or arm, **extra}``) and,
        given, comparisons.json."""
        results = self.results() if results is None else results
        if len(results) or not (self.path / self.EXPORT).is_file():
            version = results["schema_version"].fillna(1) if "schema_version" in results else SCHEMA_VERSION
            self._write(self.EXPORT, lambda file: results.assign(schema_version=version).to_parquet(file, index=False))
        if summary is not None:
            document = {"schema_version": SCHEMA_VERSION, "rows": json_records(summary), **extra}
            self.write_json(self.SUMMARY, document)
        if comparisons is not None:
            self.write_json(self.COMPARISONS, json_records(comparisons))

    def export_if_stale(self) -> None:
        """Export results.parquet unless one was written after the last row was stored (a study's own
        export, with columns of its own, stands)."""
        record, export = self.path / self.RESULTS, self.path / self.EXPORT
        if record.is_file() and (not export.is_file() or export.stat().st_mtime_ns < record.stat().st_mtime_ns):
            self.finish()

    def write_provenance(self, provenance: Mapping[str, Mapping[str, Any]]) -> None:
        """provenance.json: per metric, what produced its values (merged into what the folder has)."""
        self.write_json(self.PROVENANCE, {**self.provenance(), **provenance})

    def write_batch_probes(self, probes: Sequence[BatchProbe]) -> None:
        """batch_sizes.json: the probes that chose this run's "auto" batch sizes (merged into what it has)."""
        self.write_json(self.BATCH_SIZES, {**self._batch_sizes(), **{p.key: p.to_dict() for p in probes}})

    def write_text(self, name: str, text: str) -> None:
        """A file of the study's own (verdict.txt) in the folder."""
        self._write(name, lambda file: file.write_text(text))

    def write_manifest(self, manifest: Mapping[str, Any]) -> None:
        self.write_json(self.MANIFEST, {"schema_version": SCHEMA_VERSION, **manifest, "run_id": self.run_id})

    def write_json(self, name: str, data: Any) -> None:
        """A JSON file of the study's own (validity.json) in the folder, written whole or not at all."""
        self._write(name, lambda file: file.write_text(json.dumps(data, indent=2, default=str, allow_nan=False)))

    def _write(self, name: str, write) -> None:
        """Write a file whole or not at all (a crash leaves the previous version)."""
        self.path.mkdir(parents=True, exist_ok=True)
        partial = self.path / f".{name}.partial"
        write(partial)
        partial.replace(self.path / name)

    # --- reading ------------------------------------------------------------------------------------

    def rows(self) -> list[dict[str, Any]]:
        """Every stored row, in the order written, migrated; a line cut short by a crash is dropped."""
        file = self.path / self.RESULTS
        if not file.is_file():
            return []
        rows = []
        for line in file.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a partial last line from an interrupted write
        return migrate_rows(rows)

    def latest(self) -> list[dict[str, Any]]:
        """The latest row per image (``ROW_KEY``): a failed image made again, or rescored, counts once."""
        return list({tuple(row.get(k) for k in ROW_KEY): row for row in self.rows()}.values())

    def done(self) -> set[tuple]:
        """The keys (``ROW_KEY``) of the images already made (an image that failed is made again on a rerun)."""
        return {tuple(row[k] for k in ROW_KEY) for row in self.latest() if not is_error(row.get("status"))}

    def results(self) -> pd.DataFrame:
        """The run's rows: the latest per image from results.jsonl (so a killed run opens), else the exported
        results.parquet (a run made before the JSON-lines record was kept)."""
        if (self.path / self.EXPORT).is_file() and not (self.path / self.RESULTS).is_file():
            return read_results(self.path)
        return pd.DataFrame(self.latest())

    def provenance(self) -> dict[str, dict[str, Any]]:
        """provenance.json's metrics (empty for a run made before provenance was recorded)."""
        file = self.path / self.PROVENANCE
        return json.loads(file.read_text()) if file.is_file() else {}

    def batch_probes(self) -> dict[str, BatchProbe]:
        """The probes that chose this run's "auto" batch sizes, by probe key (a resumed run reuses them)."""
        return {key: BatchProbe.from_dict(probe) for key, probe in self._batch_sizes().items()}

    def _batch_sizes(self) -> dict[str, Any]:
        file = self.path / self.BATCH_SIZES
        return json.loads(file.read_text()) if file.is_file() else {}

    def manifest(self) -> dict[str, Any]:
        return read_manifest(self.path)

    def is_run(self) -> bool:
        """Whether the folder holds a run's rows or manifest."""
        return any((self.path / name).is_file() for name in (self.RESULTS, self.EXPORT, self.MANIFEST))

    def manifest_facts(self) -> dict[str, Any]:
        """What the manifest and the run index show of the rows and summary: images, model ids, seeds, the CLIP
        checkpoint, the summary rows, and the probes behind "auto" batch sizes (sizes tried, time per image at
        each, the choice)."""
        facts: dict[str, Any] = {}
        if probes := self._batch_sizes():
            facts["batch_sizes"] = list(probes.values())
        if (self.path / self.SUMMARY).is_file():
            facts["summary"] = read_summary(self.path)["rows"]
        if (self.path / self.RESULTS).is_file() or (self.path / self.EXPORT).is_file():
            results = self.results()
            facts["images"] = len(results)
            for key, column, cast in (("model_ids", "model_id", str), ("seeds", "seed", int),
                                      ("clip_model", "clip_model", str)):  # fmt: skip
                if column in results:
                    facts[key] = sorted(cast(v) for v in results[column].dropna().unique())
        return facts


class ResultStore:
    """Deprecated: a ``RunFolder`` owns a run's rows (``RunFolder.rows``, ``add``, ``done``, ``results``)."""

    def __init__(self, path: str | Path):
        renamed("workbench.ResultStore", "workbench.RunFolder")
        self.path = Path(path)
        self._folder = RunFolder(self.path.parent, run_id="run")
        self._folder.RESULTS = self.path.name

    def rows(self) -> list[dict[str, Any]]:
        return self._folder.rows()

    def done(self) -> set[tuple]:
        """The (model_id, prompt_id, seed, settings hash) of the images made (without a run's variant)."""
        return {(model, prompt_id, seed, settings) for model, _, prompt_id, seed, settings in self._folder.done()}

    def append(self, rows: Sequence[dict[str, Any]]) -> None:
        self._folder._append(list(rows))

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows())


def save_study_results(
    results: pd.DataFrame,
    summary: pd.DataFrame,
    output_dir: str | Path,
    *,
    comparisons: pd.DataFrame | None = None,
    **extra: Any,
) -> None:
    """What a study leaves for its manifest and the run index (``RunFolder.finish``): results.parquet of
    ``results``, summary.json (``{"schema_version", "rows": one per model or arm, **extra}``) and, given,
    comparisons.json."""
    RunFolder(output_dir).finish(summary, comparisons=comparisons, results=results, **extra)


def new_run_id(parameters: Mapping[str, Any]) -> str:
    """A run id: when it started, and a hash of its parameters."""
    digest = hashlib.sha256(json.dumps(parameters, sort_keys=True, default=str).encode()).hexdigest()[:6]
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{digest}"


def read_summary(path: str | Path) -> dict[str, Any]:
    """summary.json (a run folder or the file) in the current form: a version-1 list becomes ``{"rows": ...}``."""
    data = json.loads(_file(path, RunFolder.SUMMARY).read_text())
    if isinstance(data, list):
        data = {"schema_version": 1, "rows": _version_1_rows(data)}
    if data.get("schema_version", 1) < 3:
        data["rows"] = _version_2_rows(data["rows"])
    return data


def read_results(path: str | Path) -> pd.DataFrame:
    """results.parquet (a run folder or the file) in the current form (``migrate_rows``)."""
    return migrate_frame(pd.read_parquet(_file(path, RunFolder.EXPORT)))


def read_comparisons(path: str | Path) -> pd.DataFrame:
    """comparisons.json (a run folder or the file) as a frame; an empty one with ``COMPARISON_COLUMNS`` when
    the run wrote none."""
    path = Path(path)
    file = path / RunFolder.COMPARISONS if path.is_dir() else path
    if not file.is_file():
        return pd.DataFrame(columns=COMPARISON_COLUMNS)
    return pd.DataFrame(json.loads(file.read_text()))


def read_manifest(path: str | Path) -> dict[str, Any]:
    """manifest.json (a run folder or the file) in the current form: without ``schema_version`` it is
    version 1, and its ``summary`` is always the list of summary rows."""
    manifest = json.loads(_file(path, RunFolder.MANIFEST).read_text())
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


def json_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as JSON-ready dicts; NaN becomes null (JSON has no NaN)."""
    return json.loads(frame.to_json(orient="records"))
