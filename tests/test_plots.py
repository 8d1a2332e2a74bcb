import pandas as pd
import pytest
from PIL import Image

from workbench import plots
from workbench.costs import ApiPrice, Prices
from workbench.errors import ConfigError
from workbench.stats import INTERVAL, describe_interval


def test_grid_layout():
    images = [Image.new("RGB", (8, 8), c) for c in ("red", "green", "blue")]
    grid = plots.image_grid(images, cols=2, scale=2, pad=1)
    assert grid.size == (2 * 17 + 1, 2 * 17 + 1)
    assert grid.getpixel((2, 2)) == (255, 0, 0)


def test_grid_labels_wrap_onto_more_lines_instead_of_being_cut():
    from PIL import ImageDraw

    label = "tome_ratio=0.5, deepcache_interval=3, dtype=bfloat16, channels_last"
    images = [Image.new("RGB", (32, 32), "red")] * 2
    lines = plots.grids._wrap(label, 96, ImageDraw.Draw(Image.new("RGB", (1, 1))).textlength)
    assert len(lines) > 1 and "".join(lines).replace(" ", "") == label.replace(" ", "")  # every character kept
    assert all(ImageDraw.Draw(Image.new("RGB", (1, 1))).textlength(line) <= 96 for line in lines)
    one_line = plots.image_grid(images, cols=2, scale=3, labels=["baseline", "x"])
    wrapped = plots.image_grid(images, cols=2, scale=3, labels=["baseline", label])
    assert wrapped.size[1] - one_line.size[1] == 12 * (len(lines) - 1)


def test_acceleration_images_label_each_config_in_full():
    from types import SimpleNamespace

    labels = ["baseline", "tome_ratio=0.5, deepcache_interval=3, dtype=bfloat16, channels_last"]
    images = {(label, "p", 0): Image.new("RGB", (32, 32), "blue") for label in labels}
    bench = SimpleNamespace(images=images, table=pd.DataFrame({"config": labels}))
    grid = plots.acceleration_images(bench)
    assert grid.size == plots.image_grid(list(images.values()), cols=2, scale=3, labels=labels).size
    assert grid.size[1] > plots.image_grid(list(images.values()), cols=2, scale=3, labels=["a", "b"]).size[1]


def test_study_figures_draw_from_tidy_results():
    summary = pd.DataFrame(
        {
            "model_id": ["a", "b"],
            "latency_mean_s": [0.1, 0.3],
            "clip_score_mean": [20.0, 25.0],
            "clip_score_ci_low": [19.0, 24.0],
            "clip_score_ci_high": [21.0, 26.0],
        }
    )
    assert plots.latency_vs_quality(summary).axes[0].get_xlabel().startswith("mean latency")
    results = pd.DataFrame(
        {
            "model_id": ["a", "a", "b", "b"],
            "category": ["x", "y", "x", "y"],
            "clip_score": [1.0, 2.0, 3.0, 4.0],
            "status": ["ok"] * 4,
        }
    )
    assert len(plots.metric_by_category(results).axes[0].patches) >= 4


def test_cost_vs_quality_draws_models_as_points_and_apis_as_lines():
    summary = pd.DataFrame(
        {
            "model_id": ["a", "b"],
            "usd_per_1000": [0.5, 2.0],
            "clip_score_mean": [20.0, 25.0],
            "clip_score_ci_low": [19.0, 24.0],
            "clip_score_ci_high": [21.0, 26.0],
        }
    )
    prices = Prices({}, {"dear": ApiPrice(0.04), "cheap": ApiPrice(0.002)}, 0.5, 730)
    ax = plots.cost_vs_quality(summary, prices=prices)
    assert ax.get_xscale() == "log" and ax.get_xlabel().startswith("$ per 1,000 images")
    texts = [t.get_text() for t in ax.texts]
    assert texts == ["a", "b", "dear", "cheap"]
    lines = [line.get_xdata()[0] for line in ax.get_lines() if line.get_linestyle() == "--"]
    assert sorted(lines) == pytest.approx([2.0, 40.0])  # the APIs' $ per 1,000
    assert len(ax.collections) == 2  # the points and their error bars
    no_ci = plots.cost_vs_quality(summary.drop(columns=["clip_score_ci_low", "clip_score_ci_high"]), ["dear"], prices)
    assert len(no_ci.collections) == 1 and [t.get_text() for t in no_ci.texts] == ["a", "b", "dear"]
    assert "dalle3_hd" in [t.get_text() for t in plots.cost_vs_quality(summary).texts]  # the bundled prices
    same = Prices({}, {"x": ApiPrice(0.04), "y": ApiPrice(0.04)}, 0.5, 730)
    assert [t.get_text() for t in plots.cost_vs_quality(summary, prices=same).texts][2:] == ["x, y"]  # one line a price
    with pytest.raises(ConfigError, match=r"unknown image API.*known: dear, cheap"):
        plots.cost_vs_quality(summary, ["nope"], prices)


