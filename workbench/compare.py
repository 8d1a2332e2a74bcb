"""Two runs side by side: did B change anything against A (``workbench compare RUN_A RUN_B``)?

``compare_runs(a, b)`` does, in order::

    1. find both runs (a folder, or study/run_id under the output root) and read them (``RunFolder``)
    2. check that each metric was produced alike in both (its provenance: version, checkpoint weights,
       preprocessing); refuse where not, unless ``allow_mismatch``
    3. pair their images per model on the (prompt_id, seed) units both runs have
    4. per model and metric: the difference B - A per prompt (seeds averaged), its 95% CI (by the metric's
       range where the registry knows it: ``stats.bounded_ci``), the Wilcoxon p, Holm's adjustment across every
       model and metric (``stats.paired_statistics``, ``stats.holm``)
    5. per model: latency as the ratio B / A of the median time per image, with its CI (lower is better)
    6. per model: how much each shared image changed (mean absolute pixel difference, 0-255)
    7. given a rating task on both runs (``ratings``): per model, people's preference for B's images over A's
       (``ratings.preference``: the share of votes B won, its CI over resampled prompts, p, Holm across models)

The ``Comparison`` it returns (``workbench.compare_report``) prints a one-screen summary, writes a
self-contained HTML report and checks regression thresholds (``Check``: "clip_score < -1" is a regression when
the whole CI lies below -1).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from workbench.compare_report import COLUMNS, LATENCY, Check, ComparedRun, Comparison
from workbench.config import GenerationConfig
from workbench.errors import ConfigError
from workbench.latency import batch_latencies
from workbench.metrics import METRICS, metric_bounds
from workbench.metrics.provenance import PAIRED_IGNORES, differences
from workbench.ratings.preference import Preference, people_preferences
from workbench.ratings.task import find_task
from workbench.run_folder import RunFolder
from workbench.stats import holm, paired_statistics, ratio_of_medians

__all__ = ["LATENCY", "Check", "ComparedRun", "Comparison", "compare_runs", "find_run"]

LOWER_IS_BETTER = {"peak_mem_mb", LATENCY, *(name for name, entry in METRICS.items() if not entry.higher_is_better)}
UNIT = ["model_id", "variant", "prompt_id", "seed"]  # an image both runs made (variant: an A/B arm, a toggle)
# Columns that make an image what it is: where two runs differ in them, the report says so.
SETTING_COLUMNS = [*GenerationConfig.__dataclass_fields__, "scheduler_class", "dtype", "device", "acceleration"]


def find_run(name: str | Path, output_root: str | Path = "outputs") -> ComparedRun:
    """The run ``name`` means: a run folder, or ``study/run_id`` under ``output_root``; refused with the runs
    there when it is neither."""
    root = Path(output_root)
    for folder in (Path(name), root / str(name)):
        run = RunFolder(folder)
        if run.is_run():
            manifest = run.manifest() if (folder / RunFolder.MANIFEST).is_file() else {}
            study, run_id = manifest.get("study"), manifest.get("run_id")
            return ComparedRun(folder, f"{study}/{run_id}" if study and run_id else str(folder), manifest)
    runs = sorted(f"{p.parent.parent.name}/{p.parent.name}" for p in root.glob("*/*/manifest.json"))
    shown = runs[-30:] if len(runs) > 30 else runs
    more = f" (the last 30 of {len(runs)})" if len(runs) > 30 else ""
    raise ConfigError(
        f"no run {str(name)!r}: not a run folder, and not study/run_id under {root}; runs there{more}: "
        f"{shown or '(none)'}",
        "run",
    )


def compare_runs(
    a: str | Path,
    b: str | Path,
    *,
    output_root: str | Path = "outputs",
    metrics: list[str] | tuple[str, ...] | None = None,
    top: int = 8,
    alpha: float = 0.05,
    seed: int = 0,
    allow_mismatch: bool = False,
    ratings: str | Path | None = None,
) -> Comparison:
    """Run ``b`` against run ``a`` (see the module docstring). ``metrics``: the per-image columns to compare
    (default: clip_score, every other ``*_score`` column and peak_mem_mb); ``top``: images per model in the
    report; ``seed``: of the bootstrap intervals. A metric produced differently in the two runs (another
    version, checkpoint or preprocessing: ``metrics.provenance``) is refused, naming what differs, unless
    ``allow_mismatch``: then it is compared and the notes say so. ``ratings``: a pairwise rating task made from
    both runs (its folder, or its id under ``output_root/ratings``), whose votes give people's verdict."""
    if not isinstance(top, int) or top < 0:
        raise ConfigError(f"top must be a whole number >= 0, got {top!r}", "top")
    # 1. The runs and their rows.
    run_a, run_b = find_run(a, output_root), find_run(b, output_root)
    results_a, results_b = _results(run_a), _results(run_b)
    metrics = _metrics(results_a, results_b, metrics)
    # 2. Like for like.
    notes = _provenance_notes(run_a, run_b, metrics, allow_mismatch)
    # 3. The units both have, per model.
    notes += _model_notes(results_a, results_b)
    units = _unique(results_a, "A", notes).merge(_unique(results_b, "B", notes), on=UNIT, suffixes=("_a", "_b"))
    if units.empty:
        raise ConfigError(
            f"no shared units: runs {run_a.name} and {run_b.name} have no (model, prompt_id, seed) in common; "
            f"A has models {sorted(results_a['model_id'].unique())} and {results_a['prompt_id'].nunique()} "
            f"prompts, B has models {sorted(results_b['model_id'].unique())} and "
            f"{results_b['prompt_id'].nunique()} prompts",
            "run",
        )
    notes += _unit_notes(units)
    # 4-5. Paired differences per model and metric, Holm across them all; latency as a ratio.
    rows = _differences(units, metrics, alpha=alpha, seed=seed) + _latency(units, seed=seed)
    table = pd.DataFrame(rows, columns=COLUMNS).sort_values("model_id", kind="stable", ignore_index=True)
    # 6. How much each image changed.
    images = _pixel_differences(units, run_a.folder, run_b.folder, notes)
    # 7. What people say, given a rating task.
    people = _people(ratings, run_a, run_b, output_root, seed) if ratings is not None else ()
    return Comparison(run_a, run_b, table, images, tuple(metrics), tuple(notes), top, people)


