"""A/B tests of prompt variations: every arm sees the same base prompts and the same seeds, each image is
scored by a per-image metric (CLIP score by default; any ``ImageScorer``), against the base prompt by
default, and each arm is compared with a control arm.

``PromptABTester.run()`` reads like a script::

    units: each base prompt's plan (model and settings, one route for all its arms) x each arm's prompt
           (template or function) x the seeds
    engine: each arm batched across prompts, arms interleaved in rounds (an untimed warm-up per shape) -> score
           -> rows (into the run folder, given an output_dir)
    per arm against the control: per-prompt means (seeds averaged) -> paired differences ->
        mean, 95% CI over prompts, Wilcoxon signed-rank p, win rate, power -> Holm across arms -> verdict

The statistics live in ``workbench.stats`` (shared with the model evaluation); ``compare_arms`` and
``arms_verdict`` call them on the tidy table, by arm, for any metric. People can be the judge too: a pairwise
rating task made from the test's run, once voted on, gives each arm's preference over the control
(``ABTestResult.with_people``, ``workbench.ratings.preference``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pandas as pd
from PIL import Image

from workbench.config import GenerationConfig
from workbench.engine import BatchResult, BatchRunner, RunnerSpec, Unit, execute, plan_batches, sized_units
from workbench.errors import ConfigError
from workbench.evaluation import prompt_frame
from workbench.metrics import METRICS, MetricOptions, metric_bounds
from workbench.metrics.provenance import metric_provenance
from workbench.metrics.registry import scorer_options
from workbench.models import default_cache
from workbench.plan import resolve, target_label
from workbench.ratings.preference import DRAWS, people_preferences
from workbench.ratings.task import RatingTask
from workbench.row import settings_hash
from workbench.run_folder import RunFolder, json_records
from workbench.stats import compare_groups, mean_over_prompts, verdict

__all__ = ["ABTestResult", "PromptABTester", "arms_verdict", "compare_arms"]

Variation = str | Callable[[str], Any]  # a template with {prompt}, or prompt -> str / (prompt, negative_prompt)
ARM_SEED_STRIDE = 1_000_003  # with same_seeds=False, arm i uses seed + i * stride


# --- comparisons ----------------------------------------------------------------------------------


def compare_arms(rows: pd.DataFrame, control: str, *, metric: str = "clip_score", seed: int = 0) -> pd.DataFrame:
    """One row per arm against ``control`` (``stats.compare_groups`` by arm, the reference column named
    control): metric, arm, control, mean_diff, ci_low, ci_high, p_value, p_holm, win_rate, n_prompts,
    n_differing, min_detectable, prompts_needed; the interval by the metric's range where the registry knows
    it (``stats.bounded_ci``)."""
    table = compare_groups(rows, by="arm", reference=control, metrics=(metric,), seed=seed,
                           bounds=metric_bounds([metric]))  # fmt: skip
    if table.empty:
        raise ConfigError(
            f"an A/B test needs {metric} values for the control {control!r} and at least one other arm; "
            f"arms: {list(dict.fromkeys(rows['arm']))}"
        )
    return table.rename(columns={"reference": "control"})


def arms_verdict(comparisons: pd.DataFrame, *, alpha: float = 0.05) -> str:
    """``stats.verdict`` of a ``compare_arms`` table."""
    return verdict(comparisons.rename(columns={"control": "reference"}), by="arm", alpha=alpha)


# --- the tester -----------------------------------------------------------------------------------


@dataclass
class ABTestResult:
    """The tidy rows (one per image), per-arm summary, comparisons with the control on ``metric``, and the
    verdict; ``people``: each arm against the control by people's votes, once added (``with_people``)."""

    rows: pd.DataFrame
    comparisons: pd.DataFrame
    control: str
    verdict: str
    metric: str = "clip_score"
    images: dict[tuple[str, str, int], Image.Image] = field(default_factory=dict, repr=False)  # (arm, prompt_id, seed)
    people: pd.DataFrame | None = None

    def with_people(
        self, task: RatingTask, *, questions: Sequence[str] | None = None, draws: int = DRAWS, seed: int = 0
    ) -> ABTestResult:
        """This result with people's verdict: per question (default: each with votes) and arm, the share of the
        votes between the arm and the control that the arm won (ties count half), its 95% interval over resampled
        prompts and p, Holm across arms (``ratings.preference``). ``task``: a pairwise rating task made from this
        test's run, whose targets' ``[variant]`` are the arms."""
        runs = [run["run_id"] for run in task.manifest["runs"]]
        if not set(self.rows["run_id"]) & set(runs):
            raise ConfigError(
                f"rating task {task.task_id!r} was not made from this test's run {self.rows['run_id'].iloc[0]!r}; "
                f"it draws on the runs {runs}",
                "task",
            )
        arms = [arm for arm in dict.fromkeys(self.rows["arm"]) if arm != self.control]
        found = people_preferences(task, [(self.control, arm) for arm in arms], questions=questions, draws=draws,
                                   seed=seed)  # fmt: skip
        people = pd.DataFrame([p.to_dict() for p in found]).rename(columns={"a": "control", "b": "arm"})
        return replace(self, people=people)

    @property
    def people_verdict(self) -> str:
        """People's verdict in words, a line per question and arm ("" before ``with_people``)."""
        if self.people is None:
            return ""
        return "\n".join(f"{row.question}: {row.verdict}" for row in self.people.itertuples())

    def save(self, output_dir: str | Path) -> None:
        """results.parquet and summary.json (as every study leaves them), comparisons.json and verdict.txt; with
        people's verdict, people_comparisons.json and people_verdict.txt too."""
        folder = RunFolder(output_dir)
        folder.finish(
            self.summary, comparisons=self.comparisons, results=self.rows, control=self.control, verdict=self.verdict
        )
        folder.write_text("verdict.txt", self.verdict + "\n")
        if self.people is not None:
            folder.write_json("people_comparisons.json", json_records(self.people))
            folder.write_text("people_verdict.txt", self.people_verdict + "\n")

    @property
    def summary(self) -> pd.DataFrame:
        """Per arm: images, the metric's mean with a 95% CI over prompts (``stats.mean_over_prompts``), mean
        latency."""
        out = []
        for arm, group in self.rows.groupby("arm", sort=False):
            out.append(
                {
                    "arm": arm,
                    "images": len(group),
                    **mean_over_prompts(group, self.metric),
                    "latency_mean_s": group["latency_s"].mean(),
                }
            )
        return pd.DataFrame(out)


