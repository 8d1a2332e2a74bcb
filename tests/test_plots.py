import pandas as pd
from PIL import Image

from workbench import plots


def test_grid_layout():
    images = [Image.new("RGB", (8, 8), c) for c in ("red", "green", "blue")]
    grid = plots.image_grid(images, cols=2, scale=2, pad=1)
    assert grid.size == (2 * 17 + 1, 2 * 17 + 1)
    assert grid.getpixel((2, 2)) == (255, 0, 0)


def test_study_figures_draw_from_tidy_results():
    summary = pd.DataFrame(
        {
            "model_id": ["a", "b"],
            "latency_mean_s": [0.1, 0.3],
            "clip_mean": [20.0, 25.0],
            "clip_ci_low": [19.0, 24.0],
            "clip_ci_high": [21.0, 26.0],
        }
    )
    assert plots.latency_vs_clip(summary).axes[0].get_xlabel().startswith("mean latency")
    results = pd.DataFrame(
        {
            "model_id": ["a", "a", "b", "b"],
            "category": ["x", "y", "x", "y"],
            "clip_score": [1.0, 2.0, 3.0, 4.0],
            "status": ["ok"] * 4,
        }
    )
    assert len(plots.clip_by_category(results).axes[0].patches) >= 4
