"""Latency per batch and per model: medians with CIs, ratios paired by round, the timing's noise in words."""

import pandas as pd
import pytest

from workbench.latency import latency_summary


def test_latency_ratio_pairs_rounds_so_a_slow_patch_of_the_machine_cancels(batched_rows):
    slow = [1, 1, 1, 3, 3, 3, 1, 1]  # the machine slowed down three-fold for rounds 3-5: both models alike
    rows = pd.concat([
        batched_rows("a", [0.1 * f for f in slow], [0.0] * 3 + [0.9] * 3 + [0.0] * 2),
        batched_rows("b", [0.2 * f for f in slow], [0.0] * 3 + [0.9] * 3 + [0.0] * 2),
    ])  # fmt: skip
    table = latency_summary(rows).set_index("model_id")
    assert table.loc["b", "latency_ratio"] == pytest.approx(2.0)
    assert table.loc["b", "latency_ratio_ci_low"] == pytest.approx(2.0)  # every round says 2
    assert table.loc["a", "latency_median_s"] == pytest.approx(0.1) and table.loc["a", "batches"] == 8
    low, high = table.loc["a", ["latency_median_ci_low", "latency_median_ci_high"]]
    assert low <= 0.1 <= high
    assert table.loc["a", "timing_note"].startswith("noisy timing: per-batch latency varies widely")
    assert "from 0% to 90% of the CPU" in table.loc["a", "timing_note"]


def test_steady_timing_and_a_busy_machine_are_said_in_words(batched_rows):
    steady = latency_summary(batched_rows("a", [0.1, 0.101, 0.099, 0.1], [0.05] * 4)).iloc[0]["timing_note"]
    assert steady.startswith("steady timing: interquartile range") and "busy" not in steady
    busy = latency_summary(batched_rows("a", [0.1, 0.101, 0.099, 0.1], [0.6] * 4)).iloc[0]["timing_note"]
    assert busy.startswith("steady timing") and "the machine was busy (other processes used a median 60%" in busy
    few = latency_summary(batched_rows("a", [0.1, 0.2], [0.0] * 2)).iloc[0]["timing_note"]
    assert few == "only 2 batch(es) timed: too few to judge the timing's noise"