# --- reading ----------------------------------------------------------------------------------------


def _results(run: ComparedRun) -> pd.DataFrame:
    results = RunFolder(run.folder).results()
    missing = [c for c in UNIT if c not in results]
    if missing:
        raise ConfigError(f"run {run.name} has results without the columns {missing}; cannot pair its images", "run")
    results = results.assign(model_id=results["model_id"].astype(str), prompt_id=results["prompt_id"].astype(str))
    if "arm" in results:  # an A/B run: each arm is compared on its own
        arm = results["arm"]
        results["model_id"] = results["model_id"].where(arm.isna(), results["model_id"] + " [" + arm.astype(str) + "]")
    if "status" not in results:
        results["status"] = "ok"
    return results


def _provenance_notes(run_a: ComparedRun, run_b: ComparedRun, metrics: list[str], allow_mismatch: bool) -> list[str]:
    """Notes on how each compared metric was produced; a ``ConfigError`` naming the metrics produced differently,
    unless ``allow_mismatch``. Runs made before provenance was recorded get a note, not a refusal; the prompt
    set and images per prompt may differ (only the shared units are paired)."""
    a, b = RunFolder(run_a.folder).provenance(), RunFolder(run_b.folder).provenance()
    notes, mismatched = [], []
    for metric in (m for m in metrics if m in METRICS):
        unknown = [side for side, records in (("A", a), ("B", b)) if metric not in records]
        if unknown:
            notes.append(f"{metric}: provenance unknown in run {' and '.join(unknown)} (made before it was recorded)")
            continue
        differ = differences(a[metric], b[metric], ignore=PAIRED_IGNORES)
        if differ:
            mismatched.append(f"{metric} ({'; '.join(differ)})")
        if a[metric].get("prompts_hash") != b[metric].get("prompts_hash"):
            notes.append(
                f"{metric}: the runs used different prompt sets (A: {a[metric].get('prompt_set')}, "
                f"{a[metric].get('prompts')} prompts; B: {b[metric].get('prompt_set')}, {b[metric].get('prompts')}"
                " prompts): only the (prompt, seed) units both have are paired"
            )
    if mismatched and not allow_mismatch:
        raise ConfigError(
            f"runs {run_a.name} and {run_b.name} measured {len(mismatched)} metric(s) differently, so their values "
            f"are not comparable: {'; '.join(mismatched)}. Compare runs made alike, or pass --allow-mismatch "
            "(allow_mismatch=True) to compare anyway",
            "run",
        )
    notes += [f"compared although measured differently (--allow-mismatch): {m}" for m in mismatched]
    return notes


