"""How far each metric can be trusted, measured on the toy world, where every prompt has a known answer.

``run_ladder`` makes a ladder of generators (rungs: model x steps x guidance) on many toy prompts; the
judge (``composition_all``: the image is right on every attribute the prompt names; none where the judge is
unsure) knows each rung's true quality. ``validity`` then asks of every metric:

``kendall_tau``     Kendall's τ-b between the metric's ranking of the rungs and the judge's (1: same order).
``auc_wrong``       per-image metrics: the chance that a right image scores above a wrong one made by the same
                    rung (so a metric gets no credit for merely telling good rungs from bad ones; 0.5 is a
                    coin); null for per-set metrics.
``prompts_needed``  for neighbouring rungs (in the judge's order) that the judge separates by at least
                    ``min_gap`` points: the fewest prompts (of a doubling grid) with which the metric orders
                    the two as the judge does in ``coverage`` of random prompt subsets drawn without
                    replacement; the median over such pairs, null when the metric never gets there with the
                    prompts available (a pair it never reaches counts as beyond them). Subsets go up to half
                    the prompts: larger ones would hardly differ from the whole set.

The judge's score of a rung is 100 x its share of images right on every attribute (seeds averaged within a
prompt; images the judge is unsure of left out, as they are from ``auc_wrong``); per-image metrics are means
over prompts, per-set metrics are computed on the rung's images against the toy world's ground truth of the
same prompts and seeds. ``composition`` and ``composition_all``
are the judge's own readings: their agreement with it is by construction, listed for completeness; their
``prompts_needed`` is the sampling noise of the ladder itself, the floor for every other metric.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy import stats as scipy_stats

from workbench.config import GenerationConfig
from workbench.errors import ConfigError
from workbench.evaluation import ModelEvaluator
from workbench.metrics import METRICS, MetricOptions, image_metric_names, set_metric_names
from workbench.metrics.provenance import metric_provenance
from workbench.metrics.sets import feature_extractor, features_of, row_features, set_metric_value
from workbench.toyworld import scenes

__all__ = [
    "JUDGE",
    "Rung",
    "ladder",
    "run_ladder",
    "rung_table",
    "save_validity",
    "stratified_auc",
    "toy_prompts",
    "validity",
    "validity_records",
]

JUDGE = "composition_all"  # the judge's per-image verdict: right on every attribute the prompt names


@dataclass(frozen=True)
class Rung:
    """One generator of the ladder: a model at a number of steps and a guidance scale."""

    model: str
    steps: int
    guidance: float

    @property
    def label(self) -> str:
        return f"{self.model.rpartition('/')[2]} {self.steps} steps g{self.guidance:g}"


def ladder(models: Sequence[str], steps: Sequence[int], guidances: Sequence[float]) -> list[Rung]:
    """Every model x steps x guidance, as rungs."""
    rungs = [Rung(m, int(s), float(g)) for m, s, g in itertools.product(models, steps, guidances)]
    if len(rungs) < 2:
        raise ConfigError(f"a ladder needs at least two rungs, got {[r.label for r in rungs]}", "steps")
    return rungs


def toy_prompts(n: int, seed: int = 0) -> pd.DataFrame:
    """``n`` distinct toy world captions (drawn without replacement, seeded) as a prompt table; the
    category is the scene's style."""
    every = scenes.all_scenes()
    if not 2 <= n <= len(every):
        raise ConfigError(f"n_prompts must be between 2 and {len(every)} (the toy world's scenes), got {n!r}")
    chosen = [every[i] for i in np.random.default_rng(seed).choice(len(every), n, replace=False)]
    return pd.DataFrame(
        {
            "prompt_id": [f"v{i:04d}" for i in range(n)],
            "prompt": [scenes.caption(s) for s in chosen],
            "category": [s.style for s in chosen],
        }
    )


