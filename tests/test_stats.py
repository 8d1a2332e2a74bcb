import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from workbench.errors import ConfigError
from workbench.stats import (
    INTERVAL,
    INTERVALS,
    bounded_ci,
    compare_groups,
    describe_interval,
    difference_ci,
    format_p,
    holm,
    mean_ci,
    mean_over_prompts,
    median_ci,
    min_prompts,
    paired_ratio,
    paired_statistics,
    per_prompt,
    ratio_of_medians,
    verdict,
)

DATA = np.array([1.5, 2.0, -0.5, 3.0, 2.5, 1.0, 0.5, 2.2, 0.1, 1.7, -0.3, 2.9])


def comparison(**values):
    """One compare_groups row (by model_id), with the given values."""
    row = {"metric": "clip_score", "model_id": "B", "reference": "A", "mean_diff": -1.8, "ci_low": -2.5,
           "ci_high": -1.1, "p_value": 0.002, "p_holm": 0.002, "win_rate": 0.1, "n_prompts": 41,
           "n_differing": 41, "min_detectable": 0.9, "prompts_needed": 12}  # fmt: skip
    return pd.DataFrame([row | values])


# --- intervals ------------------------------------------------------------------------------------------


def test_holm_matches_hand_computed_values():
    # sorted p: 0.01, 0.02, 0.04 -> 3*0.01, max(0.03, 2*0.02), max(0.04, 1*0.04); back in input order
    assert holm([0.04, 0.01, 0.02]) == pytest.approx([0.04, 0.03, 0.04])
    assert holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert holm([0.003]) == pytest.approx([0.003])
    assert holm([0.01, 0.5, 0.011]) == pytest.approx([0.03, 0.5, 0.03])  # monotone: 2*0.011 < 3*0.01
    assert holm([]) == []


def test_t_interval_is_scipys_t_interval_on_mean_and_sem():
    expected = sps.t.interval(0.95, len(DATA) - 1, loc=DATA.mean(), scale=sps.sem(DATA))
    assert mean_ci(DATA, method="t") == pytest.approx(expected)
    assert mean_ci(DATA, method="t", level=0.9) == pytest.approx(
        sps.t.interval(0.9, len(DATA) - 1, loc=DATA.mean(), scale=sps.sem(DATA))
    )


def test_bca_is_scipys_bootstrap():
    expected = sps.bootstrap((DATA,), np.mean, method="BCa", n_resamples=4000, rng=np.random.default_rng(7))
    assert mean_ci(DATA, method="bca", seed=7) == pytest.approx(tuple(expected.confidence_interval))


def test_percentile_and_bootstrap_t_by_hand():
    n, rng = len(DATA), np.random.default_rng(3)
    samples = DATA[rng.integers(0, n, size=(4000, n))]
    means = samples.mean(axis=1)
    assert mean_ci(DATA, method="percentile", seed=3) == pytest.approx(tuple(np.quantile(means, [0.025, 0.975])))
    t = (means - DATA.mean()) / (samples.std(axis=1, ddof=1) / math.sqrt(n))
    q_low, q_high = np.quantile(t, [0.025, 0.975], method="inverted_cdf")
    se = DATA.std(ddof=1) / math.sqrt(n)
    assert mean_ci(DATA, method="bootstrap-t", seed=3) == pytest.approx(
        (DATA.mean() - q_high * se, DATA.mean() - q_low * se)
    )
    # two values: half the resamples repeat one value (an infinite t), so the interval is honest: unbounded
    assert mean_ci([1.0, 2.0], method="bootstrap-t") == (-math.inf, math.inf)


@pytest.mark.parametrize("method", INTERVALS)
def test_every_interval_handles_the_edges(method):
    assert all(math.isnan(v) for v in mean_ci([3.0], method=method))
    assert mean_ci([2.5] * 4, method=method) == (2.5, 2.5)
    low, high = mean_ci(DATA, method=method)
    assert low < DATA.mean() < high
    assert mean_ci(DATA, method=method) == mean_ci(DATA, method=method)  # seeded