def test_ab_report_shows_the_verdict_figures_and_grids_in_order():
    from types import SimpleNamespace

    from IPython.display import Markdown, Pretty
    from matplotlib.figure import Figure

    arms, prompts, seeds = ["A", "B"], ["p0", "p1", "p2", "p3"], [0, 1]
    rows = pd.DataFrame(
        [
            {"arm": a, "prompt_id": p, "pair_seed": s, "base_prompt": f"prompt {p}", "clip_score": i + (a == "B")}
            for i, p in enumerate(prompts)
            for a in arms
            for s in seeds
        ]
    )
    images = {(a, p, s): Image.new("RGB", (8, 8), "red") for a in arms for p in prompts for s in seeds}
    table = pd.DataFrame({"arm": ["B"], "mean_diff": [1.0]})
    result = SimpleNamespace(rows=rows, images=images, control="A", verdict="B beats A", metric="clip_score")
    result.comparisons = result.summary = table
    shown = []
    parts = plots.ab_report(result, n_prompts=2, show=shown.append)
    assert parts == shown
    headings = [p.data.splitlines()[0] for p in parts if isinstance(p, Markdown)]
    assert headings == [
        "## Verdict",
        "## Per-arm clip_score, and the same prompts across arms",
        "## Images: arms (rows) × seeds (columns), for the first prompts",
    ]
    assert [p.data for p in parts if isinstance(p, Pretty)] == ["B beats A", "prompt p0", "prompt p1"]
    (figure,) = [p for p in parts if isinstance(p, Figure)]
    assert [ax.get_title() for ax in figure.axes] == [
        f"clip_score per arm: mean, {describe_interval()}",  # the interval the comparisons use
        "Paired: each line is one prompt",
    ]
    grids = [p for p in parts if isinstance(p, Image.Image)]
    assert len(grids) == 2 and grids[0].size == plots.ab_image_grid(result, "p0").size
    assert parts.index(figure) < parts.index(grids[0])
    note = parts[0].data.split("\n\n", 1)[1]
    assert note == plots.abtest._ab_verdict_note("clip_score") and f"with a {describe_interval()}," in note
    assert "bootstrap" not in note  # the comparisons' interval is the t-interval (stats.INTERVAL)
    assert f"with a {describe_interval(bounded=True)}," in plots.abtest._ab_verdict_note("composition_all")


def test_the_interval_is_described_by_the_method_that_computes_it():
    assert INTERVAL == "t" and describe_interval() == "95% t-interval (Student's t on the standard error)"
    assert "bootstrap" in describe_interval("percentile")
    with pytest.raises(ConfigError, match="method must be one of"):
        describe_interval("wald")


def test_pareto_numbers_clustered_configs_apart_and_keys_them_beside_the_axes():
    import itertools

    configs = ["baseline", *(f"first_block_cache=0.0{i}" for i in range(1, 8)), "steps=10", "mag_cache=0.24"]
    table = pd.DataFrame(
        {
            "config": configs,
            "speedup_total": [1.0, *(1.0 + i / 1000 for i in range(1, 8)), 1.8, 2.1],  # eight within 1% of each other
            "ssim": [1.0, *(1.0 - i / 2000 for i in range(1, 8)), 0.8, 0.85],
            "psnr": [float("nan")] * 10,
        }
    )
    ax = plots.pareto(table)
    ax.figure.tight_layout()
    ax.figure.canvas.draw()
    renderer = ax.figure.canvas.get_renderer()
    assert [t.get_text() for t in ax.texts] == [str(n) for n in range(1, 11)]
    boxes = [t.get_window_extent(renderer) for t in ax.texts]
    assert not any(a.overlaps(b) for a, b in itertools.combinations(boxes, 2))
    points = ax.transData.transform(table[["speedup_total", "ssim"]].to_numpy())
    assert not any(box.contains(x, y) for box in boxes for x, y in points)  # no number hides a point
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["Pareto front", *configs]
    assert plots.pareto(table, y="psnr").get_legend().get_texts()[1:] == []  # configs without a value are left out


def test_the_acceleration_table_is_split_into_two_narrow_ones_that_scroll():
    import re

    figures = {"total_s_per_image": 0.5, "denoiser_s_per_image": 0.4, "speedup_total": 1.0, "speedup_denoiser": 1.0,
               "psnr": 30.0, "ssim": 0.9, "changed": True, "cold_extra_s": 0.0, "steps": 20, "composition_all": 0.8,
               "composition_all_delta": -0.0125, "composition_all_delta_ci_low": -0.05,
               "composition_all_delta_ci_high": 0.025}  # fmt: skip
    rows = [{"model": m, "config": c, **figures} for m in ["dit", "sd"] for c in ["baseline", "steps=10"]]
    html = plots.acceleration_table(pd.DataFrame(rows), ["composition_all", "clip_score"]).data
    tables = re.findall(r"<table.*?</table>", html, flags=re.S)
    assert len(tables) == 2 and html.count('<div style="overflow-x: auto">') == 2
    headers = [re.findall(r'class="col_heading[^>]*>(.*?)</th>', table) for table in tables]
    assert headers[0] == list(plots.acceleration._SPEED_COLUMNS.values())
    assert headers[1] == ["composition_all", "mean", "change [95% CI]"]  # clip_score: not in the table
    assert "-0.013 [-0.050, +0.025]" in tables[1]
    nan = float("nan")  # a change without an interval (no range, no spread): the change alone
    rows[0] |= {"composition_all_delta": 0.0, "composition_all_delta_ci_low": nan, "composition_all_delta_ci_high": nan}
    assert ">+0.000</td>" in plots.acceleration_table(pd.DataFrame(rows), ["composition_all"]).data
    assert re.findall(r'class="row_heading[^>]*>(.*?)</th>', tables[1]) == ["dit", "baseline", "steps=10", "sd",
                                                                              "baseline", "steps=10"]  # fmt: skip
