"""A finished study run, logged to MLflow: ``workbench run ... --mlflow [URI]`` calls ``log_study_run``.

From the run folder it logs, into the experiment named after the study, one MLflow run named by the study's
run id:

- parameters: the study's parameters (``output_dir`` aside: it is the run folder, a tag), non-scalars as JSON,
  values cut to MLflow's length limit;
- metrics: every number of every summary row, as ``<label>/<key>`` (the row's label as the run index shows it:
  the study's headline), names cleaned to the characters MLflow allows; and the run's ``images`` and ``seconds``;
- tags: study, workbench_run_id (MLflow's run id is its own), status, git_commit, workbench_version, device and
  run_folder, where known;
- artifacts: report.html, summary.json, comparisons.json, manifest.json, results.parquet and provenance.json,
  those present.

The MLflow run ends FINISHED for a study run that succeeded, FAILED for one that failed, KILLED for one that
never finished. Without a tracking URI, MLflow's own default applies: ``MLFLOW_TRACKING_URI``, else (MLflow 3.7
on) ``sqlite:///mlflow.db`` in the working folder, its artifacts under ``./mlruns``. Logging needs the ``mlflow``
extra.
"""

from __future__ import annotations

import json
import re
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from workbench.errors import ConfigError
from workbench.run_folder import read_manifest, read_summary
from workbench.run_index import run_headline

__all__ = ["ARTIFACTS", "log_study_run"]

ARTIFACTS = ["report.html", "summary.json", "comparisons.json", "manifest.json", "results.parquet", "provenance.json"]

_STATUS = {"ok": "FINISHED", "failed": "FAILED"}  # anything else ("running": the run died) is KILLED
_NAME_LIMIT, _PARAM_LIMIT, _TAG_LIMIT = 250, 6000, 8000  # MLflow's limits on names, parameter and tag values


def log_study_run(run_folder: str | Path, tracking_uri: str | None = None) -> str:
    """Log the study run in ``run_folder`` to MLflow at ``tracking_uri`` (default: MLflow's) and return the
    MLflow run id (see the module docstring)."""
    try:
        from mlflow import MlflowClient
        from mlflow.entities import Metric, Param, RunTag
        from mlflow.exceptions import MlflowException
    except ImportError as error:
        raise ConfigError(
            f"logging to MLflow needs the mlflow extra: pip install 't2i-workbench[mlflow]' ({error})", field="mlflow"
        ) from error
    folder = Path(run_folder)
    manifest = read_manifest(folder)
    if not manifest.get("study") or not manifest.get("run_id"):
        raise ConfigError(f"{folder / 'manifest.json'} names no study or run_id: not a study run's manifest", "run")
    rows = read_summary(folder)["rows"] if (folder / "summary.json").is_file() else []
    started = _milliseconds(manifest.get("started"))
    ended = _milliseconds(manifest.get("finished")) or int(time.time() * 1000)
    metrics = [Metric(key, value, ended, 0) for key, value in _metrics(manifest, rows).items()]
    params = [Param(key, value) for key, value in _params(manifest.get("parameters") or {}).items()]
    tags = [RunTag(key, value) for key, value in _tags(manifest, folder).items()]
    try:
        client = MlflowClient(tracking_uri)
        study = str(manifest["study"])
        experiment = client.get_experiment_by_name(study)
        experiment_id = experiment.experiment_id if experiment else client.create_experiment(study)
        run = client.create_run(experiment_id, start_time=started, run_name=str(manifest["run_id"]))
        run_id = run.info.run_id
        for i in range(0, max(len(params), len(tags)), 50):  # at most 100 parameters and tags a batch
            client.log_batch(run_id, params=params[i : i + 50], tags=tags[i : i + 50])
        for i in range(0, len(metrics), 1000):
            client.log_batch(run_id, metrics=metrics[i : i + 1000])
        for name in ARTIFACTS:
            if (folder / name).is_file():
                client.log_artifact(run_id, str(folder / name))
        client.set_terminated(run_id, _STATUS.get(manifest.get("status"), "KILLED"), end_time=ended)
    except MlflowException as error:
        where = tracking_uri or "MLflow's default tracking URI"
        message = f"MLflow at {where} did not take the run in {folder}: {error.message}"
        raise ConfigError(message, field="tracking_uri") from error
    return run_id


def _name(text: str) -> str:
    """``text`` as an MLflow parameter or metric name: other characters become ``_``, and ``/`` only
    separates non-empty parts (MLflow refuses names that a path would change)."""
    text = re.sub(r"[^\w.\- /]", "_", text)
    parts = ["__" if part == ".." else part for part in text.split("/") if part not in ("", ".")]
    return "/".join(parts)[:_NAME_LIMIT] or "_"


def _metrics(manifest: dict[str, Any], rows: list[dict[str, Any]]) -> dict[str, float]:
    metrics = {key: float(manifest[key]) for key in ("images", "seconds") if _is_number(manifest.get(key))}
    used: set[str] = set()
    names = run_headline(manifest).get("label", [])  # the columns that name a summary row, as the index shows
    for index, row in enumerate(rows):
        label = " ".join(str(row[key]) for key in names if row.get(key) is not None) or f"row{index}"
        prefix = _name(label)
        if prefix in used:  # two rows whose names clean to the same one stay apart
            prefix = f"{prefix}_{index}"
        used.add(prefix)
        metrics |= {_name(f"{prefix}/{key}"): float(value) for key, value in row.items() if _is_number(value)}
    return metrics


def _params(parameters: dict[str, Any]) -> dict[str, str]:
    return {
        _name(str(key)): _cut(value if isinstance(value, str) else json.dumps(value, default=str), _PARAM_LIMIT)
        for key, value in parameters.items()
        if key != "output_dir"
    }


def _tags(manifest: dict[str, Any], folder: Path) -> dict[str, str]:
    found = {
        "study": manifest.get("study"),
        "workbench_run_id": manifest.get("run_id"),  # MLflow's run id is its own; the run name is this one
        "status": manifest.get("status"),
        "git_commit": manifest.get("git_commit"),
        "workbench_version": (manifest.get("versions") or {}).get("workbench"),
        "device": manifest.get("device"),
        "run_folder": str(folder.resolve()),
    }
    return {key: _cut(str(value), _TAG_LIMIT) for key, value in found.items() if value is not None}


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value == value  # NaN aside


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _milliseconds(stamp: str | None) -> int | None:
    """A manifest time (``%Y-%m-%dT%H:%M:%S%z``) in milliseconds since the epoch."""
    try:
        return int(datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S%z").timestamp() * 1000) if stamp else None
    except ValueError:
        return None