def test_interval_settings_are_checked():
    assert INTERVAL in INTERVALS
    with pytest.raises(ConfigError, match=r"method must be one of .*'bca'.*got 'normal'"):
        mean_ci(DATA, method="normal")
    with pytest.raises(ConfigError, match="level must lie strictly between 0 and 1, got 95"):
        mean_ci(DATA, level=95)


def test_median_ci_is_the_binomial_order_statistics():
    x = np.random.default_rng(0).permutation(np.arange(20.0)) * 1.5
    # n = 20: P(B <= 5) = 0.0207 <= 0.025 < P(B <= 6) = 0.0577 -> k = 6: [x_(6), x_(15)]
    assert median_ci(x) == (5 * 1.5, 14 * 1.5)
    # n = 10: P(B <= 1) = 11/1024, P(B <= 2) = 56/1024 -> k = 2 at 95% and at 90%
    assert median_ci(np.arange(10.0)) == (1.0, 8.0)
    assert median_ci(np.arange(10.0), level=0.9) == (1.0, 8.0)
    assert median_ci(np.arange(10.0), level=0.8) == (2.0, 7.0)  # P(B <= 2) = 0.0547 <= 0.1
    assert median_ci(np.arange(6.0)) == (0.0, 5.0)  # 2/64 < 0.05: the smallest n at 95%
    assert median_ci([np.nan, *np.arange(6.0), np.nan]) == (0.0, 5.0)  # NaNs dropped
    assert all(math.isnan(v) for v in median_ci(np.arange(5.0)))
    assert median_ci(np.arange(5.0), level=0.9375) == (0.0, 4.0)  # exactly 1 - 2/32


def wilson(losses: int, n: int) -> tuple[float, float]:
    """Wilson's 95% score interval of a share, by its textbook formula."""
    z, share = sps.norm.ppf(0.975), losses / n
    centre, half = share + z**2 / (2 * n), z * math.sqrt(share * (1 - share) / n + z**2 / (4 * n**2))
    return ((centre - half) / (1 + z**2 / n), (centre + half) / (1 + z**2 / n))


def test_bounded_ci_is_never_zero_width_when_no_prompt_differs():
    z2 = sps.norm.ppf(0.975) ** 2
    for n in (2, 16, 50):
        assert bounded_ci(np.zeros(n), 1.0) == pytest.approx((-z2 / (n + z2), z2 / (n + z2)))
        # the rule of three's bound: a loss on more than 1 - 0.025^(1/n) of the prompts would show in 97.5%
        assert z2 / (n + z2) == pytest.approx(1 - 0.025 ** (1 / n), rel=0.35 if n == 2 else 0.1)
    assert bounded_ci(np.zeros(16), 2.0) == pytest.approx(tuple(2 * v for v in bounded_ci(np.zeros(16), 1.0)))
    low, high = bounded_ci([-0.25] * 16, 1.0)  # the same difference everywhere: still an interval around it
    assert low < -0.25 < high < 0
    assert all(math.isnan(v) for v in bounded_ci([0.0], 1.0))


def test_bounded_ci_is_wilsons_interval_for_full_point_losses_and_the_t_interval_on_varied_data():
    for losses in (1, 2, 5):
        d = np.array([-1.0] * losses + [0.0] * (16 - losses))
        share_low, share_high = wilson(losses, 16)
        t_low, t_high = mean_ci(d)
        assert bounded_ci(d, 1.0) == pytest.approx((min(-share_high, t_low), max(-share_low, t_high)))
    varied = np.linspace(-0.3, 0.5, 16)  # every prompt differs, by a spread: the score interval lies inside
    assert bounded_ci(varied, 1.0) == mean_ci(varied)


