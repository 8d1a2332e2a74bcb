"""The Explorer: type a prompt, see where it routes, generate with progress, keep a gallery."""

from __future__ import annotations

import html
import io
import random
from dataclasses import dataclass, replace
from pathlib import Path

import ipywidgets as w
from PIL import Image

from workbench.config import AccelerationConfig, GenerationConfig
from workbench.errors import ConfigError
from workbench.plan import ROUTED, Plan, resolve, run_plan
from workbench.widgets.background import Job

__all__ = ["Explorer", "GalleryItem"]

AUTO = w.Layout(width="auto")  # controls as wide as their labels

SIZES = {"model default": None, "32": 32, "64": 64, "128": 128, "256": 256, "512": 512, "768": 768, "1024": 1024}


def png_bytes(image: Image.Image, min_side: int = 160) -> bytes:
    """The image as PNG bytes, enlarged (nearest neighbour) to at least ``min_side`` pixels for display."""
    scale = max(1, min_side // max(image.size))
    buffer = io.BytesIO()
    image.resize((image.width * scale, image.height * scale), Image.NEAREST).save(buffer, format="PNG")
    return buffer.getvalue()


@dataclass
class GalleryItem:
    """One generated image with what made it and its CLIP score (against the prompt as typed)."""

    record: object  # GenerationRecord
    clip_score: float | None
    typed_prompt: str


class Explorer:
    """An interactive generator on the toy world by default (``Explorer()``; display it in a cell).

    ``router`` decides the model and settings unless a model is picked; ``models`` are the ones to pick
    from (default: those that load here; ids such as "toyworld/sd-base@http://gpu-box:8000" generate on a
    server); ``scorer`` gives each image its CLIP score; "save" writes PNGs with their metadata to ``output_dir``.
    """

    def __init__(
        self, router=None, *, models=None, scorer=None, output_dir: str | Path = "outputs/explorer", device=None
    ):
        from workbench.metrics import CLIPScorer
        from workbench.models import available_models
        from workbench.prompts import PromptOptimizer, load_styles
        from workbench.routing import Router

        self.router = router or Router("toyworld", "keyword", device=device)
        self.scorer = scorer if scorer is not None else CLIPScorer("toyworld/clip")
        self.optimizer = PromptOptimizer()
        self.output_dir = Path(output_dir)
        self.device = device
        self.gallery_items: list[GalleryItem] = []
        self.job = Job()

        # Prompt, routing preview, style.
        self.prompt = w.Textarea(placeholder="a photo of a large red circle on the left, on a white background",
                                 layout=w.Layout(width="100%", height="60px"))  # fmt: skip
        self.route_preview = w.HTML()
        self.style = w.Dropdown(options=["(none)", *sorted(load_styles())], value="(none)", description="style")
        self.optimize = w.Checkbox(
            value=False, description="optimize (style, quality words, negative prompt)", indent=False, layout=AUTO
        )
        self.expanded = w.HTML()
        # Model and settings.
        models = list(models) if models is not None else [m for m in available_models() if m != "toyworld/clip"]
        self.model = w.Dropdown(options=[ROUTED, *models], value=ROUTED, description="model")
        self.seed = w.IntText(value=0, description="seed", layout=w.Layout(width="180px"))
        self.new_seed = w.Checkbox(value=False, description="new seed each time", indent=False, layout=AUTO)
        self.steps = w.IntSlider(value=20, min=1, max=100, description="steps")
        self.guidance = w.FloatSlider(value=5.0, min=0.0, max=15.0, step=0.5, description="guidance")
        self.size = w.Dropdown(options=list(SIZES), value="model default", description="size")
        self.use_route_settings = w.Checkbox(
            value=True, description="use the route's steps and guidance", indent=False, layout=AUTO
        )
        # Acceleration.
        self.deepcache = w.IntSlider(value=1, min=1, max=6, description="DeepCache N")
        self.tome = w.FloatSlider(value=0.0, min=0.0, max=0.7, step=0.1, description="ToMe ratio")
        self.channels_last = w.Checkbox(value=False, description="channels-last", indent=False, layout=AUTO)
        self.first_block_cache = w.FloatSlider(value=0.0, min=0.0, max=1.0, step=0.05, description="FB cache")
        # Actions and the gallery.
        self.generate_button = w.Button(description="Generate", button_style="primary", icon="play")
        self.generate_button.on_click(lambda _: self.generate())
        self.gallery = w.HBox(layout=w.Layout(flex_flow="row wrap"))
        self.code = w.Textarea(layout=w.Layout(width="100%", height="120px", display="none"))

        for control in (self.prompt, self.style, self.optimize, self.model):
            control.observe(lambda _: self.refresh_preview(), names="value")
        self.refresh_preview()

    # --- what a click does (each step a package call) --------------------------------------------------

    def refresh_preview(self) -> None:
        """Show the route the prompt takes (as you type) and the prompt the optimizer would send."""
        text = self.prompt.value.strip()
        if not text:
            self.route_preview.value = "<i>type a prompt to see its route</i>"
            self.expanded.value = ""
            return
        decision = self.router.route(text)
        spec = self.router.table[decision.route]
        model = spec.model_id if self.model.value == ROUTED else self.model.value
        self.route_preview.value = (
            f"route <b>{html.escape(decision.route)}</b> ({decision.confidence:.2f}"
            f"{', fallback' if decision.fallback else ''}) &rarr; {html.escape(model)}"
        )
        prompt, negative = self.final_prompt(text)
        shown = f"prompt: <code>{html.escape(prompt)}</code><br>negative: <code>{html.escape(negative or '')}</code>"
        self.expanded.value = f"<small>{shown}</small>" if self.optimize.value else ""

    def final_prompt(self, text: str) -> tuple[str, str | None]:
        if not self.optimize.value:
            return text, None
        style = None if self.style.value == "(none)" else self.style.value
        return tuple(self.optimizer.optimize(text, style))

    def plan(self) -> Plan:
        """The plan for the current controls: the router's choice or the picked model, and the settings."""
        routed = self.model.value == ROUTED
        config = GenerationConfig(steps=self.steps.value, guidance=self.guidance.value)
        acceleration = AccelerationConfig(
            deepcache_interval=self.deepcache.value,
            tome_ratio=self.tome.value,
            channels_last=self.channels_last.value,
            first_block_cache=self.first_block_cache.value,
        )
        plan = resolve(
            self.router if routed else self.model.value, self.prompt.value.strip(), config,
            acceleration=acceleration, route_settings=self.use_route_settings.value,
        )  # fmt: skip
        size = SIZES[self.size.value]
        return replace(plan, config=plan.config.replace(width=size, height=size, batch_size=1))

    def generate(self) -> None:
        """Start generating the current prompt (off the main thread); ``job.wait()`` waits for it."""
        self.job.start(self._generate, [self.generate_button])

    def _generate(self) -> str:
        text = self.prompt.value.strip()
        if not text:
            raise ConfigError("type a prompt first")
        if self.new_seed.value:
            self.seed.value = random.randrange(2**31)
        plan = self.plan()
        style = None if self.style.value == "(none)" else self.style.value
        (record,) = run_plan(
            plan, text, self.seed.value, optimize=self.optimize.value, style=style if self.optimize.value else None,
            device=self.device, progress=self.job.progress, cancel=self.job.cancel,
        )  # fmt: skip
        score = self.scorer.score([record.image], [text]).scores[0] if self.scorer else None
        self._add(GalleryItem(record, score, text))
        return f"{plan.model_id}, seed {record.seed}: {record.latency_s:.2f} s" + (
            f", CLIP {score:.1f}" if score else ""
        )

    def save(self, item: GalleryItem) -> Path:
        from workbench.generation import save_image

        path = save_image(item.record, self.output_dir)
        self.job.say(f"saved {path}")
        return path

    def copy_settings(self, item: GalleryItem) -> str:
        """Show (and return) the workbench call that makes this image again."""
        from workbench.generation import reproduction_code

        self.code.value = reproduction_code(item.record)
        self.code.layout.display = None
        return self.code.value

    # --- layout ----------------------------------------------------------------------------------------

    def _add(self, item: GalleryItem) -> None:
        self.gallery_items.append(item)
        record = item.record
        caption = w.HTML(
            f"<small><b>{html.escape(record.model_id)}</b> seed {record.seed}, {record.config.steps} steps, "
            f"guidance {record.config.guidance}<br>{html.escape(record.prompt)}"
            + (f"<br>CLIP {item.clip_score:.1f}" if item.clip_score is not None else "")
            + (f", {html.escape(record.acceleration.label())}" if record.acceleration else "")
            + "</small>",
            layout=w.Layout(width="200px"),
        )
        save, copy = (
            w.Button(description="save", icon="save"),
            w.Button(description="copy settings", icon="copy", layout=AUTO),
        )
        save.on_click(lambda _: self.save(item))
        copy.on_click(lambda _: self.copy_settings(item))
        picture = w.Image(value=png_bytes(record.image), format="png", layout=w.Layout(width="160px"))
        card = w.VBox([picture, caption, w.HBox([save, copy])], layout=w.Layout(margin="4px", width="210px"))
        self.gallery.children = (card, *self.gallery.children)

    def view(self) -> w.Widget:
        settings = w.VBox([w.HBox([self.model, self.use_route_settings]), w.HBox([self.seed, self.new_seed]),
                           self.steps, self.guidance, self.size])  # fmt: skip
        speed = w.VBox([w.HTML("UNets"), self.deepcache, self.tome, self.channels_last,
                        w.HTML("transformers (FLUX-type)"), self.first_block_cache])  # fmt: skip
        tabs = w.Tab([settings, speed])
        tabs.set_title(0, "model and settings")
        tabs.set_title(1, "acceleration")
        return w.VBox(
            [self.prompt, self.route_preview, w.HBox([self.style, self.optimize]), self.expanded, tabs,
             w.HBox([self.generate_button]), self.job.view(), self.gallery, self.code]
        )  # fmt: skip

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.view())
