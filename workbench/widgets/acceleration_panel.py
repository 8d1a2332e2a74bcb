"""The acceleration panel: pick toggles, compare with the baseline on the same seed, side by side."""

from __future__ import annotations

import ipywidgets as w

from workbench.config import ATTENTION_BACKENDS, AccelerationConfig
from workbench.widgets.background import Job
from workbench.widgets.explorer import AUTO, png_bytes

__all__ = ["AccelerationPanel"]


class AccelerationPanel:
    """Runs ``benchmark_acceleration`` for the chosen toggles against the baseline on ``model``."""

    def __init__(self, model: str = "toyworld/sd-small", *, scorer=None, device=None):
        from workbench.metrics import CLIPScorer

        self.model, self.device = model, device
        self.scorer = scorer if scorer is not None else CLIPScorer("toyworld/clip")
        self.job = Job()
        self.benchmark = None
        self.prompt = w.Text(value="a photo of a large red circle on the left, on a white background",
                             description="prompt", layout=w.Layout(width="100%"))  # fmt: skip
        self.seed = w.IntText(value=0, description="seed")
        self.steps = w.IntSlider(value=25, min=2, max=100, description="steps")
        # UNet toggles, then a transformer cache (each is refused, in words, on the other kind of model)
        self.deepcache = w.IntSlider(value=1, min=1, max=6, description="DeepCache N")
        self.tome = w.FloatSlider(value=0.0, min=0.0, max=0.7, step=0.1, description="ToMe ratio")
        self.first_block_cache = w.FloatSlider(value=0.0, min=0.0, max=1.0, step=0.05, description="FB cache")
        self.channels_last = w.Checkbox(value=False, description="channels-last", indent=False, layout=AUTO)
        self.attention = w.Dropdown(options=list(ATTENTION_BACKENDS), value="sdpa", description="attention")
        self.dtype = w.Dropdown(options=["as loaded", "float32", "bfloat16", "float16"], description="dtype")
        self.run_button = w.Button(description="Compare", button_style="primary", icon="play")
        self.run_button.on_click(lambda _: self.run())
        self.figures = w.HTML()
        self.baseline_image, self.accelerated_image = w.Image(format="png"), w.Image(format="png")

    def config(self) -> AccelerationConfig:
        return AccelerationConfig(
            deepcache_interval=self.deepcache.value,
            tome_ratio=self.tome.value,
            first_block_cache=self.first_block_cache.value,
            channels_last=self.channels_last.value,
            attention_backend=self.attention.value,
            dtype=None if self.dtype.value == "as loaded" else self.dtype.value,
        )

    def run(self) -> None:
        self.job.start(self._run, [self.run_button])

    def _run(self) -> str:
        from workbench.acceleration_benchmark import benchmark_acceleration
        from workbench.config import GenerationConfig
        from workbench.models import denoiser, load

        config = self.config()
        pipe = load(self.model, device=self.device)
        bench = benchmark_acceleration(
            pipe, [self.prompt.value], [self.seed.value], [config],
            config=GenerationConfig(steps=self.steps.value), scorer=self.scorer, rounds=1,
        )  # fmt: skip
        self.benchmark = bench
        row = bench.table.iloc[-1]
        self.figures.value = (
            f"<b>{row['config']}</b>: {row['speedup_total']:.2f}x overall, {row['speedup_denoiser']:.2f}x "
            f"{type(denoiser(pipe)).__name__}; SSIM {row['ssim']:.3f}, PSNR {row['psnr']:.1f} dB, "
            f"CLIP image cosine {row['clip_cosine']:.3f}, CLIP score {row['clip_score_delta']:+.2f}"
        )
        label = bench.table["config"].iloc[-1]
        self.baseline_image.value = png_bytes(bench.images[("baseline", self.prompt.value, self.seed.value)])
        self.accelerated_image.value = png_bytes(bench.images[(label, self.prompt.value, self.seed.value)])
        return "compared with the baseline (one round: for careful timings use benchmarks/acceleration.py)"

    def view(self) -> w.Widget:
        toggles = w.HBox(
            [
                w.VBox([self.deepcache, self.tome, self.first_block_cache]),
                w.VBox([self.attention, self.dtype, self.channels_last]),
            ]
        )
        images = w.HBox([w.VBox([w.HTML("baseline"), self.baseline_image]),
                         w.VBox([w.HTML("accelerated"), self.accelerated_image])])  # fmt: skip
        return w.VBox([self.prompt, w.HBox([self.seed, self.steps]), toggles, self.run_button, self.job.view(),
                       self.figures, images])  # fmt: skip

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.view())