def test_bounded_ci_keeps_to_the_range():
    assert bounded_ci([-1.0] * 16, 1.0) == (-1.0, pytest.approx(-wilson(16, 16)[0]))
    low, high = bounded_ci([-1.0, 1.0], 1.0, method="bootstrap-t")  # an infinite interval, clipped
    assert (low, high) == (-1.0, 1.0)
    with pytest.raises(ConfigError, match=r"differences must lie within -1 to 1 \(the metric's range\), got \[1.5\]"):
        bounded_ci([0.0, 1.5], 1.0)
    with pytest.raises(ConfigError, match=r"span must be a positive number .*, got 0"):
        bounded_ci([0.0, 0.5], 0)
    with pytest.raises(ConfigError, match="pseudo_prompts must be positive, got 0"):
        bounded_ci([0.0, 0.5], 1.0, pseudo_prompts=0)


def test_bounded_ci_covers_where_one_prompt_in_twenty_loses_a_full_point():
    rng = np.random.default_rng(0)
    samples = -(rng.random((400, 16)) < 0.05).astype(float)  # true mean -0.05
    bounded = [bounded_ci(d, 1.0) for d in samples]
    assert np.mean([low <= -0.05 <= high for low, high in bounded]) > 0.9
    assert np.mean([low <= -0.05 <= high for low, high in map(mean_ci, samples)]) < 0.7  # the t-interval: [0, 0]


def test_difference_ci_bounds_a_metric_with_a_range_and_gives_none_without_one_to_a_sample_without_spread():
    assert difference_ci(DATA / 10, (0, 1)) == bounded_ci(DATA / 10, 1.0)
    assert difference_ci(DATA / 100, (0.0, 0.5)) == bounded_ci(DATA / 100, 0.5)
    assert difference_ci(DATA) == mean_ci(DATA)
    for tied in (np.zeros(8), [2.0] * 8):  # no spread and no range: no interval, never a zero-width one
        assert all(math.isnan(v) for v in difference_ci(tied))
    for bounds in ((1, 0), (0, float("inf")), (0,), ("low", "high")):
        with pytest.raises(ConfigError, match=r"bounds must be \(low, high\) with low < high, got"):
            difference_ci(DATA, bounds)


# --- tests and power --------------------------------------------------------------------------------------


def test_min_prompts_follows_the_exact_signed_rank_minimum():
    assert min_prompts() == 6  # 2/2**5 = 0.0625, 2/2**6 = 0.031
    assert min_prompts(comparisons=3) == 7  # 3 * 2/2**6 = 0.094, 3 * 2/2**7 = 0.047
    assert min_prompts(comparisons=10) == 9
    assert min_prompts(alpha=0.01) == 8
    assert [min_prompts(comparisons=m) for m in (1, 2, 4, 8)] == [6, 7, 8, 9]
    for n in range(2, 7):  # the claim checked against scipy's exact test
        assert sps.wilcoxon(np.arange(1.0, n + 1)).pvalue == pytest.approx(2 / 2**n)
    with pytest.raises(ConfigError, match="comparisons must be a whole number >= 1, got 0"):
        min_prompts(comparisons=0)
    with pytest.raises(ConfigError, match="alpha must lie strictly between 0 and 1"):
        min_prompts(alpha=5)


