"""Two runs side by side: did B change anything against A (``workbench compare RUN_A RUN_B``)?

``compare_runs(a, b)`` does, in order::

    1. find both runs (a folder, or study/run_id under the output root) and read them (``RunFolder``)
    2. check that each metric was produced alike in both (its provenance: version, checkpoint weights,
       preprocessing); refuse where not, unless ``allow_mismatch``
    3. pair their images per model on the (prompt_id, seed) units both runs have
    4. per model and metric: the difference B - A per prompt (seeds averaged), its 95% CI, the Wilcoxon p,
       Holm's adjustment across every model and metric (``stats.paired_statistics``, ``stats.holm``)
    5. per model: latency as the ratio B / A of the median time per image, with its CI (lower is better)
    6. per model: how much each shared image changed (mean absolute pixel difference, 0-255)

The ``Comparison`` it returns prints a one-screen summary, writes a self-contained HTML report and checks
regression thresholds (``Check``: "clip_score < -1" is a regression when the whole CI lies below -1).
"""

from __future__ import annotations

import base64
import html
import io
import math
import operator
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from workbench.config import GenerationConfig
from workbench.errors import ConfigError
from workbench.latency import batch_latencies
from workbench.metrics import METRICS
from workbench.metrics.provenance import PAIRED_IGNORES, differences
from workbench.run_folder import RunFolder, read_manifest
from workbench.stats import describe_interval, format_p, holm, paired_statistics, ratio_of_medians

__all__ = ["LATENCY", "Check", "ComparedRun", "Comparison", "compare_runs", "find_run"]

LATENCY = "latency_ratio"  # the latency row's metric: median s/image of B over A
LOWER_IS_BETTER = {"peak_mem_mb", LATENCY, *(name for name, entry in METRICS.items() if not entry.higher_is_better)}
UNIT = ["model_id", "prompt_id", "seed"]
# Columns that make an image what it is: where two runs differ in them, the report says so.
SETTING_COLUMNS = [*GenerationConfig.__dataclass_fields__, "scheduler_class", "dtype", "device", "acceleration"]
COLUMNS = [
    "model_id", "metric", "mean_diff", "ratio", "ci_low", "ci_high", "p_value", "p_holm", "win_rate",
    "n_prompts", "n_units", "change",
]  # fmt: skip
_OPERATORS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}
_THUMBNAIL = 256  # largest side of an image embedded in the report


@dataclass(frozen=True)
class Check:
    """A regression threshold, ``METRIC OP VALUE``: for ``<``/``<=`` a regression when the CI's upper end is
    beyond the value, for ``>``/``>=`` when its lower end is (the whole interval lies past the threshold).
    The CI is of B - A, or of the ratio B / A for ``latency_ratio``."""

    metric: str
    op: str
    value: float

    @classmethod
    def parse(cls, text: str) -> Check:
        match = re.fullmatch(r"\s*([A-Za-z_]\w*)\s*(<=|>=|<|>)\s*(\S+)\s*", text)
        value = _float(match.group(3)) if match else None
        if value is None or not math.isfinite(value):
            raise ConfigError(
                f"--fail-if {text!r} is not METRIC OP VALUE with OP one of {list(_OPERATORS)} and a number "
                f"(e.g. 'clip_score < -1', '{LATENCY} > 1.2')",
                "fail_if",
            )
        return cls(match.group(1), match.group(2), value)

    def fails(self, row: dict[str, Any]) -> bool:
        """Whether the comparison row's whole interval lies beyond the threshold (never for a missing CI)."""
        end = row["ci_high"] if self.op.startswith("<") else row["ci_low"]
        return bool(pd.notna(end) and _OPERATORS[self.op](end, self.value))

    def __str__(self) -> str:
        return f"{self.metric} {self.op} {self.value:g}"


@dataclass(frozen=True)
class ComparedRun:
    """One side of a comparison: its folder, a name (``study/run_id`` where it has a manifest) and manifest."""

    folder: Path
    name: str
    manifest: dict[str, Any]

    @property
    def id(self) -> str:
        """The folder's name, made safe for a file name."""
        return re.sub(r"[^A-Za-z0-9._-]+", "-", self.folder.name).strip("-.") or "run"


