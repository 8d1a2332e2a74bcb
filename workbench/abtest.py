"""A/B tests of prompt variations: every arm sees the same base prompts and the same seeds, each image is
CLIP-scored (against the base prompt by default), and each arm is compared with a control arm.

``PromptABTester.run()`` reads like a script::

    for each base prompt: for each arm: its prompt (template or function) -> generate the seeds -> score
    per arm against the control: per-prompt means (seeds averaged) -> paired differences ->
        mean, 95% bootstrap CI over prompts, Wilcoxon signed-rank p, win rate -> Holm across arms -> verdict

The statistics (``compare_arms``, ``holm``) are plain functions of the tidy table, usable on any metric.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from workbench.config import GenerationConfig
from workbench.errors import ConfigError
from workbench.evaluation import (
    bootstrap_ci,
    clip_over_prompts,
    prompt_frame,
    result_row,
    settings_key,
)
from workbench.generation import save_image
from workbench.models import default_cache
from workbench.plan import resolve, run, target_label
from workbench.run_files import save_study_results

__all__ = ["ABTestResult", "PromptABTester", "compare_arms", "holm", "paired_statistics", "verdict"]

Variation = str | Callable[[str], Any]  # a template with {prompt}, or prompt -> str / (prompt, negative_prompt)
ARM_SEED_STRIDE = 1_000_003  # with same_seeds=False, arm i uses seed + i * stride


# --- statistics -----------------------------------------------------------------------------------


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (step-down, monotone, capped at 1), in the input order."""
    p = np.asarray(p_values, dtype=float)
    order = np.argsort(p)
    adjusted = np.empty_like(p)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, (len(p) - rank) * p[i])
        adjusted[i] = min(1.0, running)
    return adjusted.tolist()


def paired_statistics(differences: Sequence[float], *, seed: int = 0) -> dict[str, float]:
    """For paired per-prompt differences (arm - control): mean, 95% bootstrap CI, Wilcoxon p, win rate."""
    from scipy.stats import wilcoxon

    diff = np.asarray(differences, dtype=float)
    if len(diff) == 0:
        raise ConfigError("no paired prompts to compare")
    low, high = bootstrap_ci(diff, seed=seed)
    if np.all(diff == 0):
        p_value = 1.0  # identical arms: no evidence of any difference
    elif len(diff) < 2:
        p_value = float("nan")
    else:
        p_value = float(wilcoxon(diff, zero_method="wilcox", alternative="two-sided").pvalue)
    return {
        "mean_diff": float(diff.mean()),
        "ci_low": 0.0 if np.all(diff == 0) else low,
        "ci_high": 0.0 if np.all(diff == 0) else high,
        "p_value": p_value,
        "win_rate": float(np.mean(diff > 0) + 0.5 * np.mean(diff == 0)),  # ties count half
        "n_prompts": len(diff),
    }


def compare_arms(rows: pd.DataFrame, control: str, *, metric: str = "clip_score", seed: int = 0) -> pd.DataFrame:
    """One row per arm against ``control``: arm, control, mean_diff, ci_low, ci_high, p_value, p_holm,
    win_rate, n_prompts. Seeds are averaged within a prompt first; prompts are the paired units."""
    ok = rows[rows["status"] == "ok"] if "status" in rows else rows
    per_prompt = ok.pivot_table(index="prompt_id", columns="arm", values=metric, aggfunc="mean")
    if control not in per_prompt:
        raise ConfigError(f"control arm {control!r} has no scored rows; arms: {sorted(per_prompt.columns)}")
    results = []
    for arm in [a for a in dict.fromkeys(ok["arm"]) if a != control]:
        paired = per_prompt[[arm, control]].dropna()
        results.append({"arm": arm, "control": control, **paired_statistics(paired[arm] - paired[control], seed=seed)})
    table = pd.DataFrame(results)
    if table.empty:
        raise ConfigError("an A/B test needs at least one arm besides the control")
    table.insert(table.columns.get_loc("p_value") + 1, "p_holm", holm(table["p_value"].fillna(1.0)))
    return table