def test_paired_statistics_agree_with_scipy_and_by_hand():
    diff = np.array([1.5, 2.0, -0.5, 3.0, 2.5, 1.0, 0.5, 2.2])
    stats = paired_statistics(diff)
    assert stats["p_value"] == pytest.approx(sps.wilcoxon(diff).pvalue)
    assert stats["mean_diff"] == pytest.approx(diff.mean())
    assert (stats["ci_low"], stats["ci_high"]) == mean_ci(diff)
    assert stats["win_rate"] == pytest.approx(7 / 8) and stats["n_prompts"] == 8
    assert paired_statistics([1.0, 0.0, -1.0, 0.0])["win_rate"] == pytest.approx(0.5)  # ties count half
    assert paired_statistics([1.0, 0.0, -1.0, -2.0], lower_is_better=True)["win_rate"] == pytest.approx(5 / 8)
    assert stats["n_differing"] == 8 and paired_statistics([1.0, 0.0, -1.0, 0.0])["n_differing"] == 2
    same = paired_statistics(np.zeros(5))  # no difference seen: no interval without a range, a bound with one
    assert same["p_value"] == 1.0 and same["n_differing"] == 0 and math.isnan(same["ci_low"])
    assert (same["ci_low"], same["ci_high"]) != (0.0, 0.0)
    bounded = paired_statistics(np.zeros(5), bounds=(0, 1))
    assert (bounded["ci_low"], bounded["ci_high"]) == bounded_ci(np.zeros(5), 1.0) and bounded["ci_low"] < 0
    assert math.isnan(same["min_detectable"]) and math.isnan(same["prompts_needed"])
    assert math.isnan(paired_statistics([2.0])["p_value"])
    assert paired_statistics([])["n_prompts"] == 0


def test_power_figures_by_hand():
    diff = np.array([1.5, 2.0, -0.5, 3.0, 2.5, 1.0, 0.5, 2.2])
    n, sd = len(diff), diff.std(ddof=1)
    stats = paired_statistics(diff)
    factor = lambda m, a=0.05: sps.t.ppf(1 - a / 2, m - 1) + sps.t.ppf(0.8, m - 1)
    assert stats["min_detectable"] == pytest.approx(factor(n) * sd / math.sqrt(n))
    # prompts_needed: the first n whose detectable difference is at most the observed mean
    needed = next(m for m in range(2, 1000) if factor(m) * sd / math.sqrt(m) <= diff.mean())
    assert stats["prompts_needed"] == max(needed, 6)
    small = paired_statistics(diff * 0.1 + 0.01)  # a small effect needs many prompts
    effect = (diff * 0.1 + 0.01).mean() / (diff * 0.1).std(ddof=1)
    needed = next(m for m in range(2, 1000) if factor(m) / math.sqrt(m) <= effect)
    assert small["prompts_needed"] == needed > 6
    # several comparisons: power at alpha / comparisons, and never fewer than min_prompts
    three = paired_statistics(diff, comparisons=3)
    assert three["min_detectable"] == pytest.approx(factor(n, 0.05 / 3) * sd / math.sqrt(n))
    assert paired_statistics([2.0, 2.0, 2.0])["prompts_needed"] == 6  # no spread: the test's own floor
    rounding = paired_statistics([1.0, -1.0, 2.0, -2.0, 1e-16])  # a mean of rounding error: nothing to power for
    assert math.isnan(rounding["prompts_needed"])
    tiny = paired_statistics([1.0, -1.0, 1.0, -1.0, 0.01])  # a real but tiny effect: a large, finite count
    assert 1e5 < tiny["prompts_needed"] < 1e7


def test_three_prompts_cannot_be_significant_and_the_verdict_says_so():
    diff = np.array([3.1, 2.9, 3.3])  # a large, consistent effect
    stats = paired_statistics(diff)
    assert stats["p_value"] >= 0.25 and stats["ci_low"] > 0
    assert stats["prompts_needed"] == 6
    line = verdict(pd.DataFrame([{"metric": "clip_score", "model_id": "B", "reference": "A", **stats,
                                  "p_holm": stats["p_value"]}]), by="model_id")  # fmt: skip
    assert line.startswith("no significant difference between B and A: B - A = +3.10 CLIP points")
    assert "with 3 prompts the signed-rank test cannot reach p < 0.05: it needs at least 6 prompts" in line


# --- tables ----------------------------------------------------------------------------------------------


