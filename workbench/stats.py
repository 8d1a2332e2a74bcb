"""Statistics of paired comparisons over prompts, shared by the model evaluation and the A/B tester.

Prompts are the independent units: seeds are averaged within a prompt first (``per_prompt``), and two
groups (models, arms) are compared on the prompts both have. Each comparison gives the mean difference
with a confidence interval (``difference_ci``: ``mean_ci``, or ``bounded_ci`` for a metric with a known
range), the Wilcoxon signed-rank p (two-sided, exact when there are no ties), Holm's adjustment across every
comparison of a study, the win rate, and two power figures: the smallest difference the study could detect
(``min_detectable``) and the prompts a study would need (``prompts_needed``). ``verdict`` puts a table of
comparisons into plain words.

The default interval, ``INTERVAL = "t"`` (Student's t on the standard error), was chosen by measurement:
benchmarks/ab_false_positives.py, results in benchmarks/results/ab_false_positives.json. Share of 95%
intervals containing the true mean difference at 16 prompts (exact 95% CI of each share in brackets):

=============  ====================  ===================  ===================  ===================
method         A/A (real images)     normal               exponential          Student's t, 3 df
=============  ====================  ===================  ===================  ===================
t              95.0 [93.5, 96.3]     95.5 [94.8, 96.1]    91.2 [90.3, 92.1]    95.7 [95.0, 96.3]
bca            88.1 [85.9, 90.0]     92.6 [91.8, 93.4]    90.4 [89.4, 91.3]    88.0 [87.0, 89.0]
bootstrap-t    91.9 [90.0, 93.5]     95.2 [94.5, 95.9]    95.0 [94.2, 95.6]    92.4 [91.5, 93.2]
percentile     90.3 [88.3, 92.1]     92.9 [92.0, 93.7]    88.9 [87.9, 89.8]    90.9 [89.9, 91.8]
=============  ====================  ===================  ===================  ===================

(1000 A/A runs of 16 prompts x 2 seeds per arm from a pool of 512 toy-world images; 4000 simulated samples
of 16 per distribution.) No method keeps 95 ± 2 everywhere. The real per-prompt CLIP differences are
symmetric with heavy tails (A/A: skewness 0.05, excess kurtosis 3.1), where only the t interval covers, as
on Student's t data. The percentile and BCa intervals are too narrow at 16 prompts even on normal data (the
n-divisor variance, no t quantiles), and every bootstrap interval loses more coverage on heavy tails. The t
interval's weakness is strong skew (91% on exponential differences, skewness 2), which bootstrap-t fixes
(95%) at the cost of 92% on the real data. The real data decide: "t". The signed-rank test's A/A
false-positive rate at alpha 0.05 is 4.8% [3.6, 6.3]; a "beats" verdict (p < alpha and a t interval
excluding 0) came out in 3.5% of A/A runs.

A metric whose range the registry knows (``Metric.bounds``: composition and composition_all, 0 to 1) gets
``bounded_ci`` instead (``difference_ci``). Its paired differences are mostly 0 with a few whole points where a
change breaks a few prompts, and there the t-interval fails quietly: where one prompt in twenty loses a full
point, 16 prompts see no loss 44% of the time and the t-interval says [0, 0]. The same benchmark's bounded cases
chose it (4000 simulated samples each of per-prompt differences of a [0, 1] metric); coverage of 95% intervals
at 16 / 50 prompts, their mean width at 16 in brackets:

==================================  ===================  ===================  ===================  ===================
case                                t                    rule of three        Agresti-Min          bounded_ci
==================================  ===================  ===================  ===================  ===================
lose 1 point, 5% of prompts         56.8 / 92.5 (0.17)   100 / 99.8 (0.35)    100 / 92.7 (0.31)    100 / 99.8 (0.38)
lose 1 point, 1%                    15.3 / 40.7 (0.04)   100 / 100 (0.39)     100 / 100 (0.26)     100 / 100 (0.38)
lose 1 point, 10%                   80.3 / 87.8 (0.28)   99.6 / 87.8 (0.36)   100 / 96.2 (0.37)    99.6 / 98.3 (0.40)
lose 1 point, 20%                   84.8 / 93.6 (0.41)   87.6 / 93.6 (0.42)   96.8 / 94.5 (0.45)   96.2 / 96.2 (0.45)
lose half a point, 5%               56.8 / 92.5 (0.09)   100 / 99.8 (0.26)    100 / 100 (0.26)     100 / 99.8 (0.34)
lose 1 point 5%, gain 1 point 5%    99.5 / 95.5 (0.29)   99.5 / 95.5 (0.37)   99.9 / 98.0 (0.38)   99.5 / 95.5 (0.41)
lose 1 point 10%, gain 1 3%         86.9 / 94.3 (0.34)   98.0 / 94.5 (0.39)   99.6 / 95.4 (0.41)   98.0 / 96.2 (0.42)
lose 1 point 5%, +-0.25 on 10%      65.7 / 90.8 (0.21)   73.0 / 90.8 (0.24)   100 / 94.3 (0.32)    98.9 / 94.3 (0.34)
composition_all A/A, 2 seeds        95.1 / 94.8 (0.47)   95.1 / 94.8 (0.47)   98.0 / 96.3 (0.48)   95.1 / 94.8 (0.47)
composition +0.1, 3 attr. x 2 seeds 94.9 / 95.0 (0.27)   94.9 / 95.0 (0.27)   99.8 / 97.7 (0.34)   95.2 / 95.0 (0.27)
continuous +0.1 +- 0.2              94.8 / 94.9 (0.21)   94.8 / 94.9 (0.21)   100 / 98.2 (0.31)    95.8 / 94.9 (0.22)
continuous 0 +- 0.05                94.8 / 94.9 (0.05)   94.8 / 94.9 (0.05)   100 / 100 (0.25)     99.5 / 94.9 (0.24)
the same, lose 1 point 5%           56.9 / 91.3 (0.19)   56.9 / 91.3 (0.19)   100 / 93.2 (0.31)    99.7 / 91.6 (0.30)
==================================  ===================  ===================  ===================  ===================

bounded_ci holds 93% in every case at 16, 50 and 100 prompts but the last, where a rare full loss among small
changes on every prompt skews the mean: from 50 prompts on that is the t-interval's own weakness (90 to 91%,
as on exponential differences), which no count of pseudo-prompts mends (2: 93.4% at 50, 90.9% at 100). Where every
difference is 0 it gives +-z^2 / (n + z^2) of the range (+-0.19 at 16 prompts, +-0.07 at 50: the rule of
three's bound), never [0, 0]; on composition-like and continuous differences with some spread it is the
t-interval within 6% of its width. The t-interval with the rule of three's bound where every difference ties
mends only those samples (87.6% where one prompt in five loses a point, 73% where small changes hide the
loss); Agresti and Min's pseudo-observations at the range's ends widen continuous differences 1.5 to 5 times
and fall to 92.7% at 50 prompts; Hoeffding's bound covers everywhere at 1.36 wide (16 prompts). The one
full-range pseudo-prompt in the typical size is the fewest that holds: with 0.25 or 0.5, a full point lost on
5% of the prompts among +-0.25 changes covers 92.0% or 92.5% at 50 prompts. Its cost is small changes on every
prompt (+-0.05): 0.24 wide at 16 prompts where the t-interval is 0.05, for they look the same as those changes
with a full point lost unseen on one prompt in twenty (the last case: the t-interval 56.9%).

Only a known range bounds a difference no prompt showed, so other metrics keep the t-interval, and
differences that are all 0 get no interval there (nan), never a zero-width one. CLIP has no range in the
registry: bounded_ci with its formal 0 to 100 covers the A/A runs 100% at a median width of 34.6 CLIP points,
the t-interval's 1.12.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats as sps

from workbench.errors import ConfigError

__all__ = [
    "INTERVAL",
    "INTERVALS",
    "bounded_ci",
    "compare_groups",
    "describe_interval",
    "difference_ci",
    "format_p",
    "holm",
    "mean_ci",
    "mean_over_prompts",
    "median_ci",
    "min_prompts",
    "paired_ratio",
    "paired_statistics",
    "per_prompt",
    "ratio_of_medians",
    "unanimous_bound",
    "verdict",
]

_INTERVAL_WORDS = {  # mean_ci's methods, each in words for reports (describe_interval)
    "t": "t-interval (Student's t on the standard error)",
    "bca": "BCa bootstrap interval (bias-corrected and accelerated)",
    "bootstrap-t": "bootstrap-t interval (studentized bootstrap)",
    "percentile": "percentile bootstrap interval",
}
INTERVALS = tuple(_INTERVAL_WORDS)
INTERVAL = "t"  # chosen by the A/A benchmark: see the module docstring
BOUNDED_WORDS = "for a metric with a known range, widened to a score interval on it where few prompts differ"
PSEUDO_PROMPTS = 1.0  # bounded_ci's full-range pseudo-prompts, chosen by the sparse benchmark cases
POWER = 0.8  # the power that min_detectable and prompts_needed aim at
N_RESAMPLES = 4000  # bootstrap resamples


# --- intervals --------------------------------------------------------------------------------------


def mean_ci(
    values: Sequence[float],
    *,
    level: float = 0.95,
    method: str = INTERVAL,
    seed: int = 0,
    n_resamples: int = N_RESAMPLES,
) -> tuple[float, float]:
    """Confidence interval of the mean: ``"t"`` (Student's t on the standard error), ``"bca"`` (scipy's
    bias-corrected accelerated bootstrap), ``"bootstrap-t"`` (studentized bootstrap) or ``"percentile"``
    bootstrap. (nan, nan) with fewer than 2 values, (v, v) when all values equal v."""
    x = np.asarray(values, dtype=float)
    if method not in INTERVALS:
        raise ConfigError(f"method must be one of {list(INTERVALS)}, got {method!r}", field="method")
    if not 0 < level < 1:
        raise ConfigError(f"level must lie strictly between 0 and 1, got {level!r}", field="level")
    if len(x) < 2:
        return (float("nan"), float("nan"))
    if np.all(x == x[0]):
        return (float(x[0]), float(x[0]))
    n, mean = len(x), float(x.mean())
    se = float(x.std(ddof=1)) / math.sqrt(n)
    tails = [round((1 - level) / 2, 12), round((1 + level) / 2, 12)]  # 0.025, not 0.025000000000000022
    if method == "t":
        half = float(sps.t.ppf(tails[1], n - 1)) * se
        return (mean - half, mean + half)
    rng = np.random.default_rng(seed)
    if method == "bca":
        result = sps.bootstrap((x,), np.mean, method="BCa", confidence_level=level, n_resamples=n_resamples, rng=rng)
        return (float(result.confidence_interval.low), float(result.confidence_interval.high))
    samples = x[rng.integers(0, n, size=(n_resamples, n))]
    means = samples.mean(axis=1)
    if method == "percentile":
        low, high = np.quantile(means, tails)
        return (float(low), float(high))
    # bootstrap-t: the quantiles of the resamples' t statistics; a resample of equal values has an infinite
    # one (0 when its mean is the sample's), so tiny samples honestly get infinite intervals
    ses = samples.std(axis=1, ddof=1) / math.sqrt(n)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(ses > 0, (means - mean) / ses, np.sign(means - mean) * np.inf)
    q_low, q_high = np.quantile(t, tails, method="inverted_cdf")
    return (float(mean - q_high * se), float(mean - q_low * se))


def bounded_ci(
    differences: Sequence[float],
    span: float,
    *,
    level: float = 0.95,
    method: str = INTERVAL,
    seed: int = 0,
    pseudo_prompts: float = PSEUDO_PROMPTS,
) -> tuple[float, float]:
    """Interval of the mean of paired differences of a metric whose values span ``span`` (its high - low), so
    that every difference lies in [-span, span]: ``mean_ci``'s (by ``method``), widened to hold the score
    interval of a difference that is either 0 or of the differences' typical size M, clipped to [-span, span].

    The score interval holds the means mu with (mean - mu)^2 <= z^2 (M |mu| - mu^2) / n, the variance under mu
    of a difference that is 0 or M with mu's sign (Wilson's interval when M = span and every difference is 0
    or a full span). M = (sum d^2 + p span^2) / (sum |d| + p span) joins ``pseudo_prompts`` p prompts of a
    full-span difference to the sample, so a loss no prompt showed counts as large as the range allows: when
    every difference is 0, M = span and the interval is +-z^2 span / (n + z^2) (the rule of three's bound).
    (nan, nan) with fewer than 2 differences; never zero-width otherwise."""
    d = np.asarray(differences, dtype=float)
    if not (np.isfinite(span) and span > 0):
        raise ConfigError(f"span must be a positive number (the metric's high - low), got {span!r}", field="span")
    if not pseudo_prompts > 0:
        raise ConfigError(f"pseudo_prompts must be positive, got {pseudo_prompts!r}", field="pseudo_prompts")
    outside = d[np.abs(d) > span * (1 + 1e-9)]
    if len(outside):
        raise ConfigError(
            f"differences must lie within -{span:g} to {span:g} (the metric's range), got {outside[:3].tolist()}",
            field="differences",
        )
    low, high = mean_ci(d, level=level, method=method, seed=seed)
    if len(d) < 2:
        return (low, high)
    n, mean = len(d), float(d.mean())
    size = (float(np.sum(d**2)) + pseudo_prompts * span**2) / (float(np.sum(np.abs(d))) + pseudo_prompts * span)
    k = float(sps.norm.ppf((1 + level) / 2)) ** 2 / n
    ends = [low, high]
    for sign in (1, -1):  # mu = sign * v, v >= 0: v^2 (1 + k) - v (2 e + k M) + e^2 <= 0, e = sign * mean
        e = sign * mean
        b, c = 2 * e + k * size, (1 + k) * e * e
        if b > 0 and b * b >= 4 * c:
            root = math.sqrt(b * b - 4 * c)
            ends += [sign * (b - root) / (2 * (1 + k)), sign * (b + root) / (2 * (1 + k))]
    return (max(min(ends), -span), min(max(ends), span))


def difference_ci(
    differences: Sequence[float],
    bounds: tuple[float, float] | None = None,
    *,
    level: float = 0.95,
    method: str = INTERVAL,
    seed: int = 0,
) -> tuple[float, float]:
    """Interval of a mean paired difference. With the ``bounds`` (low, high) of the metric compared,
    ``bounded_ci``; without, ``mean_ci``, except (nan, nan) where the differences do not vary: with no range
    to bound them, a sample that saw no difference (or the same one everywhere) gets no interval, never a
    zero-width one."""
    if bounds is not None:
        return bounded_ci(differences, _span(bounds), level=level, method=method, seed=seed)
    d = np.asarray(differences, dtype=float)
    if len(d) and np.all(d == d[0]):
        return (float("nan"), float("nan"))
    return mean_ci(d, level=level, method=method, seed=seed)


def _span(bounds: tuple[float, float]) -> float:
    """high - low of a metric's ``bounds``, refused unless they are two finite numbers with low < high."""
    try:
        low, high = (float(b) for b in bounds)
    except (TypeError, ValueError):
        low = high = float("nan")
    if not (np.isfinite(low) and np.isfinite(high) and low < high):
        raise ConfigError(f"bounds must be (low, high) with low < high, got {bounds!r}", field="bounds")
    return high - low


def describe_interval(method: str = INTERVAL, *, bounded: bool = False) -> str:
    """``mean_ci``'s 95% interval by ``method`` in words, for reports; by default the interval of every
    comparison (``compare_groups``, ``paired_statistics``): "95% t-interval (Student's t on the standard error)".
    ``bounded``: as ``bounded_ci`` widens it for a metric with a known range."""
    if method not in INTERVALS:
        raise ConfigError(f"method must be one of {list(INTERVALS)}, got {method!r}", field="method")
    words = _INTERVAL_WORDS[method]
    if bounded:  # inside the words' parenthesis, where they have one
        words = f"{words[:-1]}; {BOUNDED_WORDS})" if words.endswith(")") else f"{words} ({BOUNDED_WORDS})"
    return f"95% {words}"


def median_ci(values: Sequence[float], *, level: float = 0.95) -> tuple[float, float]:
    """Distribution-free interval of the median from order statistics: [x_(k), x_(n-k+1)] with the largest
    k whose binomial(n, 1/2) tail P(B <= k - 1) is at most (1 - level) / 2, so it covers at least
    ``level``. NaNs are dropped; (nan, nan) when n is too small for the level (n < 6 at 95%)."""
    x = np.sort(np.asarray(values, dtype=float))
    x = x[~np.isnan(x)]
    if not 0 < level < 1:
        raise ConfigError(f"level must lie strictly between 0 and 1, got {level!r}", field="level")
    n = len(x)
    tail = sps.binom.cdf(np.arange(n), n, 0.5)  # tail[k - 1] = P(B <= k - 1)
    ks = np.flatnonzero(tail <= (1 - level) / 2 * (1 + 1e-12)) + 1
    if n == 0 or len(ks) == 0:
        return (float("nan"), float("nan"))
    k = int(ks.max())
    return (float(x[k - 1]), float(x[n - k]))


def ratio_of_medians(
    a: Sequence[float], b: Sequence[float], *, level: float = 0.95, seed: int = 0, n_resamples: int = N_RESAMPLES
) -> tuple[float, float, float]:
    """b's median / a's median, with a percentile bootstrap interval that resamples a and b independently
    (two separate runs, e.g. latencies). NaNs are dropped; values must be positive; the interval is
    (nan, nan) with fewer than 2 values on a side."""
    a, b = _positive(a, "a"), _positive(b, "b")
    if len(a) == 0 or len(b) == 0:
        return (float("nan"), float("nan"), float("nan"))
    ratio = float(np.median(b) / np.median(a))
    if len(a) < 2 or len(b) < 2:
        return (ratio, float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    a_medians = np.median(a[rng.integers(0, len(a), size=(n_resamples, len(a)))], axis=1)
    b_medians = np.median(b[rng.integers(0, len(b), size=(n_resamples, len(b)))], axis=1)
    low, high = np.quantile(b_medians / a_medians, [(1 - level) / 2, (1 + level) / 2])
    return (ratio, float(low), float(high))


def paired_ratio(a: Sequence[float], b: Sequence[float], *, level: float = 0.95) -> tuple[float, float, float]:
    """For pairs (a_i, b_i), e.g. the same round of an interleaved study: the median of b_i / a_i with its
    order-statistic interval (``median_ci``). Pairs with a NaN are dropped; values must be positive."""
    if len(a) != len(b):
        raise ConfigError(f"paired_ratio needs pairs: a has {len(a)} values, b has {len(b)}")
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    keep = ~(np.isnan(a) | np.isnan(b))
    ratios = _positive(b[keep], "b") / _positive(a[keep], "a")
    if len(ratios) == 0:
        return (float("nan"), float("nan"), float("nan"))
    return (float(np.median(ratios)), *median_ci(ratios, level=level))


def _positive(values: Sequence[float], name: str) -> np.ndarray:
    x = np.asarray(values, dtype=float)
    x = x[~np.isnan(x)]
    if np.any(x <= 0):
        raise ConfigError(f"{name} must hold positive values for a ratio, got {x[x <= 0][:3].tolist()}", field=name)
    return x


# --- tests and power --------------------------------------------------------------------------------


def unanimous_bound(n, level: float = 0.95):
    """Clopper–Pearson's lower bound for a share seen ``n`` times out of ``n`` (1 minus it: the upper bound for 0
    out of ``n``), where resampling the outcomes cannot vary them; ``n`` may be an array."""
    return ((1 - level) / 2) ** (1 / n)


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


def min_prompts(*, alpha: float = 0.05, comparisons: int = 1) -> int:
    """The fewest prompts at which the exact two-sided signed-rank test can give a Holm-adjusted p below
    ``alpha`` over ``comparisons`` comparisons: its smallest p is 2 / 2**n, and Holm's worst case
    multiplies it by the number of comparisons (6 prompts for one comparison at 0.05)."""
    _check_alpha(alpha)
    if not isinstance(comparisons, int | np.integer) or comparisons < 1:
        raise ConfigError(f"comparisons must be a whole number >= 1, got {comparisons!r}", field="comparisons")
    n = 1
    while comparisons * 2 / 2**n >= alpha:
        n += 1
    return n


def paired_statistics(
    differences: Sequence[float],
    *,
    seed: int = 0,
    alpha: float = 0.05,
    comparisons: int = 1,
    method: str = INTERVAL,
    lower_is_better: bool = False,
    bounds: tuple[float, float] | None = None,
) -> dict[str, float]:
    """For paired per-prompt differences (group - reference) of a metric with ``bounds`` (low, high), where
    its range is known:

    - mean_diff, ci_low, ci_high: the mean with its 95% interval (``difference_ci`` by ``method``:
      ``bounded_ci`` for a metric with bounds; never zero-width from differences that are all 0);
    - p_value: Wilcoxon signed-rank, two-sided, zeros dropped (1.0 when all differences are 0, nan with
      fewer than 2);
    - win_rate: the share of prompts where the group is better (above 0, or below where
      ``lower_is_better``), ties counting half;
    - n_prompts, and n_differing: the prompts whose difference is not 0 (the signed-rank test's);
    - min_detectable: the smallest true mean difference found with 80% power by a two-sided test at
      alpha / comparisons (Holm's worst case), from the per-prompt SD: (t_{1-a/2,n-1} + t_{0.8,n-1}) *
      sd / sqrt(n); nan with fewer than 2 prompts or when the differences do not vary;
    - prompts_needed: the larger of ``min_prompts`` and the prompts that give 80% power for the observed
      mean difference and SD (just ``min_prompts`` when the differences do not vary); nan when the mean
      difference is 0 (no study detects it) or there are fewer than 2 prompts.
    """
    diff = np.asarray(differences, dtype=float)
    n = len(diff)
    nan = float("nan")
    if n == 0:
        return dict.fromkeys(["mean_diff", "ci_low", "ci_high", "p_value", "win_rate"], nan) | {
            "n_prompts": 0,
            "n_differing": 0,
            "min_detectable": nan,
            "prompts_needed": nan,
        }
    low, high = difference_ci(diff, bounds, method=method, seed=seed)
    if np.all(diff == 0):
        p_value = 1.0  # identical groups: no evidence of any difference
    elif n < 2:
        p_value = nan
    else:
        p_value = float(sps.wilcoxon(diff, zero_method="wilcox", alternative="two-sided").pvalue)
    wins = np.mean(diff < 0) if lower_is_better else np.mean(diff > 0)
    mean, sd = float(diff.mean()), float(diff.std(ddof=1)) if n > 1 else nan
    level = alpha / comparisons
    return {
        "mean_diff": mean,
        "ci_low": low,
        "ci_high": high,
        "p_value": p_value,
        "win_rate": float(wins + 0.5 * np.mean(diff == 0)),  # ties count half
        "n_prompts": n,
        "n_differing": int(np.count_nonzero(diff)),
        "min_detectable": _power_factor(n, level) * sd / math.sqrt(n) if n > 1 and sd > 0 else nan,
        "prompts_needed": _prompts_needed(mean, sd, alpha, comparisons),
    }


def _power_factor(n: int, alpha: float) -> float:
    """t_{1-alpha/2, n-1} + t_{power, n-1}: the detectable difference in standard errors."""
    return float(sps.t.ppf(1 - alpha / 2, n - 1) + sps.t.ppf(POWER, n - 1))


def _prompts_needed(mean: float, sd: float, alpha: float, comparisons: int) -> float:
    if mean == 0 or math.isnan(sd):
        return float("nan")
    floor = min_prompts(alpha=alpha, comparisons=comparisons)
    if sd == 0:
        return floor
    level, effect = alpha / comparisons, abs(mean) / sd
    if effect < 1e-6:  # a difference lost in rounding (a million million prompts): no effect to power for
        return float("nan")
    # the normal approximation is a lower bound; step up to the first n the t quantiles allow (t is the
    # normal's to many digits long before a million prompts)
    n = max(2, math.floor((sps.norm.ppf(1 - level / 2) + sps.norm.ppf(POWER)) ** 2 / effect**2))
    while n < 1_000_000 and _power_factor(n, level) / math.sqrt(n) > effect:
        n += 1
    return max(n, floor)


def _check_alpha(alpha: float) -> None:
    if not 0 < alpha < 1:
        raise ConfigError(f"alpha must lie strictly between 0 and 1, got {alpha!r}", field="alpha")


# --- tables -----------------------------------------------------------------------------------------


def per_prompt(rows: pd.DataFrame, *, by: str, metric: str) -> pd.DataFrame:
    """Index prompt_id, one column per value of ``by`` (in order of first appearance), the metric's mean
    over seeds; only rows with status ``ok`` when there is a status column."""
    for column in ("prompt_id", by, metric):
        if column not in rows:
            raise ConfigError(f"rows have no column {column!r}; columns: {list(rows.columns)}", field=column)
    ok = rows[rows["status"] == "ok"] if "status" in rows else rows
    table = ok.assign(**{metric: ok[metric].astype(float)}).groupby(["prompt_id", by], sort=False)[metric].mean()
    return table.unstack(by).reindex(columns=list(dict.fromkeys(ok[by])))


_COLUMNS = ["mean_diff", "ci_low", "ci_high", "p_value", "p_holm", "win_rate", "n_prompts", "n_differing",
            "min_detectable", "prompts_needed"]  # fmt: skip


def compare_groups(
    rows: pd.DataFrame,
    *,
    by: str,
    reference: str,
    metrics: Iterable[str] = ("clip_score",),
    seed: int = 0,
    alpha: float = 0.05,
    lower_is_better: Iterable[str] = (),
    method: str = INTERVAL,
    bounds: Mapping[str, tuple[float, float]] | None = None,
) -> pd.DataFrame:
    """One row per metric and group other than ``reference``: metric, <by>, reference, then the
    ``paired_statistics`` of group - reference over the prompts both have (seeds averaged first), with
    p_holm adjusted across every row (all metrics and groups), win_rate by each metric's direction and the
    interval by its range where ``bounds`` gives one (metric -> (low, high), e.g. the registry's
    ``metric_bounds``). Metrics that are absent or all NaN are skipped."""
    _check_alpha(alpha)
    metrics = [metrics] if isinstance(metrics, str) else list(metrics)
    lower = set([lower_is_better] if isinstance(lower_is_better, str) else lower_is_better)
    bounds = dict(bounds or {})
    if by not in rows:
        raise ConfigError(f"rows have no column {by!r}; columns: {list(rows.columns)}", field="by")
    ok = rows[rows["status"] == "ok"] if "status" in rows else rows
    groups = list(dict.fromkeys(ok[by]))
    if reference not in groups:
        raise ConfigError(
            f"the reference {by} {reference!r} has no scored rows; {by} values: {groups}", field="reference"
        )
    pairs = []
    for metric in metrics:
        if metric not in ok or ok[metric].isna().all():
            continue
        table = per_prompt(ok, by=by, metric=metric)
        for group in (g for g in groups if g != reference):
            paired = table[[group, reference]].dropna()
            pairs.append((metric, group, (paired[group] - paired[reference]).to_numpy()))
    out = []
    for metric, group, diff in pairs:
        statistics = paired_statistics(
            diff, seed=seed, alpha=alpha, comparisons=len(pairs), method=method, lower_is_better=metric in lower,
            bounds=bounds.get(metric),
        )  # fmt: skip
        out.append({"metric": metric, by: group, "reference": reference, **statistics})
    table = pd.DataFrame(out, columns=["metric", by, "reference", *_COLUMNS])
    table["p_holm"] = holm(table["p_value"].fillna(1.0))
    return table


def mean_over_prompts(
    rows: pd.DataFrame, metric: str, *, prefix: str | None = None, method: str = INTERVAL, seed: int = 0
) -> dict[str, float]:
    """{prefix}_mean with {prefix}_ci_low/{prefix}_ci_high: the mean of per-prompt means (seeds averaged
    within a prompt first: prompts are the independent units) with its 95% ``mean_ci``. The prefix is the
    metric by default (clip_score -> clip_score_mean, clip_score_ci_low, clip_score_ci_high)."""
    prefix = metric if prefix is None else prefix
    if metric not in rows:
        raise ConfigError(f"rows have no column {metric!r}; columns: {list(rows.columns)}", field="metric")
    ok = rows[rows["status"] == "ok"] if "status" in rows else rows
    means = ok[metric].astype(float).groupby(ok["prompt_id"]).mean().dropna().to_numpy()
    low, high = mean_ci(means, method=method, seed=seed)
    return {
        f"{prefix}_mean": float(means.mean()) if len(means) else float("nan"),
        f"{prefix}_ci_low": low,
        f"{prefix}_ci_high": high,
    }


# --- words ------------------------------------------------------------------------------------------


def verdict(
    comparisons: pd.DataFrame,
    *,
    by: str,
    alpha: float = 0.05,
    units: Mapping[str, str] | None = None,
    lower_is_better: Iterable[str] = (),
) -> str:
    """Plain words, one line per comparison row (a ``compare_groups`` table): who beats whom, by how much
    (the CI is of the winner's advantage: winner - loser, or loser - winner where lower is better), with
    p (Holm-adjusted when there are several rows) and the number of prompts. Significant means
    p_holm < ``alpha`` and a CI that excludes 0. Without a significant difference the line says what the
    study could have detected; with too few prompts for the signed-rank test to reach ``alpha`` at all,
    it says so and how many prompts are needed. Where prompts tie and fewer differ than the test needs, the
    line says how many the interval rests on ("rests on 2 prompts that differ (14 tie)"), and where none
    differs, that the interval is the metric's range bound on a difference no prompt showed (or that there
    is none, without a known range). ``units`` maps a metric to its unit (default "CLIP points" for
    clip_score, else the metric's name); ``lower_is_better`` names metrics where smaller wins."""
    _check_alpha(alpha)
    missing = [c for c in ["metric", by, "reference", *_COLUMNS] if c not in comparisons]
    if missing:
        raise ConfigError(f"comparisons lack the columns {missing}; make them with compare_groups")
    units = {"clip_score": "CLIP points", **(units or {})}
    lower = set([lower_is_better] if isinstance(lower_is_better, str) else lower_is_better)
    count = len(comparisons)
    floor = min_prompts(alpha=alpha, comparisons=count) if count else 0
    lines = []
    for row in comparisons.to_dict("records"):
        group, reference, metric = row[by], row["reference"], row["metric"]
        unit, diff, low, high = units.get(metric, metric), row["mean_diff"], row["ci_low"], row["ci_high"]
        fmt = _formatter(low, high)
        tail = f"{_p(row['p_holm'])}{' (Holm)' if count > 1 else ''}, {row['n_prompts']} prompts"
        if row["p_holm"] < alpha and (low > 0 or high < 0):
            group_wins = (diff > 0) != (metric in lower)
            winner, loser = (group, reference) if group_wins else (reference, group)
            low, high = (low, high) if diff > 0 else (-high, -low)  # the advantage's interval
            direction = " (lower is better)" if metric in lower else ""
            line = (
                f"{winner} beats {loser} by {fmt(abs(diff))} {unit}{direction}, "
                f"95% CI [{fmt(low)}, {fmt(high)}], {tail}"
            )
        else:
            line = (
                f"no significant difference between {group} and {reference}: {group} - {reference} = "
                f"{fmt(diff, sign=True)} {unit}, 95% CI [{fmt(low)}, {fmt(high)}], {tail}"
            )
            if np.isfinite(row["min_detectable"]) and row["n_differing"] >= min(row["n_prompts"], floor):
                # a few prompts that differ say nothing of the spread of the others: no power figure from them
                line += f"; this study could detect differences of about {fmt(row['min_detectable'])} {unit} or more"
        over = f" over {count} comparisons" if count > 1 else ""
        n, differing = row["n_prompts"], row["n_differing"]
        if differing == 0 and n > 1:
            line += f"; no prompt differs (all {n} tie)" + (
                ": the interval bounds, by the metric's range, a difference none of them showed"
                if np.isfinite(low)
                else f", and {metric} has no known range to bound a difference none of them showed: no interval"
            )
        elif 0 < differing < min(n, floor):
            line += (
                f"; the interval rests on {differing} prompt{'s' if differing > 1 else ''} that differ"
                f"{'' if differing > 1 else 's'} ({n - differing} tie), and the signed-rank test, which leaves "
                f"ties out, cannot reach p < {alpha:g}{over} on fewer than {floor}"
            )
        elif n < floor:
            needed = row["prompts_needed"] if np.isfinite(row["prompts_needed"]) else floor
            line += (
                f"; with {n} prompts the signed-rank test cannot reach p < {alpha:g}{over}: "
                f"it needs at least {int(needed)} prompts"
            )
        lines.append(line)
    return "\n".join(lines)


def _formatter(low: float, high: float):
    """Two decimals, more when the interval is narrower than 0.1 (so its ends differ on the page)."""
    width = high - low
    decimals = 2 if not np.isfinite(width) or width <= 0 else min(6, max(2, 1 - math.floor(math.log10(width))))
    return lambda x, sign=False: "n/a" if np.isnan(x) else f"{x:{'+' if sign else ''}.{decimals}f}"


def format_p(p: float) -> str:
    """A p-value for a table cell: "< 0.001", "0.012", or "n/a" where there is none."""
    return "n/a" if p is None or np.isnan(p) else ("< 0.001" if p < 0.001 else f"{p:.3f}")


def _p(p: float) -> str:
    """A p-value for a sentence: "p < 0.001", "p = 0.012" or "p = n/a" (never "p = < 0.001")."""
    cell = format_p(p)
    return f"p {cell}" if cell.startswith("<") else f"p = {cell}"