def verdict(comparisons: pd.DataFrame, *, alpha: float = 0.05, unit: str = "CLIP points") -> str:
    """Plain words, one line per arm: who beats whom, by how much (the CI is of winner - loser), with
    p (Holm-adjusted when there are several arms) and the number of prompts. Significant means
    p < ``alpha`` and a CI that excludes 0."""
    lines = []
    for row in comparisons.itertuples():
        tail = f"p = {_p(row.p_holm)}{' (Holm)' if len(comparisons) > 1 else ''}, {row.n_prompts} prompts"
        if row.p_holm < alpha and (row.ci_low > 0 or row.ci_high < 0):
            if row.mean_diff > 0:
                winner, loser, low, high = row.arm, row.control, row.ci_low, row.ci_high
            else:
                winner, loser, low, high = row.control, row.arm, -row.ci_high, -row.ci_low
            lines.append(
                f"{winner} beats {loser} by {abs(row.mean_diff):.2f} {unit}, 95% CI [{low:.2f}, {high:.2f}], {tail}"
            )
        else:
            lines.append(
                f"no significant difference between {row.arm} and {row.control}: {row.arm} - {row.control} = "
                f"{row.mean_diff:+.2f} {unit}, 95% CI [{row.ci_low:.2f}, {row.ci_high:.2f}], {tail}"
            )
    return "\n".join(lines)


def _p(p: float) -> str:
    return "n/a" if np.isnan(p) else ("< 0.001" if p < 0.001 else f"{p:.3f}")


# --- the tester -----------------------------------------------------------------------------------