def study_rows(n_prompts=12):
    """Three models x two seeds per prompt, CLIP and latency: B is better and faster than A, C the same as A."""
    rng = np.random.default_rng(1)
    rows = []
    for p in range(n_prompts):
        base = rng.normal(30, 3)
        for model, shift, speed in (("A", 0.0, 1.0), ("B", 1.5, 0.5), ("C", 0.0, 1.0)):
            for seed in (0, 1):
                clip, latency = base + shift + rng.normal(0, 0.5), speed + rng.normal(0, 0.02)
                rows.append({"model_id": model, "prompt_id": f"p{p}", "seed": seed, "status": "ok",
                             "clip_score": clip, "latency_s": latency})  # fmt: skip
    return pd.DataFrame(rows)


def test_per_prompt_averages_seeds_keeps_ok_rows_and_first_appearance():
    rows = pd.DataFrame(
        {
            "arm": ["Z"] * 4 + ["A"] * 4,
            "prompt_id": ["p0", "p0", "p1", "p1"] * 2,
            "clip_score": [10, 20, 30, 30, 16, 16, 31, 99],
            "status": ["ok"] * 7 + ["error: OOM"],
        }
    )
    table = per_prompt(rows, by="arm", metric="clip_score")
    assert list(table.columns) == ["Z", "A"]
    assert table.loc["p0"].tolist() == [15, 16] and table.loc["p1"].tolist() == [30, 31]
    with pytest.raises(ConfigError, match="no column 'lpips'"):
        per_prompt(rows, by="arm", metric="lpips")


def test_compare_groups_holm_across_metrics_and_models():
    rows = study_rows()
    table = compare_groups(rows, by="model_id", reference="A", metrics=("clip_score", "latency_s", "absent"),
                           lower_is_better=("latency_s",))  # fmt: skip
    assert list(table.columns) == [
        "metric", "model_id", "reference", "mean_diff", "ci_low", "ci_high", "p_value", "p_holm", "win_rate",
        "n_prompts", "n_differing", "min_detectable", "prompts_needed",
    ]  # fmt: skip
    assert list(zip(table["metric"], table["model_id"], strict=True)) == [
        ("clip_score", "B"), ("clip_score", "C"), ("latency_s", "B"), ("latency_s", "C"),
    ]  # fmt: skip
    assert table["p_holm"].tolist() == pytest.approx(holm(table["p_value"]))  # all four rows together
    means = per_prompt(rows, by="model_id", metric="clip_score")
    assert table.loc[0, "mean_diff"] == pytest.approx((means["B"] - means["A"]).mean())
    assert (table["n_prompts"] == 12).all()
    # B is faster on every prompt: a negative difference, and a win rate of 1 since lower is better
    faster = table.set_index(["metric", "model_id"]).loc[("latency_s", "B")]
    assert faster["mean_diff"] < 0 and faster["win_rate"] == 1.0
    assert table.set_index(["metric", "model_id"]).loc[("clip_score", "B"), "win_rate"] == 1.0
    # power is judged over the four comparisons
    assert faster["prompts_needed"] >= min_prompts(comparisons=4)


def test_compare_groups_bounds_the_interval_of_each_metric_with_a_range():
    rows = study_rows()
    rows["composition_all"] = 1.0
    broken = (rows["model_id"] == "B") & (rows["prompt_id"] == "p3")
    rows.loc[broken, "composition_all"] = 0.0  # B loses a full point on one prompt of 12
    table = compare_groups(rows, by="model_id", reference="A", metrics=("clip_score", "composition_all"),
                           bounds={"composition_all": (0.0, 1.0)}).set_index(["metric", "model_id"])  # fmt: skip
    lost, same = table.loc[("composition_all", "B")], table.loc[("composition_all", "C")]
    diff = np.array([-1.0 if p == 3 else 0.0 for p in range(12)])
    assert (lost["ci_low"], lost["ci_high"]) == bounded_ci(diff, 1.0) and lost["n_differing"] == 1
    assert (same["ci_low"], same["ci_high"]) == bounded_ci(np.zeros(12), 1.0) and same["n_differing"] == 0
    clip = per_prompt(rows, by="model_id", metric="clip_score")
    assert (table.loc[("clip_score", "B"), "ci_low"], table.loc[("clip_score", "B"), "ci_high"]) == mean_ci(
        (clip["B"] - clip["A"]).to_numpy()
    )  # no range given: the t-interval


