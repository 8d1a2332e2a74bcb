"""T-GATE (Zhang et al. 2024, "Cross-Attention Makes Inference Cumbersome in Text-to-Image Diffusion Models") for
UNet pipelines (Stable Diffusion 1.x/2.x, SDXL), built from diffusers' own extension points.

Cross-attention settles in the first denoising steps, so T-GATE computes it only until a gate step ``g``:

- steps ``0 .. g-2``: every cross-attention layer (``attn2``) runs as usual;
- step ``g-1``: it runs as usual and keeps its output (under classifier-free guidance, the mean of the
  unconditional and conditional halves);
- steps ``g ..``: it returns the kept output without attending to the text, and classifier-free guidance stops:
  the UNet runs once per image instead of twice.

As in the official code (tgate 0.1.2 and 1.0.0), the UNet's other inputs after the gate are the unconditional
ones; this matters only for SDXL, whose pooled text embedding and size ids then come from the negative prompt.
Self-attention always runs: TGATE-V2's self-attention caching (tgate 1.0.0's ``sp_interval``/``fi_interval``)
is not done here.

``install()`` swaps the ``attn2`` processors (``unet.set_attn_processor``) and adds a UNet forward pre-hook that
counts steps; ``remove()`` puts the original processors back and drops the hook, after which the pipeline makes
bit-identical images to before. Guidance is dropped by the step-end callback::

    tgate = TGate(pipe, gate_step=10)
    tgate.install()
    pipe(prompt, callback_on_step_end=tgate.step_end, callback_on_step_end_tensor_inputs=tgate.tensor_inputs)
    tgate.remove()
"""

from __future__ import annotations

import torch

from workbench.errors import ConfigError

__all__ = ["TGate"]

# Callback tensors stacked [unconditional, conditional] under guidance, which the UNet reads every step.
_GUIDED_INPUTS = ("prompt_embeds", "add_text_embeds", "add_time_ids")


class _GatedCrossAttention:
    """An ``attn2`` processor: runs ``processor``, keeps its output at the step before the gate, returns that
    output from the gate on."""

    def __init__(self, processor, gate: TGate):
        self.processor = processor
        self.gate = gate
        self.cache: torch.Tensor | None = None

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kwargs):
        phase = self.gate.phase
        if phase == "reuse":
            if self.cache is None:
                raise RuntimeError(
                    "T-GATE: a cross-attention layer did not run at the step before the gate, so it has nothing to "
                    "reuse (does something skip UNet blocks, like DeepCache?)"
                )
            if self.cache.shape[0] != hidden_states.shape[0]:
                raise RuntimeError(
                    "T-GATE: classifier-free guidance was not dropped at the gate; call the pipeline with "
                    "callback_on_step_end=tgate.step_end and callback_on_step_end_tensor_inputs=tgate.tensor_inputs"
                )
            return self.cache
        out = self.processor(attn, hidden_states, encoder_hidden_states, attention_mask, temb, **kwargs)
        if phase == "cache":
            if self.gate.pipe.do_classifier_free_guidance:
                uncond, cond = out.chunk(2)
                self.cache = (uncond + cond) / 2
            else:
                self.cache = out
        return out