@dataclass
class ABTestResult:
    """The tidy rows (one per image), per-arm summary, comparisons with the control, and the verdict."""

    rows: pd.DataFrame
    comparisons: pd.DataFrame
    control: str
    verdict: str
    images: dict[tuple[str, str, int], Image.Image] = field(default_factory=dict, repr=False)  # (arm, prompt_id, seed)

    def save(self, output_dir: str | Path) -> None:
        """results.parquet and summary.json (as every study leaves them), comparisons.json and verdict.txt."""
        output_dir = Path(output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        save_study_results(self.rows, self.summary, output_dir)
        (output_dir / "comparisons.json").write_text(self.comparisons.to_json(orient="records", indent=2))
        (output_dir / "verdict.txt").write_text(self.verdict + "\n")

    @property
    def summary(self) -> pd.DataFrame:
        """Per arm: images, mean CLIP score with a 95% bootstrap CI over prompts, mean latency."""
        out = []
        for arm, group in self.rows.groupby("arm", sort=False):
            out.append(
                {
                    "arm": arm,
                    "images": len(group),
                    **clip_over_prompts(group),
                    "latency_mean_s": group["latency_s"].mean(),
                }
            )
        return pd.DataFrame(out)


class PromptABTester:
    """Runs prompt variations on one pipeline (or through a router: each base prompt's route decides the
    model and settings for all its arms, so arms differ only in their prompts), CLIP-scored."""

    def __init__(
        self,
        target,
        scorer,
        *,
        config: GenerationConfig | None = None,
        output_dir: str | Path | None = None,
        device: str | None = None,
        run_id: str = "ab",
    ):
        self.target, self.scorer = target, scorer
        self.config = config or GenerationConfig()
        self.output_dir = Path(output_dir) if output_dir else None
        self.device = device
        self.run_id = run_id
        # a Router's models come from its own cache; a model id's from the shared one
        self.cache = getattr(target, "cache", default_cache)

    def run(
        self,
        base_prompts: Sequence[str] | pd.DataFrame,
        variations: Mapping[str, Variation],
        seeds: Sequence[int],
        *,
        control: str | None = None,
        score_against: str = "base",
        same_seeds: bool = True,
        progress: Callable[[int, int], None] | None = None,
    ) -> ABTestResult:
        """Generate every base prompt x arm x seed, score, compare each arm with ``control`` (the first
        arm by default). ``score_against="arm"`` scores each image against its own arm's prompt.
        ``same_seeds=False`` gives each arm its own seeds (only for checking the test's false-positive
        rate with A/A runs: real comparisons should pair the noise)."""
        # 1. Check inputs.
        arms = self._arms(variations)
        control = control if control is not None else next(iter(arms))
        if control not in arms:
            raise ConfigError(f"control must be one of the arms {list(arms)}, got {control!r}")
        if score_against not in ("base", "arm"):
            raise ConfigError(f"score_against must be 'base' or 'arm', got {score_against!r}")
        seeds = [int(s) for s in seeds]
        if not seeds:
            raise ConfigError("seeds must not be empty")
        prompts = prompt_frame(base_prompts)

        # 2. Generate and score, prompt by prompt (all arms of a prompt share its plan: model and settings).
        rows, images = [], {}
        total, done = len(prompts) * len(arms) * len(seeds), 0
        label, settings = target_label(self.target), settings_key(self.config)
        for prompt in prompts.itertuples():
            plan = resolve(self.target, prompt.prompt, self.config)
            for index, (arm, make) in enumerate(arms.items()):
                text, negative = make(prompt.prompt)
                arm_seeds = seeds if same_seeds else [s + index * ARM_SEED_STRIDE for s in seeds]
                config = plan.config.replace(negative_prompt=negative) if negative is not None else plan.config
                arm_plan = replace(plan, config=config, context={**plan.context, "arm": arm})
                records = run(arm_plan, text, arm_seeds, device=self.device, cache=self.cache)
                against = [prompt.prompt if score_against == "base" else text] * len(records)
                scores = self.scorer.score([r.image for r in records], against)
                for i, record in enumerate(records):
                    images[(arm, prompt.prompt_id, seeds[i])] = record.image
                    rows.append(
                        result_row(
                            record, target=label, run_id=self.run_id, prompt_id=prompt.prompt_id,
                            category=prompt.category, settings=settings, scores=scores, index=i,
                            image_path=self._save(record), base_prompt=prompt.prompt, pair_seed=seeds[i],
                            scored_against=score_against,
                        )
                    )  # fmt: skip
                done += len(records)
                if progress is not None:
                    progress(done, total)

        # 3. Compare each arm with the control.
        frame = pd.DataFrame(rows)
        comparisons = compare_arms(frame, control)
        return ABTestResult(frame, comparisons, control, verdict(comparisons), images)

    def _save(self, record) -> str | None:
        """Write the PNG under output_dir/images (when there is an output_dir); its path relative to it."""
        if self.output_dir is None:
            return None
        return str(save_image(record, self.output_dir / "images").relative_to(self.output_dir))

    def _arms(self, variations: Mapping[str, Variation]) -> dict[str, Callable[[str], tuple[str, str | None]]]:
        if not isinstance(variations, Mapping) or len(variations) < 2:
            raise ConfigError(
                f"variations must map at least two arm names to templates or functions, got {variations!r}"
            )
        arms = {}
        for name, variation in variations.items():
            if isinstance(variation, str):
                if "{prompt}" not in variation:
                    raise ConfigError(f"arm {name!r}: a template must contain {{prompt}}, got {variation!r}")
                arms[name] = lambda p, t=variation: (t.replace("{prompt}", p), None)
            elif callable(variation):
                arms[name] = lambda p, f=variation, n=name: _as_prompt_pair(f(p), n)
            else:
                raise ConfigError(f"arm {name!r} must be a template string or a function, got {variation!r}")
        return arms


def _as_prompt_pair(value: Any, arm: str) -> tuple[str, str | None]:
    """A variation function's result: a prompt, a (prompt, negative_prompt) pair, or an OptimizedPrompt."""
    if isinstance(value, str):
        return value, None
    try:
        text, negative = value
    except (TypeError, ValueError):
        raise ConfigError(f"arm {arm!r}: a variation must return a prompt or (prompt, negative_prompt)") from None
    if not isinstance(text, str) or not (negative is None or isinstance(negative, str)):
        raise ConfigError(f"arm {arm!r}: a variation must return strings, got {value!r}")
    return text, negative or None
