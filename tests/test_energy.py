"""Energy per image where the GPU reports it (NVML's counter, injected here): in the rows, the summary and the
cost table; absent, not zero, where there is no counter or a batch is too short to read."""

import time

import pytest

import workbench as wb
from workbench import system_load
from workbench.evaluation_summary import summarize
from workbench.report_tables import cost_table

PROMPTS = ["a red circle", "a blue square", "a green triangle", "a yellow cross"]
WATTS = 300.0


def run(tmp_path, name):
    config = wb.GenerationConfig(steps=4, batch_size=2)
    return wb.ModelEvaluator(PROMPTS, ["toyworld/sd-small"], [0], config, output_dir=tmp_path / name).run()


def test_energy_is_read_around_each_batch_where_a_counter_reports_it(tmp_path, monkeypatch):
    board = lambda: time.perf_counter() * WATTS  # a board drawing 300 W, in joules
    monkeypatch.setattr("workbench.engine.energy_counter", lambda device: board)
    monkeypatch.setattr(system_load, "MIN_ENERGY_SECONDS", 0.0)
    rows = run(tmp_path, "counted")
    ratio = rows["energy_wh"] / (WATTS * rows["latency_s"] / 3600)  # the block is the timed call and a little more
    assert rows["energy_wh"].notna().all() and ratio.between(0.99, 1.5).all()
    (summary,) = summarize(rows).to_dict(orient="records")
    assert summary["energy_wh_per_image"] == pytest.approx(rows["energy_wh"].mean())
    assert summary["electricity_usd_per_image"] == pytest.approx(summary["energy_wh_per_image"] / 1000 * 0.15)
    assert summary["usd_per_kwh"] == 0.15 and summary["energy_images"] == 4
    assert "at $0.15/kWh; the whole board, NVML" in cost_table(summarize(rows)).data["electricity / image"][0]


def test_no_counter_or_a_batch_too_short_to_read_leaves_the_columns_out(tmp_path, monkeypatch):
    rows = run(tmp_path, "cpu")  # the CPU has no counter
    assert "energy_wh" not in rows and "energy_wh_per_image" not in summarize(rows)
    assert "electricity / image" not in cost_table(summarize(rows)).data
    monkeypatch.setattr("workbench.engine.energy_counter", lambda device: lambda: time.perf_counter() * WATTS)
    monkeypatch.setattr(system_load, "MIN_ENERGY_SECONDS", 3600.0)  # every batch too short for the counter
    assert "energy_wh" not in run(tmp_path, "short")
    assert system_load.energy_counter("cpu") is None and system_load.energy_counter(None) is None