def _metrics(a: pd.DataFrame, b: pd.DataFrame, asked: list[str] | tuple[str, ...] | None) -> list[str]:
    """The per-image metric columns to compare: those asked for, else every registry per-image metric,
    ``*_score`` column and peak_mem_mb that both runs have values of (clip_score first)."""
    if asked is not None:
        for metric in asked:
            if metric not in a or metric not in b or metric == "latency_s":
                numeric = sorted(c for c in set(a) & set(b) if _numeric(a[c]) and c != "latency_s")
                raise ConfigError(
                    f"metric {metric!r} is not a per-image column of both runs; columns there: {numeric}", "metric"
                )
        return list(asked)
    image_metrics = {name for name, entry in METRICS.items() if entry.kind == "image"}
    names = [c for c in a if c in b and (c in image_metrics or c.endswith("_score") or c == "peak_mem_mb")]
    found = [c for c in names if _numeric(a[c]) and _numeric(b[c])]
    return sorted(found, key=lambda c: (c != "clip_score", c == "peak_mem_mb", c))


def _numeric(column: pd.Series) -> bool:
    return column.dtype != bool and pd.to_numeric(column, errors="coerce").notna().any()


def _unique(results: pd.DataFrame, label: str, notes: list[str]) -> pd.DataFrame:
    """One row per unit (the first where a run repeats one), with the notes saying so."""
    repeated = results.duplicated(UNIT)
    if repeated.any():
        notes.append(f"run {label} repeats {int(repeated.sum())} (model, prompt_id, seed) units: the first is used")
    return results[~repeated]


def _model_notes(a: pd.DataFrame, b: pd.DataFrame) -> list[str]:
    only_a = sorted(set(a["model_id"]) - set(b["model_id"]))
    only_b = sorted(set(b["model_id"]) - set(a["model_id"]))
    return [f"only in {side}: {models}" for side, models in (("A", only_a), ("B", only_b)) if models]


def _unit_notes(units: pd.DataFrame) -> list[str]:
    """Per model: settings that differ between the runs on the shared units, and images that failed."""
    notes = []
    for model, group in units.groupby("model_id", sort=True):
        if (
            "settings_hash_a" in group
            and (group["settings_hash_a"].astype(str) != group["settings_hash_b"].astype(str)).any()
        ):
            differing = (group["settings_hash_a"].astype(str) != group["settings_hash_b"].astype(str)).sum()
            changes = [
                f"{c} {_values(group[f'{c}_a'])} -> {_values(group[f'{c}_b'])}"
                for c in SETTING_COLUMNS
                if f"{c}_a" in group and not group[f"{c}_a"].astype(str).equals(group[f"{c}_b"].astype(str))
            ]
            notes.append(
                f"{model}: the settings differ on {differing} of {len(group)} shared units"
                + (f" ({'; '.join(changes)})" if changes else "")
            )
        failed = {side: int((group[f"status_{side}"] != "ok").sum()) for side in ("a", "b")}
        if any(failed.values()):
            notes.append(
                f"{model}: {failed['a']} images failed in A, {failed['b']} in B (of {len(group)} shared units): "
                "left out"
            )
    return notes