def run_ladder(
    prompts: pd.DataFrame,
    rungs: Sequence[Rung],
    seeds: Sequence[int],
    output_dir: str | Path,
    *,
    metrics: Sequence[str],
    metric_options: MetricOptions | None = None,
    batch_size: int = 16,
    device: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> pd.DataFrame:
    """Every rung x prompt x seed, scored on the per-image ``metrics`` and the judge, stored (resumable) in
    ``output_dir``; the rows with a ``rung`` column. One evaluation per (steps, guidance), its models
    interleaved."""
    image_metrics = list(dict.fromkeys([*image_metric_names(metrics), "composition", JUDGE]))
    settings = dict.fromkeys((r.steps, r.guidance) for r in rungs)
    frames = []
    for index, (steps, guidance) in enumerate(settings):
        models = [r.model for r in rungs if (r.steps, r.guidance) == (steps, guidance)]
        config = GenerationConfig(steps=steps, guidance=guidance, batch_size=batch_size)
        evaluator = ModelEvaluator(
            prompts, models, seeds, config, output_dir=output_dir, metrics=image_metrics,
            metric_options=metric_options, device=device, warmup=False,
        )  # fmt: skip
        rows = evaluator.run()
        rows["rung"] = [Rung(m, steps, guidance).label for m in rows["model_id"]]
        frames.append(rows)
        if progress is not None:
            progress(index + 1, len(settings))
    per_set = metric_provenance(set_metric_names(metrics), evaluator.metric_options, evaluator.prompts,
                                images_per_prompt=len(seeds))  # fmt: skip
    evaluator.folder.write_provenance(per_set)  # measured later, on these rows' images
    rows = pd.concat(frames, ignore_index=True)
    failed = rows[rows["status"] != "ok"]
    if len(failed):
        raise ConfigError(f"{len(failed)} ladder images failed, e.g. {failed['status'].iloc[0]}; run again to retry")
    return rows


# --- the measures ---------------------------------------------------------------------------------


def _per_prompt(rows: pd.DataFrame, column: str) -> pd.DataFrame:
    """prompts x rungs: the column's mean over a prompt's seeds."""
    return rows.pivot_table(index="prompt_id", columns="rung", values=column, aggfunc="mean", sort=False)


class _SetMetric:
    """A per-set metric of any subset of prompts, for every rung (``by_rung``: rung -> the rung's image
    features, their ground truth's, and their prompt ids)."""

    def __init__(self, name: str, by_rung: dict[str, tuple[torch.Tensor, torch.Tensor, np.ndarray]]):
        self.name, self.by_rung = name, by_rung

    def value(self, rung: str, prompts: np.ndarray | None = None) -> float:
        """The metric of the rung's images (of ``prompts``, default all) against their ground truth."""
        x, y, ids = self.by_rung[rung]
        if prompts is not None:
            keep = torch.from_numpy(np.isin(ids, prompts))
            x, y = x[keep], y[keep]
        return set_metric_value(self.name, x, y)


def _set_metrics(
    names: Sequence[str], rows: pd.DataFrame, root: Path, options: MetricOptions
) -> dict[str, _SetMetric]:  # fmt: skip
    """Each per-set metric among ``names`` over the ladder, the features of each image and its ground truth
    extracted once per extractor (FID, KID and CMMD share them where they use the same one)."""
    by_spec: dict[str, dict] = {}
    for spec in dict.fromkeys(features_of(name, options) for name in names):
        features, truth = row_features(rows, root, feature_extractor(spec))
        by_spec[spec] = {}
        for rung in dict.fromkeys(rows["rung"]):
            mine = np.flatnonzero((rows["rung"] == rung).to_numpy())
            index = torch.from_numpy(mine)
            by_spec[spec][rung] = (features[index], truth[index], rows["prompt_id"].to_numpy()[mine])
    return {name: _SetMetric(name, by_spec[features_of(name, options)]) for name in names}


def rung_table(rows: pd.DataFrame, root: str | Path, metrics: Sequence[str], options: MetricOptions | None = None):
    """Per rung: the judge's score (``judge``: % of images right on every attribute) and every metric's value
    (per-image: mean over prompts; per-set: against the ground truth), best judge first."""
    options = options or MetricOptions()
    table = pd.DataFrame({"judge": 100 * _per_prompt(rows, JUDGE).mean()})
    for name in image_metric_names(metrics):
        table[name] = _per_prompt(rows, name).mean()
    for name, measure in _set_metrics(set_metric_names(metrics), rows, Path(root), options).items():
        table[name] = [measure.value(rung) for rung in table.index]
    return table.sort_values("judge", ascending=False).rename_axis("rung").reset_index()


def stratified_auc(scores: np.ndarray, right: np.ndarray, strata: np.ndarray) -> float | None:
    """P(a right image's score > a wrong one's of the same stratum (rung)) + half the ties: the Mann-Whitney U
    summed over strata over the right x wrong pairs there. None without such a pair."""
    u = pairs = 0.0
    for stratum in np.unique(strata):
        keep = (strata == stratum) & ~np.isnan(scores)
        good, bad = scores[keep & right], scores[keep & ~right]
        if len(good) and len(bad):
            u += scipy_stats.mannwhitneyu(good, bad, alternative="two-sided").statistic
            pairs += len(good) * len(bad)
    return float(u / pairs) if pairs else None


def _prompt_grid(n: int) -> list[int]:
    """2, 4, 8, ... up to half the prompts, and half the prompts: larger subsets of ``n`` would hardly vary."""
    half = max(2, n // 2)
    return sorted({*(2**k for k in range(1, int(np.log2(half)) + 1)), half})


def validity(
    rows: pd.DataFrame,
    root: str | Path,
    metrics: Sequence[str],
    options: MetricOptions | None = None,
    *,
    min_gap: float = 2.0,
    coverage: float = 0.95,
    draws: int = 200,
    seed: int = 0,
) -> pd.DataFrame:
    """For every metric: kendall_tau, auc_wrong and prompts_needed (module docstring), from ladder rows
    (``run_ladder``) whose images lie under ``root``; also ``pairs`` (the neighbouring rung pairs the judge
    separates by ``min_gap`` points) and ``pairs_reached`` (those the metric orders with the prompts
    available)."""
    options = options or MetricOptions()
    if draws < 10 or not 0.5 < coverage < 1:
        raise ConfigError(f"need draws >= 10 and 0.5 < coverage < 1, got {draws} and {coverage}", "draws")
    judge = 100 * _per_prompt(rows, JUDGE)  # prompts x rungs
    order = judge.mean().sort_values(ascending=False)
    pairs = [
        (better, worse) for better, worse in itertools.pairwise(order.index) if order[better] - order[worse] >= min_gap
    ]
    prompt_ids = judge.index.to_numpy()
    grid = _prompt_grid(len(prompt_ids))
    rng = np.random.default_rng(seed)
    subsets = {k: [rng.choice(prompt_ids, k, replace=False) for _ in range(draws)] for k in grid}
    right = rows[JUDGE].to_numpy(dtype=float) == 1.0
    judged = rows[JUDGE].notna().to_numpy()
    set_measures = _set_metrics([m for m in metrics if METRICS[m].kind == "set"], rows, Path(root), options)
    out = []
    for name in metrics:
        sign = 1.0 if METRICS[name].higher_is_better else -1.0
        if METRICS[name].kind == "image":
            table = _per_prompt(rows, name).reindex(index=judge.index)
            position = {p: i for i, p in enumerate(table.index)}

            def value(rung: str, chosen: np.ndarray | None = None, table=table, position=position) -> float:
                column = table[rung].to_numpy(dtype=float)
                column = column if chosen is None else column[[position[p] for p in chosen]]
                return float(np.nanmean(column)) if np.isfinite(column).any() else np.nan  # all unsure: none

            scores = np.where(judged, sign * rows[name].to_numpy(dtype=float), np.nan)  # unsure: neither
            auc = stratified_auc(scores, right, rows["rung"].to_numpy())
        else:
            value = set_measures[name].value
            auc = None
        values = {rung: value(rung) for rung in order.index}
        tau = scipy_stats.kendalltau([sign * values[r] for r in order.index], order.to_numpy(), variant="b").statistic
        needed = []
        for better, worse in pairs:
            reached = next(
                (
                    k
                    for k in grid
                    if np.mean([sign * (value(better, c) - value(worse, c)) > 0 for c in subsets[k]]) >= coverage
                ),
                None,
            )
            needed.append(reached if reached is not None else np.inf)
        median = float(np.median(needed)) if needed else np.inf
        out.append(
            {
                "metric": name,
                "kendall_tau": None if np.isnan(tau) else float(tau),
                "auc_wrong": auc,
                "prompts_needed": median if np.isfinite(median) else None,
                "pairs": len(pairs),
                "pairs_reached": int(np.isfinite(needed).sum()),
            }
        )
    return pd.DataFrame(out)


def validity_records(table: pd.DataFrame) -> list[dict[str, Any]]:
    """validity.json's list: ``{metric, kendall_tau, auc_wrong, prompts_needed}`` per metric (null for none), and
    ``auc_wrong_readings`` with its interval where the table has it (``readings.validity_against_readings``)."""
    keys = ["metric", "kendall_tau", "auc_wrong", "prompts_needed"]
    keys += [k for k in ("auc_wrong_readings", "readings_ci_low", "readings_ci_high") if k in table]
    return [{k: (None if pd.isna(row[k]) else row[k]) for k in keys} for row in table.to_dict("records")]


def save_validity(
    output_dir: str | Path, table: pd.DataFrame, judge: dict[str, Any], rows: pd.DataFrame, rungs: pd.DataFrame
) -> None:
    """validity.json (``validity_records``), judge.json (``rendered``: ``{attribute: accuracy}`` on rendered
    scenes; ``read_by_eye``: ``readings.judge_against_readings``, on generated images read by eye), and
    what every study leaves (results.parquet; summary.json with the full validity table as its rows, the rung
    table and the judge's accuracy)."""
    from workbench.run_folder import RunFolder

    folder = RunFolder(output_dir)
    folder.write_json("validity.json", validity_records(table))
    folder.write_json("judge.json", judge)
    folder.finish(table, results=rows, rungs=json.loads(rungs.to_json(orient="records")), judge=judge)
