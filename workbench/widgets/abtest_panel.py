"""The A/B test panel: base prompts and variations in, verdict, table, plots and grid out."""

from __future__ import annotations

import html
import io

import ipywidgets as w

from workbench.errors import ConfigError
from workbench.widgets.background import Job
from workbench.widgets.explorer import png_bytes

__all__ = ["ABTestPanel", "parse_variations"]


def parse_variations(text: str) -> dict[str, str]:
    """Lines of ``name: template`` (the first is the control) as an ordered mapping."""
    arms = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        name, sep, template = line.partition(":")
        if not sep or not name.strip() or not template.strip():
            raise ConfigError(f"variation line {number} must read 'name: template with {{prompt}}', got {line!r}")
        arms[name.strip()] = template.strip()
    return arms


class ABTestPanel:
    """Runs ``PromptABTester`` on ``model`` (toy world sd-small by default) with the panel's inputs."""

    def __init__(self, model: str = "toyworld/sd-small", *, scorer=None, device=None):
        from workbench.metrics import CLIPScorer

        self.model, self.device = model, device
        self.scorer = scorer if scorer is not None else CLIPScorer("toyworld/clip")
        self.job = Job()
        self.result = None
        self.base_prompts = w.Textarea(
            value="a large red circle in the centre, on a white background\n"
            "a small blue square on the left, on a black background\n"
            "a large green triangle at the top, on a grey background",
            description="prompts",
            layout=w.Layout(width="100%", height="90px"),
        )
        self.variations = w.Textarea(
            value="plain: {prompt}\nphoto: a photo of {prompt}", description="arms",
            layout=w.Layout(width="100%", height="70px"),
        )  # fmt: skip
        self.seeds = w.IntSlider(value=2, min=1, max=16, description="seeds")
        self.steps = w.IntSlider(value=20, min=1, max=100, description="steps")
        self.run_button = w.Button(description="Run A/B test", button_style="primary", icon="play")
        self.run_button.on_click(lambda _: self.run())
        self.verdict = w.HTML()
        self.table = w.HTML()
        self.plot = w.Image(format="png")
        self.grid = w.Image(format="png")

    def run(self) -> None:
        self.job.start(self._run, [self.run_button])

    def _run(self) -> str:
        from matplotlib.figure import Figure

        from workbench.abtest import PromptABTester
        from workbench.config import GenerationConfig
        from workbench.models import load
        from workbench.plots import ab_distributions, ab_image_grid, ab_paired_lines

        prompts = [p.strip() for p in self.base_prompts.value.splitlines() if p.strip()]
        if not prompts:
            raise ConfigError("give at least one base prompt (one per line)")
        arms = parse_variations(self.variations.value)
        tester = PromptABTester(
            load(self.model, device=self.device), self.scorer, config=GenerationConfig(steps=self.steps.value)
        )
        result = tester.run(prompts, arms, list(range(self.seeds.value)), progress=self.job.progress)
        self.result = result
        self.verdict.value = "<b>" + "<br>".join(html.escape(line) for line in result.verdict.splitlines()) + "</b>"
        self.table.value = result.summary.to_html(index=False, float_format="{:.2f}".format)
        figure = Figure(figsize=(11, 3.6))  # not pyplot: this runs off the main thread
        axes = figure.subplots(1, 2)
        ab_distributions(result, ax=axes[0])
        ab_paired_lines(result, ax=axes[1])
        figure.tight_layout()
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=90)
        self.plot.value = buffer.getvalue()
        self.grid.value = png_bytes(ab_image_grid(result), min_side=0)
        return f"{len(result.rows)} images scored"

    def view(self) -> w.Widget:
        return w.VBox([self.base_prompts, self.variations, w.HBox([self.seeds, self.steps]), self.run_button,
                       self.job.view(), self.verdict, self.table, self.plot, self.grid])  # fmt: skip

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.view())