@dataclass(frozen=True)
class Comparison:
    """Run B against run A. ``rows``: one per model and metric (``COLUMNS``; mean_diff is B - A, ratio is
    B / A for latency_ratio; change is "better", "worse" or ""); ``images``: one per shared unit with an
    image in both runs (model_id, prompt_id, seed, prompt, pixel_diff, image_a, image_b); ``notes``: what a
    reader must know (models in one run only, settings that differ, failed images). A change is
    "better" or "worse" where p_holm < alpha and the CI excludes 0, for latency_ratio where its CI excludes 1."""

    a: ComparedRun
    b: ComparedRun
    rows: pd.DataFrame
    images: pd.DataFrame
    metrics: tuple[str, ...]  # the per-image columns compared (latency_ratio aside)
    notes: tuple[str, ...] = ()
    top: int = 8  # images per model in the report

    def regressions(self, checks: list[Check] | tuple[Check, ...] = ()) -> list[str]:
        """One line per model and check whose whole CI lies beyond the threshold; an unknown metric is refused."""
        known = [*self.metrics, LATENCY]
        for check in checks:
            if check.metric not in known:
                raise ConfigError(
                    f"--fail-if names the metric {check.metric!r}, which this comparison does not have; "
                    f"metrics: {known}",
                    "fail_if",
                )
        found = []
        for row in self.rows.to_dict("records"):
            for check in (c for c in checks if c.metric == row["metric"] and c.fails(row)):
                what = "B / A" if row["metric"] == LATENCY else "B - A"
                found.append(
                    f"{row['model_id']}: {check} ({what} = {_estimate(row)}, 95% CI [{_num(row['ci_low'])}, "
                    f"{_num(row['ci_high'])}])"
                )
        return found

    def summary(self, checks: list[Check] | tuple[Check, ...] = ()) -> str:
        """The one-screen terminal view: the two runs, the notes, and a table (model, metric, B - A or B / A,
        CI, p_holm, prompts, and a flag: better, worse, REGRESSION)."""
        lines = [f"A  {_describe(self.a)}", f"B  {_describe(self.b)}", *(f"note: {n}" for n in self.notes)]
        table = [["model", "metric", "B-A or B/A", "95% CI", "p_holm", "prompts", ""]]
        for row in self.rows.to_dict("records"):
            flag = " ".join(filter(None, [row["change"], "REGRESSION" if _failing(row, checks) else ""]))
            ci = f"[{_num(row['ci_low'])}, {_num(row['ci_high'])}]"
            p = "-" if pd.isna(row["p_holm"]) else format_p(row["p_holm"])
            table.append([row["model_id"], row["metric"], _estimate(row), ci, p, str(row["n_prompts"]), flag])
        widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
        for r in table:
            cells = [
                c.ljust(w) if i < 2 or i == 6 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))
            ]
            lines.append("  ".join(cells).rstrip())
        changed = self.images[self.images["pixel_diff"] > 0]
        most = f"; the most: mean |A-B| {changed['pixel_diff'].max():.2f} of 255" if len(changed) else ""
        lines.append(f"images changed: {len(changed)} of {len(self.images)} shared{most}")
        return "\n".join(lines)

    def write_html(self, path: str | Path, checks: list[Check] | tuple[Check, ...] = ()) -> Path:
        """A self-contained report (images embedded as data URIs): the runs, notes, the table of differences
        and, per model, the ``top`` images that changed most, A | B | the difference."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(_report(self, checks))
        return path


def find_run(name: str | Path, output_root: str | Path = "outputs") -> ComparedRun:
    """The run ``name`` means: a run folder, or ``study/run_id`` under ``output_root``; refused with the runs
    there when it is neither."""
    root = Path(output_root)
    for folder in (Path(name), root / str(name)):
        if (folder / "results.parquet").is_file() or (folder / "manifest.json").is_file():
            manifest = read_manifest(folder) if (folder / "manifest.json").is_file() else {}
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
) -> Comparison:
    """Run ``b`` against run ``a`` (see the module docstring). ``metrics``: the per-image columns to compare
    (default: clip_score, every other ``*_score`` column and peak_mem_mb); ``top``: images per model in the
    report; ``seed``: of the bootstrap intervals. A metric produced differently in the two runs (another
    version, checkpoint or preprocessing: ``metrics.provenance``) is refused, naming what differs, unless
    ``allow_mismatch``: then it is compared and the notes say so."""
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
    return Comparison(run_a, run_b, table, images, tuple(metrics), tuple(notes), top)


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
    rows = []
    for model, metric, diff, n_units in pairs:
        lower = metric in LOWER_IS_BETTER
        statistics = paired_statistics(diff, seed=seed, alpha=alpha, comparisons=len(pairs), lower_is_better=lower)
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


# --- words and pages --------------------------------------------------------------------------------


def _float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _num(x: float) -> str:
    return "n/a" if pd.isna(x) else f"{x:.3f}" if abs(x) < 10 else f"{x:.2f}"


def _estimate(row: dict[str, Any]) -> str:
    if row["metric"] == LATENCY:
        return f"{_num(row['ratio'])}x"
    return "n/a" if pd.isna(row["mean_diff"]) else f"{'+' if row['mean_diff'] >= 0 else ''}{_num(row['mean_diff'])}"


def _failing(row: dict[str, Any], checks) -> bool:
    return any(c.metric == row["metric"] and c.fails(row) for c in checks)


def _describe(run: ComparedRun) -> str:
    m = run.manifest
    facts = [f"started {m['started']}" if m.get("started") else "", m.get("status", ""), m.get("device", "")]
    facts += [f"commit {m['git_commit'][:10]}" if m.get("git_commit") else ""]
    return f"{run.name}" + (f" ({', '.join(filter(None, facts))})" if any(facts) else "")


def _data_uri(image: Image.Image) -> str:
    image = image.copy()
    image.thumbnail((_THUMBNAIL, _THUMBNAIL))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _difference_image(path_a: Path, path_b: Path) -> Image.Image:
    """|A - B| in grey, scaled so the largest difference is white."""
    diff = np.abs(_pixels(path_a).astype(np.int16) - _pixels(path_b).astype(np.int16)).max(axis=2)
    scaled = diff * (255.0 / diff.max()) if diff.max() > 0 else diff
    return Image.fromarray(scaled.astype(np.uint8), mode="L")


_STYLE = (
    "body{font-family:sans-serif;max-width:1200px}td,th{padding:4px 8px;border-bottom:1px solid #ddd;"
    "text-align:left;vertical-align:top}.num{text-align:right}.worse,.REGRESSION{color:#b00}.better{color:#070}"
    ".unit{display:inline-block;margin:0 24px 16px 0;font-size:85%;max-width:340px}"
    "img{width:96px;image-rendering:pixelated;border:1px solid #ccc;margin-right:4px}"
)
_HEADERS = ["model", "metric", "B - A (latency: B / A)", "95% CI", "p", "p (Holm)", "B better on", "prompts",
            "images", ""]  # fmt: skip


def _report(comparison: Comparison, checks) -> str:
    """The HTML page: the two runs, the notes, the table of differences and the images that changed most."""
    e = html.escape
    a, b = comparison.a, comparison.b
    notes = "".join(f"<li>{e(n)}</li>" for n in comparison.notes)
    return (
        f"<!doctype html><meta charset='utf-8'><title>{e(a.id)} vs {e(b.id)}</title><style>{_STYLE}</style>"
        f"<h1>Run B against run A</h1><table><tr><th>A</th><td>{e(_describe(a))}</td></tr>"
        f"<tr><th>B</th><td>{e(_describe(b))}</td></tr></table>"
        + (f"<h2>Notes</h2><ul>{notes}</ul>" if notes else "")
        + "<h2>Differences</h2><p>Per model, over the (prompt, seed) units both runs made: seeds are averaged "
        "within a prompt and prompts are the paired units (the mean difference with a "
        f"{e(describe_interval())}, Wilcoxon signed-rank p, Holm across models and metrics). Latency: the median "
        "time per image of B over A, with a bootstrap CI "
        f"(lower is better). Checks: {e(', '.join(map(str, checks))) or 'none'}.</p>"
        f"<table><tr>{''.join(f'<th>{e(h)}</th>' for h in _HEADERS)}</tr>{_table_rows(comparison, checks)}</table>"
        "<h2>The images that changed most</h2><p>Mean absolute pixel difference (0-255); A, B and |A - B| "
        f"(brightest: the largest difference); the top {comparison.top} per model.</p>{_image_sections(comparison)}"
    )


def _table_rows(comparison: Comparison, checks) -> str:
    rows = []
    for row in comparison.rows.to_dict("records"):
        flags = " ".join(filter(None, [row["change"], "REGRESSION" if _failing(row, checks) else ""]))
        numbers = [
            _estimate(row),
            f"[{_num(row['ci_low'])}, {_num(row['ci_high'])}]",
            "-" if pd.isna(row["p_value"]) else html.escape(format_p(row["p_value"])),
            "-" if pd.isna(row["p_holm"]) else html.escape(format_p(row["p_holm"])),
            "-" if pd.isna(row["win_rate"]) else f"{row['win_rate']:.0%}",
            str(row["n_prompts"]),
            str(row["n_units"]),
        ]
        rows.append(
            f"<tr><td>{html.escape(row['model_id'])}</td><td>{html.escape(row['metric'])}</td>"
            + "".join(f"<td class='num'>{n}</td>" for n in numbers)
            + f"<td class='{flags}'>{flags}</td></tr>"
        )
    return "".join(rows)


def _image_sections(comparison: Comparison) -> str:
    e = html.escape
    images = comparison.images
    if images.empty:
        return "<p>No shared images to compare.</p>"
    parts = []
    for model, group in images.groupby("model_id", sort=True):
        changed = group[group["pixel_diff"] > 0]
        parts.append(
            f"<h3>{e(model)}</h3><p>{len(changed)} of {len(group)} shared images changed; mean difference "
            f"{group['pixel_diff'].mean():.2f}</p>"
        )
        for unit in changed.nlargest(comparison.top, "pixel_diff").to_dict("records"):
            with Image.open(unit["image_a"]) as image_a, Image.open(unit["image_b"]) as image_b:
                shown = [("A", image_a.convert("RGB")), ("B", image_b.convert("RGB"))]
            shown.append(("|A - B|", _difference_image(unit["image_a"], unit["image_b"])))
            caption = f"{unit['prompt_id']}, seed {unit['seed']}: {unit['pixel_diff']:.2f}"
            pictures = "".join(
                f"<img src='{_data_uri(image)}' alt='{label}' title='{label}'>" for label, image in shown
            )
            parts.append(
                f"<div class='unit'><div>{pictures}</div><b>{e(caption)}</b> {e(str(unit['prompt'] or ''))}</div>"
            )
    return "".join(parts)