class PromptABTester:
    """Runs prompt variations on one pipeline (or through a router: each base prompt's route decides the
    model and settings for all its arms, so arms differ only in their prompts), scored by ``scorer`` (an
    ``ImageScorer``: a ``CLIPScorer``, or any registry metric's) on its first metric, or ``metric``."""

    def __init__(
        self,
        target,
        scorer,
        *,
        metric: str | None = None,
        config: GenerationConfig | None = None,
        output_dir: str | Path | None = None,
        device: str | None = None,
        run_id: str | None = None,
    ):
        self.target, self.scorer = target, scorer
        self.metric = metric if metric is not None else scorer.metrics[0]
        if self.metric not in scorer.metrics:
            raise ConfigError(f"metric must be one the scorer fills, {list(scorer.metrics)}, got {metric!r}", "metric")
        self.config = config or GenerationConfig()
        self.folder = RunFolder(output_dir, run_id) if output_dir else None
        self.device = device
        self.run_id = self.folder.run_id if self.folder else run_id or "ab"
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

        # 2. Units: all arms of a prompt share its plan (model and settings); generate and score on the engine.
        label, settings = target_label(self.target), settings_hash(self.config)
        units = []
        for prompt in prompts.itertuples():
            plan = resolve(self.target, prompt.prompt, self.config)
            for index, (arm, make) in enumerate(arms.items()):
                text, negative = make(prompt.prompt)
                config = plan.config.replace(negative_prompt=negative) if negative is not None else plan.config
                arm_plan = replace(plan, config=config, context={**plan.context, "arm": arm})
                against = prompt.prompt if score_against == "base" else text
                for seed in seeds:
                    arm_seed = seed if same_seeds else seed + index * ARM_SEED_STRIDE
                    columns = {"base_prompt": prompt.prompt, "pair_seed": seed, "scored_against": score_against}
                    units.append(Unit(label, prompt.prompt_id, text, prompt.category, arm_seed, arm_plan, arm,
                                      against, columns))  # fmt: skip
        spec = RunnerSpec(self.run_id, settings)
        runner = BatchRunner(spec, scorers=[self.scorer], device=self.device, cache=self.cache)
        units, probes = sized_units(units, runner, self.folder.batch_probes() if self.folder else None)
        if self.folder and probes:
            self.folder.write_batch_probes(probes)
        made: dict[tuple, tuple] = {}

        def store(result: BatchResult) -> None:
            rows = self.folder.add(result.rows, result.records) if self.folder else result.rows
            records = result.records or [None] * len(rows)
            for row, record in zip(rows, records, strict=True):
                made[(row.context["arm"], row.prompt_id, row.context["pair_seed"])] = (row, record)
            if progress is not None:
                progress(len(made), len(units))

        if self.folder:
            options = scorer_options(MetricOptions(), [self.scorer])
            names = [m for m in self.scorer.metrics if m in METRICS]
            self.folder.write_provenance(metric_provenance(names, options, prompts, images_per_prompt=len(seeds)))
        execute(plan_batches(units), spec, store, runner=runner)

        # 3. Compare each arm with the control.
        order = [(u.variant, u.prompt_id, u.columns["pair_seed"]) for u in units]
        frame = pd.DataFrame([made[key][0].to_dict() for key in order])
        images = {key: made[key][1].image for key in order if made[key][1] is not None}
        comparisons = compare_arms(frame, control, metric=self.metric)
        return ABTestResult(frame, comparisons, control, arms_verdict(comparisons), self.metric, images)

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
