"""Headless: every widget driven as a person would (set values, click) with the results checked."""

import pytest

from workbench.errors import ConfigError
from workbench.generation import read_settings
from workbench.metrics import CLIPScorer
from workbench.widgets import ABTestPanel, AccelerationPanel, Explorer
from workbench.widgets.abtest_panel import parse_variations

PROMPT = "a photo of a large red circle on the left, on a white background"


@pytest.fixture(scope="module")
def scorer():
    return CLIPScorer("toyworld/clip")


@pytest.fixture
def explorer(scorer, tmp_path):
    return Explorer(scorer=scorer, output_dir=tmp_path, device="cpu")


def test_routing_preview_follows_the_prompt_as_typed(explorer):
    assert "type a prompt" in explorer.route_preview.value
    explorer.prompt.value = "an oil painting of a lighthouse"
    assert (
        "route <b>artistic</b>" in explorer.route_preview.value and "toyworld/sd-small" in explorer.route_preview.value
    )
    explorer.model.value = "toyworld/sd-base"
    assert "toyworld/sd-base" in explorer.route_preview.value
    explorer.style.value, explorer.optimize.value = "sketch", True
    assert (
        "a sketch of an oil painting of a lighthouse" in explorer.expanded.value
        and "negative" in explorer.expanded.value
    )


def test_generate_adds_an_image_with_settings_clip_score_save_and_copy(explorer, tmp_path):
    explorer.prompt.value = PROMPT
    explorer.model.value, explorer.steps.value, explorer.seed.value = "toyworld/sd-small", 8, 42
    explorer.deepcache.value = 2
    explorer.generate_button.click()
    explorer.job.wait(120)
    assert explorer.job.error is None, explorer.job.error
    assert len(explorer.gallery_items) == 1 and len(explorer.gallery.children) == 1
    item = explorer.gallery_items[0]
    assert item.record.seed == 42 and item.record.config.steps == 8 and item.clip_score > 50
    assert item.record.acceleration.deepcache_interval == 2
    assert explorer.job.progress_bar.value == explorer.job.progress_bar.max == 8
    assert "seed 42" in explorer.job.status.value and "CLIP" in explorer.job.status.value
    save_button, copy_button = explorer.gallery.children[0].children[2].children
    save_button.click()
    saved = read_settings(next(tmp_path.glob("*.png")))
    assert saved["seed"] == 42 and saved["acceleration"]["deepcache_interval"] == 2
    copy_button.click()
    assert "seeds=[42]" in explorer.code.value and "wb.AccelerationConfig(deepcache_interval=2)" in explorer.code.value
    namespace = {}
    exec(explorer.code.value, namespace)  # the copied settings really make the same image
    assert namespace["records"][0].image.tobytes() == item.record.image.tobytes()


def test_the_explorer_generates_with_the_toy_dit_and_its_cache(explorer):
    explorer.prompt.value = PROMPT
    explorer.model.value, explorer.steps.value, explorer.first_block_cache.value = "toyworld/dit-small", 6, 0.2
    explorer.generate_button.click()
    explorer.job.wait(120)
    assert explorer.job.error is None, explorer.job.error
    record = explorer.gallery_items[0].record
    assert record.model_id == "toyworld/dit-small" and record.acceleration.first_block_cache == 0.2
    assert record.batch == ((PROMPT, record.seed),) and explorer.job.progress_bar.value == 6


def test_routed_generation_records_the_route_and_uses_its_settings(explorer):
    explorer.prompt.value = "a sketch of a small green triangle at the top, on a black background"
    explorer.generate_button.click()
    explorer.job.wait(120)
    record = explorer.gallery_items[-1].record
    assert record.context["route"] == "artistic" and record.model_id == "toyworld/sd-small"
    assert record.config.guidance == 6.0  # the artistic route's setting


def test_cancel_stops_within_a_step_and_says_so(explorer):
    explorer.prompt.value = PROMPT
    explorer.model.value, explorer.steps.value = "toyworld/sd-base", 100
    explorer.job.progress_bar.observe(lambda change: change["new"] >= 2 and explorer.job.cancel_button.click(), "value")
    explorer.generate_button.click()
    explorer.job.wait(120)
    assert "cancelled" in explorer.job.status.value and explorer.gallery_items == []
    assert explorer.job.progress_bar.value < 100 and not explorer.generate_button.disabled


def test_errors_show_in_words_inside_the_widget(explorer):
    explorer.generate_button.click()  # no prompt yet
    explorer.job.wait(30)
    assert "error: type a prompt first" in explorer.job.status.value and "Traceback" not in explorer.job.status.value
    explorer.prompt.value, explorer.model.value, explorer.size.value = PROMPT, "toyworld/sd-small", "32"
    explorer.deepcache.value = 3
    explorer.tome.value = 0.5
    explorer.steps.value = 4
    explorer.generate_button.click()
    explorer.job.wait(60)
    assert explorer.job.error is None and explorer.gallery_items[-1].record.acceleration.tome_ratio == 0.5


def test_ab_panel_runs_the_tester_and_shows_verdict_table_plot_grid(scorer):
    panel = ABTestPanel(scorer=scorer, device="cpu")
    panel.variations.value = "right: {prompt}\nwrong: a {prompt} of a blue square"
    panel.seeds.value, panel.steps.value = 1, 6
    panel.run_button.click()
    panel.job.wait(180)
    assert panel.job.error is None, panel.job.error
    assert "right beats wrong" in panel.verdict.value or "no significant difference" in panel.verdict.value
    assert "<table" in panel.table.value and "right" in panel.table.value
    assert panel.plot.value[:4] == panel.grid.value[:4] == b"\x89PNG"
    panel.variations.value = "only one line"
    panel.run_button.click()
    panel.job.wait(30)
    assert "variation line 1 must read 'name: template" in panel.job.status.value


def test_parse_variations_keeps_order_and_names_the_bad_line():
    assert list(parse_variations("b: x {prompt}\n\na: {prompt}")) == ["b", "a"]
    with pytest.raises(ConfigError, match="variation line 2"):
        parse_variations("a: {prompt}\nnonsense")


def test_acceleration_panel_compares_with_the_baseline_side_by_side(scorer):
    panel = AccelerationPanel(scorer=scorer, device="cpu")
    panel.steps.value, panel.deepcache.value = 9, 3
    panel.run_button.click()
    panel.job.wait(120)
    assert panel.job.error is None, panel.job.error
    assert "deepcache_interval=3" in panel.figures.value and "x UNet2DConditionModel" in panel.figures.value
    assert panel.baseline_image.value != panel.accelerated_image.value
    panel.dtype.value = "float16"  # refused on the CPU, in words
    panel.run_button.click()
    panel.job.wait(30)
    assert "error: float16 on the CPU" in panel.job.status.value