def _values(column: pd.Series) -> str:
    values = list(dict.fromkeys(column.astype(str)))
    return values[0] if len(values) == 1 else "{" + ", ".join(values[:4]) + (", ..." if len(values) > 4 else "") + "}"


# --- statistics -------------------------------------------------------------------------------------


def _differences(units: pd.DataFrame, metrics: list[str], *, alpha: float, seed: int) -> list[dict[str, Any]]:
    """Per model and metric: B - A per prompt (seeds averaged) over the units both scored; Holm across all."""
    ok = units[(units["status_a"] == "ok") & (units["status_b"] == "ok")]
    pairs = []
    for model, group in ok.groupby("model_id", sort=True):
        for metric in metrics:
            values = (
                group[UNIT]
                .assign(
                    a=pd.to_numeric(group[f"{metric}_a"], errors="coerce"),
                    b=pd.to_numeric(group[f"{metric}_b"], errors="coerce"),
                )
                .dropna(subset=["a", "b"])
            )
            if values.empty:
                continue
            per_prompt = values.groupby("prompt_id")[["a", "b"]].mean()
            pairs.append((model, metric, (per_prompt["b"] - per_prompt["a"]).to_numpy(), len(values)))
    rows, bounds = [], metric_bounds(metrics)
    for model, metric, diff, n_units in pairs:
        statistics = paired_statistics(
            diff, seed=seed, alpha=alpha, comparisons=len(pairs), lower_is_better=metric in LOWER_IS_BETTER,
            bounds=bounds.get(metric),
        )  # fmt: skip
        rows.append({"model_id": model, "metric": metric, **statistics, "ratio": math.nan, "n_units": n_units})
    for row, p_holm in zip(rows, holm([1.0 if pd.isna(r["p_value"]) else r["p_value"] for r in rows]), strict=True):
        row["p_holm"] = math.nan if pd.isna(row["p_value"]) else p_holm
        significant = p_holm < alpha and (row["ci_low"] > 0 or row["ci_high"] < 0)
        row["change"] = _direction(row["mean_diff"] > 0, row["metric"]) if significant else ""
    return rows


def _latency(units: pd.DataFrame, *, seed: int) -> list[dict[str, Any]]:
    """Per model: median latency per image of B over A, on the shared units both made, with its CI."""
    if "latency_s_a" not in units:
        return []
    rows = []
    ok = units[(units["status_a"] == "ok") & (units["status_b"] == "ok")]
    for model, group in ok.groupby("model_id", sort=True):
        a = pd.to_numeric(group["latency_s_a"], errors="coerce")
        b = pd.to_numeric(group["latency_s_b"], errors="coerce")
        keep = (a > 0) & (b > 0)
        if not keep.any():
            continue
        # A batch's images share its latency: resample batches, not images, or the interval is too narrow.
        ratio, low, high = ratio_of_medians(
            _per_batch(group[keep], a[keep], "_a"), _per_batch(group[keep], b[keep], "_b"), seed=seed
        )
        rows.append({
            "model_id": model, "metric": LATENCY, "mean_diff": math.nan, "ratio": ratio, "ci_low": low,
            "ci_high": high, "p_value": math.nan, "p_holm": math.nan, "win_rate": _win_rate(a[keep], b[keep]),
            "n_prompts": int(group.loc[keep, "prompt_id"].nunique()), "n_units": int(keep.sum()),
            "change": _direction(low > 1, LATENCY) if low > 1 or high < 1 else "",
        })  # fmt: skip
    return rows