def test_compare_groups_pairs_only_shared_prompts_and_names_a_missing_reference():
    rows = study_rows()
    rows = rows[~((rows["model_id"] == "B") & rows["prompt_id"].isin(["p0", "p1"]))]
    table = compare_groups(rows, by="model_id", reference="A")
    assert table.set_index("model_id")["n_prompts"].to_dict() == {"B": 10, "C": 12}
    with pytest.raises(
        ConfigError, match=r"reference model_id 'D' has no scored rows; model_id values: \['A', 'C', 'B'\]"
    ):
        compare_groups(rows, by="model_id", reference="D")
    assert compare_groups(rows, by="model_id", reference="A", metrics=("absent",)).empty


def test_mean_over_prompts_keeps_the_clip_key_names():
    rows = study_rows()
    a = rows[rows["model_id"] == "A"]
    summary = mean_over_prompts(a, "clip_score")
    means = a.groupby("prompt_id")["clip_score"].mean()
    assert summary == pytest.approx(
        {
            "clip_score_mean": means.mean(),
            "clip_score_ci_low": mean_ci(means)[0],
            "clip_score_ci_high": mean_ci(means)[1],
        }
    )
    assert set(mean_over_prompts(a, "latency_s", prefix="lat")) == {"lat_mean", "lat_ci_low", "lat_ci_high"}


def test_ratios_on_exact_data():
    assert paired_ratio([1.0] * 8, [1, 2, 3, 4, 5, 6, 7, 8]) == (4.5, 1.0, 8.0)
    assert paired_ratio([2.0] * 10, np.arange(1.0, 11.0) * 2) == (5.5, 2.0, 9.0)  # k = 2 at n = 10
    ratio, low, high = paired_ratio([1.0, 2.0, 4.0], [2.0, 4.0, 8.0])
    assert ratio == 2.0 and math.isnan(low) and math.isnan(high)  # 3 pairs: too few for a 95% interval
    assert ratio_of_medians([1.0, 1.0, 1.0], [2.0, 2.0, 2.0, 2.0]) == (2.0, 2.0, 2.0)
    ratio, low, high = ratio_of_medians([1.0, 2.0, 3.0, 4.0, 100.0], [2.0, 4.0, 6.0, 8.0, 0.1, 9.0, 10.0])
    assert ratio == 2.0 and low < 2.0 < high
    with pytest.raises(ConfigError, match="a has 2 values, b has 3"):
        paired_ratio([1.0, 2.0], [1.0, 2.0, 3.0])
    with pytest.raises(ConfigError, match=r"b must hold positive values for a ratio, got \[0.0\]"):
        ratio_of_medians([1.0, 2.0], [0.0, 2.0])


# --- words -----------------------------------------------------------------------------------------------


def test_verdict_reports_winner_minus_loser_in_words():
    assert verdict(comparison(), by="model_id") == (
        "A beats B by 1.80 CLIP points, 95% CI [1.10, 2.50], p = 0.002, 41 prompts"
    )
    line = verdict(comparison(p_holm=0.2, ci_high=0.4), by="model_id")
    assert line == (
        "no significant difference between B and A: B - A = -1.80 CLIP points, 95% CI [-2.50, 0.40], p = 0.200, "
        "41 prompts; this study could detect differences of about 0.90 CLIP points or more"
    )
    # a CI that excludes 0 is not enough: p_holm must be below alpha too
    assert verdict(comparison(p_holm=0.07), by="model_id").startswith("no significant difference")