class TGate:
    """T-GATE with gate step ``gate_step`` (>= 1) on a diffusers UNet pipeline: ``install()``, then call the
    pipeline with ``callback_on_step_end=step_end`` and ``callback_on_step_end_tensor_inputs=tensor_inputs``;
    ``remove()`` undoes it. A gate at or past the last step changes nothing."""

    def __init__(self, pipe, gate_step: int):
        if isinstance(gate_step, bool) or not isinstance(gate_step, int) or gate_step < 1:
            raise ConfigError(f"T-GATE's gate_step must be an integer >= 1, got {gate_step!r}", field="gate_step")
        unet = getattr(pipe, "unet", None)
        if not isinstance(unet, torch.nn.Module) or not hasattr(unet, "set_attn_processor"):
            raise ConfigError(
                f"T-GATE needs a UNet pipeline (Stable Diffusion 1.x/2.x, SDXL); {type(pipe).__name__} has no UNet"
            )
        self.layers = [f"{name}.processor" for name, m in unet.named_modules() if getattr(m, "is_cross_attention", 0)]
        if not self.layers:
            raise ConfigError(f"T-GATE needs cross-attention layers; the UNet of {type(pipe).__name__} has none")
        callback_inputs = getattr(pipe, "_callback_tensor_inputs", ())
        if "prompt_embeds" not in callback_inputs:
            raise ConfigError(
                f"T-GATE drops guidance through the step-end callback; {type(pipe).__name__} does not pass "
                "prompt_embeds to it"
            )
        self.pipe = pipe
        self.gate_step = gate_step
        self.tensor_inputs: list[str] = [name for name in _GUIDED_INPUTS if name in callback_inputs]
        self._unet = None  # the UNet installed on
        self._original: dict | None = None  # its processors before install
        self._gated: list[_GatedCrossAttention] = []
        self._hook = None
        self._step: int | None = None  # index of the step the UNet is running; None between calls
        self._guidance: float | None = None  # the call's guidance scale, once dropped

    @property
    def installed(self) -> bool:
        return self._original is not None

    @property
    def phase(self) -> str:
        """What cross-attention does at the current step: "run", "cache" (run and keep) or "reuse"."""
        if self._step is None or self._step < self.gate_step - 1:
            return "run"
        return "cache" if self._step == self.gate_step - 1 else "reuse"

    def install(self) -> None:
        """Put gated processors on the cross-attention layers and the step counter on the UNet."""
        if self.installed:
            raise ConfigError("T-GATE is already installed on this pipeline")
        unet = self.pipe.unet
        original = dict(unet.attn_processors)
        gated = {name: _GatedCrossAttention(original[name], self) for name in self.layers}
        unet.set_attn_processor({**original, **gated})
        self._hook = unet.register_forward_pre_hook(self._count_step, with_kwargs=True)
        self._unet, self._original, self._gated = unet, original, list(gated.values())
        self._reset()

    def remove(self) -> None:
        """Put the original processors back and drop the step counter (nothing to do when not installed)."""
        if not self.installed:
            return
        self._unet.set_attn_processor(dict(self._original))
        self._hook.remove()
        self._reset()
        self._unet, self._original, self._gated, self._hook = None, None, [], None

    def step_end(self, pipeline, step: int, timestep, callback_kwargs: dict) -> dict:
        """The pipeline's ``callback_on_step_end``: after step ``gate_step - 1`` stop classifier-free guidance
        (scale 0, unconditional halves of ``tensor_inputs``); after the last step forget the call."""
        missing = [name for name in self.tensor_inputs if name not in callback_kwargs]
        if missing:
            raise ConfigError(
                f"T-GATE's step_end did not get {missing}: call the pipeline with "
                "callback_on_step_end_tensor_inputs=tgate.tensor_inputs"
            )
        if step != self._step:
            raise RuntimeError(f"T-GATE counted UNet step {self._step} at step {step}: is T-GATE installed?")
        if step + 1 == pipeline.num_timesteps:
            if self._guidance is not None:
                pipeline._guidance_scale = self._guidance
            self._reset()
        elif step + 1 == self.gate_step and pipeline.do_classifier_free_guidance:
            self._guidance = pipeline._guidance_scale
            pipeline._guidance_scale = 0.0
            halves = {name: callback_kwargs[name].chunk(2)[0] for name in self.tensor_inputs}
            callback_kwargs = {**callback_kwargs, **halves}
        return callback_kwargs

    def _count_step(self, unet, args, kwargs) -> None:
        """UNet forward pre-hook: a call's first timestep starts the count at 0, every other forward adds 1."""
        timestep = args[1] if len(args) > 1 else kwargs["timestep"]
        first = self.pipe.scheduler.timesteps[0]
        self._step = 0 if self._step is None or float(timestep) == float(first) else self._step + 1

    def _reset(self) -> None:
        self._step = None
        self._guidance = None
        for processor in self._gated:
            processor.cache = None