def _per_batch(units: pd.DataFrame, latency: pd.Series, suffix: str) -> np.ndarray:
    """One latency per batch of one run's side of the shared units (``latency.batch_latencies``)."""
    columns = [c for c in ("batch_id", "batch_round") if f"{c}{suffix}" in units]
    side = units[[f"{c}{suffix}" for c in columns]].set_axis(columns, axis=1).assign(latency_s=latency)
    return batch_latencies(side)["latency_s"].to_numpy()


def _win_rate(a: pd.Series, b: pd.Series) -> float:
    """The share of images B made faster, ties counting half (as ``paired_statistics`` counts them)."""
    return float((b < a).mean() + 0.5 * (b == a).mean())


def _direction(up: bool, metric: str) -> str:
    return "worse" if up == (metric in LOWER_IS_BETTER) else "better"


# --- people -----------------------------------------------------------------------------------------


def _people(
    name: str | Path, run_a: ComparedRun, run_b: ComparedRun, output_root: str | Path, seed: int
) -> tuple[Preference, ...]:
    """People's preference for B over A per model: the votes of rating task ``name`` between a target of run A
    (``model @run``) and the same target of run B, on each question with votes, Holm across models. A task that
    does not draw on both runs is refused, naming its runs."""
    task = find_task(name, output_root)
    ids = [RunFolder(run.folder).run_id for run in (run_a, run_b)]
    runs = [run["run_id"] for run in task.manifest["runs"]]
    if not set(ids) <= set(runs):
        raise ConfigError(
            f"rating task {task.task_id!r} does not draw on both runs {ids[0]!r} and {ids[1]!r}: its runs are {runs}",
            "ratings",
        )
    targets = task.manifest["targets"]
    in_a = [t.removesuffix(f" @{ids[0]}") for t in targets if t.endswith(f" @{ids[0]}")]
    pairs = [(f"{t} @{ids[0]}", f"{t} @{ids[1]}") for t in in_a if f"{t} @{ids[1]}" in targets]
    if not pairs:
        raise ConfigError(
            f"rating task {task.task_id!r} rates no target of both runs (model @run): its targets are {targets}",
            "ratings",
        )
    return tuple(people_preferences(task, pairs, seed=seed))


# --- images -----------------------------------------------------------------------------------------


def _pixel_differences(units: pd.DataFrame, folder_a: Path, folder_b: Path, notes: list[str]) -> pd.DataFrame:
    """Mean absolute pixel difference (0-255, over pixels and RGB channels) of each shared unit's two images."""
    columns = ["model_id", "prompt_id", "seed", "prompt", "pixel_diff", "image_a", "image_b"]
    if "image_path_a" not in units:
        return pd.DataFrame(columns=columns)
    rows, skipped = [], {"missing": 0, "size": 0}
    made = units[(units["status_a"] == "ok") & (units["status_b"] == "ok")]
    for unit in made.dropna(subset=["image_path_a", "image_path_b"]).to_dict("records"):
        path_a, path_b = _inside(folder_a, unit["image_path_a"]), _inside(folder_b, unit["image_path_b"])
        if path_a is None or path_b is None:
            skipped["missing"] += 1
            continue
        image_a, image_b = _pixels(path_a), _pixels(path_b)
        if image_a.shape != image_b.shape:
            skipped["size"] += 1
            continue
        diff = float(np.abs(image_a.astype(np.int16) - image_b.astype(np.int16)).mean())
        prompt = unit.get("prompt_a", unit.get("prompt"))
        rows.append([unit["model_id"], unit["prompt_id"], unit["seed"], prompt, diff, path_a, path_b])
    if skipped["missing"]:
        notes.append(f"{skipped['missing']} shared images are missing from a run folder: not compared")
    if skipped["size"]:
        notes.append(f"{skipped['size']} shared images differ in size between the runs: not compared")
    return pd.DataFrame(rows, columns=columns)


def _inside(folder: Path, relative: str) -> Path | None:
    """The image file ``relative`` names in the run folder, or None when it is not there (or lies outside)."""
    root = folder.resolve()
    path = (root / str(relative)).resolve()
    return path if path.is_relative_to(root) and path.is_file() else None


def _pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))
