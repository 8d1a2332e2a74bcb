"""MagCache's magnitude ratios (Ma et al. 2025, "MagCache: Fast Video Generation with Magnitude-Aware Cache"):
measured for a model, and found for the models that ship them.

MagCache skips a transformer step while the error it accumulates stays small, and predicts that error from
how the magnitude of the blocks' residual (tail block output minus head block input, the image tokens)
changes from one step to the next: ``ratio[i] = mean over tokens of |r_i| / |r_(i-1)|``, diffusers'
calibration formula. The ratios belong to a model and its schedule: they are measured once
(``workbench.calibrate_mag_ratios``, a few generations without skipping, through ``MagRatioMeter``) and
interpolated by diffusers to the steps of each call (nearest step: a far smaller step count than the
calibration's underestimates the error of each skipped step).

``mag_ratios_for`` finds a model's own: a ``mag_ratios.json`` in its folder (the toy DiT ships one, written
by its training), or the published ratios of FLUX.1 [dev] and [schnell] (diffusers' ``FLUX_MAG_RATIOS``)
for those hub ids. ``AccelerationConfig.mag_ratios`` given explicitly come first.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import numpy as np
import torch

from workbench.config import AccelerationConfig
from workbench.errors import ConfigError
from workbench.models import denoiser, model_id_of

__all__ = ["MAG_RATIOS_FILE", "MagRatioMeter", "mag_ratios_for", "write_mag_ratios"]

MAG_RATIOS_FILE = "mag_ratios.json"  # in a model's folder: {"mag_ratios": [...], "steps": N, "prompts": M}
_PUBLISHED = ("black-forest-labs/FLUX.1-dev", "black-forest-labs/FLUX.1-schnell")


def mag_ratios_for(pipe) -> tuple[float, ...] | None:
    """The magnitude ratios known for ``pipe``'s model: its folder's ``mag_ratios.json``, or FLUX.1's published
    ones for its hub ids; None when neither applies (measure them with ``workbench.calibrate_mag_ratios``)."""
    folder = getattr(pipe, "name_or_path", None)
    file = Path(folder) / MAG_RATIOS_FILE if folder else None
    if file is not None and file.is_file():
        try:
            ratios = json.loads(file.read_text())["mag_ratios"]
            return AccelerationConfig(mag_cache=1.0, mag_ratios=ratios).mag_ratios
        except (ValueError, KeyError, TypeError) as error:
            raise ConfigError(f"{file} does not hold MagCache ratios ({{'mag_ratios': [...]}}): {error}") from None
    if model_id_of(pipe) in _PUBLISHED:
        from diffusers.hooks.mag_cache import FLUX_MAG_RATIOS

        return tuple(FLUX_MAG_RATIOS.tolist())
    return None


def write_mag_ratios(folder: Path, ratios: tuple[float, ...], prompts: int) -> None:
    """Save ``ratios`` as the model folder's ``mag_ratios.json`` (read by ``mag_ratios_for``)."""
    data = {"mag_ratios": list(ratios), "steps": len(ratios), "prompts": prompts}
    (Path(folder) / MAG_RATIOS_FILE).write_text(json.dumps(data, indent=2) + "\n")


def _diffusers_blocks():
    """diffusers' own view of a transformer's blocks, the one its caches hook: the names of the block lists, and
    the registry of block classes (``get(cls)``: which argument takes the hidden states, which output is them).

    Both are private (``diffusers.hooks._common._ALL_TRANSFORMER_BLOCK_IDENTIFIERS``,
    ``diffusers.hooks._helpers.TransformerBlockRegistry``), and imported only here: the public calibration,
    ``MagCacheConfig(calibrate=True)``, prints and logs each call's ratios and keeps none, so the meter hooks the
    blocks itself. tests/test_transformers.py fails naming them and diffusers' version when an upgrade moves them.
    """
    from diffusers.hooks._common import _ALL_TRANSFORMER_BLOCK_IDENTIFIERS
    from diffusers.hooks._helpers import TransformerBlockRegistry

    return _ALL_TRANSFORMER_BLOCK_IDENTIFIERS, TransformerBlockRegistry


class MagRatioMeter:
    """Hooks on ``pipe``'s transformer that record, while the block runs, the magnitude of each call's residual
    per token; ``ratios(steps, branches)`` turns them into MagCache's ratios.

    The head and tail blocks are those diffusers' MagCache hooks (the first and last of the transformer's
    block lists); the residual is the tail's image tokens minus the head's input."""

    def __init__(self, pipe):
        net = denoiser(pipe)
        if getattr(net, "is_cache_enabled", False):
            raise ConfigError(f"measure MagCache's ratios without a cache: {type(net._cache_config).__name__} is on")
        block_lists, registry = _diffusers_blocks()
        blocks = [
            block
            for name, group in net.named_children()
            if name in block_lists and isinstance(group, torch.nn.ModuleList)
            for block in group
        ]
        try:
            self._meta = [registry.get(type(b)) for b in (blocks[0], blocks[-1])] if blocks else []
        except ValueError:
            self._meta = []
        if not self._meta:
            kind = type(net).__name__
            raise ConfigError(f"MagCache needs a transformer with blocks diffusers' caches know; {kind} has none")
        self._head, self._tail = blocks[0], blocks[-1]
        self._inputs: list[torch.Tensor] = []
        self.norms: list[torch.Tensor] = []  # per transformer call: (batch, tokens)

    def __enter__(self) -> MagRatioMeter:
        head_meta, tail_meta = self._meta
        head_signature = inspect.signature(self._head.forward)  # to find the hidden states among its arguments

        def before_head(_module, args, kwargs):
            arguments = head_signature.bind_partial(*args, **kwargs).arguments
            self._inputs.append(arguments[head_meta.hidden_states_argument_name])

        def after_tail(_module, _args, _kwargs, output):
            hidden = output[tail_meta.return_hidden_states_index] if isinstance(output, tuple) else output
            start = self._inputs.pop()
            self.norms.append((hidden[:, -start.shape[1] :] - start).float().norm(dim=-1))

        self._handles = [
            self._head.register_forward_pre_hook(before_head, with_kwargs=True),
            self._tail.register_forward_hook(after_tail, with_kwargs=True),
        ]
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()

    def ratios(self, steps: int, branches: int) -> tuple[float, ...]:
        """The ratio per step, averaged over the images and the guidance ``branches`` (2 where the negative
        prompt is a transformer call of its own): the calls recorded are pipeline calls of ``steps`` steps,
        each step one call per branch."""
        per_call = steps * branches
        if not self.norms or len(self.norms) % per_call:
            raise ConfigError(
                f"MagCache's ratios need {branches} transformer call(s) per step: got {len(self.norms)} calls, not "
                f"a multiple of {steps} steps x {branches} (a scheduler that calls the transformer twice a step?)"
            )
        ratios: list[list[float]] = [[] for _ in range(steps)]
        for start in range(0, len(self.norms), per_call):
            for branch in range(branches):
                norms = self.norms[start + branch : start + per_call : branches]
                for step in range(1, steps):
                    ratios[step].append((norms[step] / (norms[step - 1] + 1e-8)).mean().item())
        return (1.0, *(round(float(np.mean(r)), 5) for r in ratios[1:]))
