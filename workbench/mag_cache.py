"""MagCache's magnitude ratios (Ma et al. 2025, "MagCache: Fast Video Generation with Magnitude-Aware Cache"):
measured for a model, and found for the models that ship them.

MagCache skips a transformer step while the error it accumulates stays small, and predicts that error from
how the magnitude of the blocks' residual (tail block output minus head block input, the image tokens)
changes from one step to the next: ``ratio[i] = mean over tokens of |r_i| / |r_(i-1)|``. The ratios belong to
a model and its schedule, so they are measured once (``calibrate_mag_ratios``: a few generations without
skipping) and reused at any step count (diffusers interpolates them to the steps of the call).

Where ratios come from, in order (``mag_ratios_for``): ``AccelerationConfig.mag_ratios``; a
``mag_ratios.json`` in the model's folder (the toy DiT ships one, written by its training); the published
ratios of FLUX.1 [dev] and [schnell] (diffusers' ``FLUX_MAG_RATIOS``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from workbench.errors import ConfigError
from workbench.models import denoiser, model_id_of

__all__ = ["MAG_RATIOS_FILE", "calibrate_mag_ratios", "mag_ratios_for", "write_mag_ratios"]

MAG_RATIOS_FILE = "mag_ratios.json"  # in a model's folder: {"mag_ratios": [...], "steps": N, "prompts": M}
_PUBLISHED = ("black-forest-labs/FLUX.1-dev", "black-forest-labs/FLUX.1-schnell")


def mag_ratios_for(pipe) -> tuple[float, ...] | None:
    """The magnitude ratios known for ``pipe``'s model: its folder's ``mag_ratios.json``, or FLUX.1's published
    ones; None when neither applies (measure them with ``calibrate_mag_ratios``)."""
    file = Path(str(getattr(pipe, "name_or_path", "") or "")) / MAG_RATIOS_FILE
    if file.is_file():
        return tuple(json.loads(file.read_text())["mag_ratios"])
    if model_id_of(pipe) in _PUBLISHED:
        from diffusers.hooks.mag_cache import FLUX_MAG_RATIOS

        return tuple(FLUX_MAG_RATIOS.tolist())
    return None


def _blocks(net: torch.nn.Module) -> list[torch.nn.Module]:
    """The transformer blocks in order, as diffusers' MagCache finds them (its head and tail are the ends)."""
    from diffusers.hooks._common import _ALL_TRANSFORMER_BLOCK_IDENTIFIERS

    return [
        block
        for name, blocks in net.named_children()
        if name in _ALL_TRANSFORMER_BLOCK_IDENTIFIERS and isinstance(blocks, torch.nn.ModuleList)
        for block in blocks
    ]


def calibrate_mag_ratios(pipe, prompts: list[str], config=None, seeds=(0,)) -> tuple[float, ...]:
    """Measure MagCache's magnitude ratios for ``pipe``'s transformer: generate ``prompts`` × ``seeds`` under
    ``config`` (a ``GenerationConfig``; its steps are the ratios' length) with hooks on the head and tail
    blocks, and average each step's ratio over the images and the guidance branches (a true-CFG pipeline's
    negative prompt is a call of its own, with a residual of its own)."""
    from diffusers.hooks._helpers import TransformerBlockRegistry

    from workbench.acceleration import active_acceleration
    from workbench.config import GenerationConfig
    from workbench.generation import generate

    if active_acceleration(pipe) is not None:
        raise ConfigError(f"calibrate outside an accelerate block: {active_acceleration(pipe).label()} is applied")
    config = config or GenerationConfig()
    blocks = _blocks(denoiser(pipe))
    head, tail = blocks[0], blocks[-1]
    head_meta, tail_meta = TransformerBlockRegistry.get(type(head)), TransformerBlockRegistry.get(type(tail))
    calls: list[torch.Tensor] = []  # each transformer call's residual (image tokens), in call order
    inputs: list[torch.Tensor] = []

    def before_head(_module, args, kwargs):
        inputs.append(head_meta._get_parameter_from_args_kwargs(head_meta.hidden_states_argument_name, args, kwargs))

    def after_tail(_module, _args, _kwargs, output):
        hidden = output[tail_meta.return_hidden_states_index] if isinstance(output, tuple) else output
        start = inputs.pop()
        calls.append((hidden[:, -start.shape[1] :] - start).float())

    handles = [
        head.register_forward_pre_hook(before_head, with_kwargs=True),
        tail.register_forward_hook(after_tail, with_kwargs=True),
    ]
    ratios: list[list[float]] = [[] for _ in range(config.steps)]
    try:
        for prompt in prompts:
            for seed in seeds:
                calls.clear()
                generate(pipe, [prompt], config, seeds=[seed])
                branches = len(calls) // config.steps  # 2 where the negative prompt is a call of its own
                if not branches or len(calls) % config.steps:
                    raise ConfigError(
                        f"calibrating MagCache needs one transformer call per step and branch, got {len(calls)} "
                        f"calls for {config.steps} steps (a scheduler that calls the transformer twice a step?)"
                    )
                for branch in range(branches):
                    residuals = calls[branch::branches]
                    for step in range(1, config.steps):
                        now, before = residuals[step].norm(dim=-1), residuals[step - 1].norm(dim=-1)
                        ratios[step].append((now / (before + 1e-8)).mean().item())
    finally:
        for handle in handles:
            handle.remove()
    return (1.0, *(round(float(np.mean(r)), 5) for r in ratios[1:]))


def write_mag_ratios(folder: Path, ratios: tuple[float, ...], prompts: int) -> None:
    """Save ``ratios`` as the model folder's ``mag_ratios.json`` (read by ``mag_ratios_for``)."""
    data = {"mag_ratios": list(ratios), "steps": len(ratios), "prompts": prompts}
    (Path(folder) / MAG_RATIOS_FILE).write_text(json.dumps(data, indent=2) + "\n")