def test_verdict_follows_the_metric_direction_and_marks_holm():
    table = pd.concat(
        [
            comparison(),
            comparison(metric="latency_s", mean_diff=-0.3, ci_low=-0.4, ci_high=-0.2, p_holm=0.001),
            comparison(metric="latency_s", model_id="C", mean_diff=0.3, ci_low=0.2, ci_high=0.4, p_holm=0.001),
        ]
    )
    lines = verdict(table, by="model_id", lower_is_better=("latency_s",), units={"latency_s": "s"}).splitlines()
    assert lines[0] == "A beats B by 1.80 CLIP points, 95% CI [1.10, 2.50], p = 0.002 (Holm), 41 prompts"
    assert lines[1] == "B beats A by 0.30 s (lower is better), 95% CI [0.20, 0.40], p = 0.001 (Holm), 41 prompts"
    assert lines[2].startswith("A beats C by 0.30 s (lower is better), 95% CI [0.20, 0.40]")
    with pytest.raises(ConfigError, match=r"lack the columns \['min_detectable'\]"):
        verdict(comparison().drop(columns="min_detectable"), by="model_id")


def test_verdict_reads_p_below_a_thousandth_as_p_less_than():
    line = verdict(comparison(p_holm=0.00002), by="model_id")
    assert "p < 0.001, 41 prompts" in line and "p = <" not in line
    line = verdict(comparison(p_holm=float("nan"), ci_high=0.4), by="model_id")
    assert "p = n/a" in line
    assert [format_p(p) for p in (0.00002, 0.0123, float("nan"))] == ["< 0.001", "0.012", "n/a"]


def test_verdict_shows_narrow_intervals_with_more_decimals():
    line = verdict(comparison(mean_diff=0.0042, ci_low=0.0031, ci_high=0.0053), by="model_id")
    assert line.startswith("B beats A by 0.0042 CLIP points, 95% CI [0.0031, 0.0053]")


def test_verdict_says_when_the_interval_rests_on_few_prompts_that_differ():
    units = {"composition_all": "share of images"}

    def line(differences, bounds=(0.0, 1.0)):
        stats = paired_statistics(differences, bounds=bounds)
        table = pd.DataFrame([{"metric": "composition_all", "model_id": "B", "reference": "A", **stats,
                               "p_holm": stats["p_value"]}])  # fmt: skip
        return verdict(table, by="model_id", units=units)

    assert line(np.zeros(16)) == (
        "no significant difference between B and A: B - A = +0.00 share of images, 95% CI [-0.19, 0.19], "
        "p = 1.000, 16 prompts; no prompt differs (all 16 tie): the interval bounds, by the metric's range, a "
        "difference none of them showed"
    )
    assert line(np.zeros(16), bounds=None).endswith(
        "95% CI [n/a, n/a], p = 1.000, 16 prompts; no prompt differs (all 16 tie), and composition_all has no "
        "known range to bound a difference none of them showed: no interval"
    )
    two = line([-1.0, -0.5] + [0.0] * 14)
    assert "could detect" not in line([-0.01] + [0.0] * 15)  # one prompt's change says nothing of the others' spread
    assert two.endswith(
        "; the interval rests on 2 prompts that differ (14 tie), and the signed-rank test, which leaves ties out, "
        "cannot reach p < 0.05 on fewer than 6"
    )
    assert "rests on 1 prompt that differs (15 tie)" in line([-1.0] + [0.0] * 15)
    assert "rests on" not in line([-1.0] * 6 + [0.0] * 10)  # enough prompts differ for the test
    assert "rests on" not in line([0.1, 0.2, 0.3]) and "with 3 prompts the signed-rank test" in line([0.1, 0.2, 0.3])


def test_the_bounded_interval_is_described_inside_the_t_intervals_words():
    assert describe_interval(bounded=True) == (
        "95% t-interval (Student's t on the standard error; for a metric with a known range, widened to a score "
        "interval on it where few prompts differ)"
    )
