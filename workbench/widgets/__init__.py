"""JupyterLab widgets: thin views over the package's functions, with the work off the kernel's main thread.

- ``Explorer``: prompt, live routing preview, style and optimizer, model, acceleration, seed and settings;
  Generate with progress and Cancel; a gallery with each image's settings, CLIP score, save and
  "copy settings" (the workbench call that makes it again).
- ``ABTestPanel``: base prompts and variations -> ``PromptABTester`` -> verdict, table, plots, grid.
- ``AccelerationPanel``: toggles -> ``benchmark_acceleration`` against the baseline, images side by side.
- ``RatingPanel``: a rating task's items, blind, rated by one rater with buttons or keys (``wb.RatingPanel``).
"""

from workbench.widgets.abtest_panel import ABTestPanel
from workbench.widgets.acceleration_panel import AccelerationPanel
from workbench.widgets.background import Job
from workbench.widgets.explorer import Explorer
from workbench.widgets.rating_panel import RatingPanel

__all__ = ["ABTestPanel", "AccelerationPanel", "Explorer", "Job", "RatingPanel"]
