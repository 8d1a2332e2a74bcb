"""One path from a prompt to an image: ``resolve`` a target into a ``Plan``, then ``run`` it.

::

    resolve(target, prompt) -> Plan(model id and loaded pipeline or None, GenerationConfig, AccelerationConfig, context)
        target = a Router (anything with ``plan(prompt)``: it decides), a RouteSpec, a model id, or a pipeline
    run(plan, prompts, seeds) = optimize the prompt (style) -> accelerate -> generate -> GenerationRecords

The evaluator, the A/B tester, the Explorer, the server's workers and ``Router.generate`` all go this way.
A Router is known here only by its protocol, so this module does not import ``routing``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from workbench.backends import Cancel, ProgressCallback
from workbench.config import ROUTED, AccelerationConfig, GenerationConfig, RouteSpec
from workbench.deprecation import renamed, renamed_attributes
from workbench.errors import ConfigError
from workbench.generation import accelerate, as_backend, generate
from workbench.local_pipeline import pipeline_tokenizers
from workbench.models import PipelineCache, default_cache, guidance_distilled, load
from workbench.prompts import PromptOptimizer
from workbench.records import GenerationRecord

__all__ = ["ROUTED", "Plan", "Planner", "resolve", "run_plan", "target_label"]


@runtime_checkable
class Planner(Protocol):
    """What decides a prompt's model and settings (a ``routing.Router``): ``plan(prompt)`` gives the route
    (a ``RouteSpec``) and the decision (with ``to_context()``, the columns recorded with each image)."""

    def plan(self, prompt: str) -> tuple[RouteSpec, Any]: ...


@dataclass(frozen=True)
class Plan:
    """How to make one prompt's images: a loaded ``pipeline`` (a diffusers pipeline or any ImageBackend; None:
    load ``model_id`` where it runs, e.g. on a server's worker), the settings, the toggles, and what chose them
    (recorded in rows and PNGs)."""

    model_id: str
    config: GenerationConfig
    pipeline: Any = None
    acceleration: AccelerationConfig | None = None  # None: as loaded, no accelerate block
    context: dict[str, Any] = field(default_factory=dict)

    @property
    def backend(self) -> Any:
        """The old name of ``pipeline``."""
        renamed("Plan.backend", "Plan.pipeline")
        return self.pipeline


def target_label(target) -> str:
    """How a target is named in result rows: a model id as it is, a Router as "routed", a pipeline by its id."""
    if isinstance(target, str):
        return target
    if isinstance(target, Planner):
        return getattr(target, "name", ROUTED)
    return as_backend(target).workbench_model_id


def resolve(
    target,
    prompt: str,
    config: GenerationConfig | None = None,
    *,
    acceleration: AccelerationConfig | None = None,
    route_settings: bool = True,
) -> Plan:
    """The plan for ``prompt`` on ``target`` (a Router, a RouteSpec, a model id, or a pipeline/backend).

    ``config`` is used as given, except under a route, whose own settings win (the batch size stays the
    caller's) unless ``route_settings=False``, where the route only picks the model.
    """
    config = config or GenerationConfig()
    if not isinstance(config, GenerationConfig):
        raise ConfigError(f"config must be a GenerationConfig, got {type(config).__name__}", "config")
    acceleration = acceleration if acceleration is not None and acceleration.changes() else None
    context: dict[str, Any] = {}
    if isinstance(target, Planner):
        target, decision = target.plan(prompt)
        context = decision.to_context()
    if isinstance(target, RouteSpec):
        context = context or {"route": target.name}
        routed = target.config.replace(batch_size=config.batch_size) if route_settings else config
        return Plan(target.model_id, routed, None, acceleration, context)
    if isinstance(target, str):
        if not target.strip():
            raise ConfigError("a model id must be a non-empty string", "model")
        return Plan(target, config, None, acceleration)
    backend = as_backend(target)
    return Plan(backend.workbench_model_id, config, target, acceleration)


def run_plan(
    plan: Plan,
    prompts: str | Sequence[str],
    seeds: int | Sequence[int],
    *,
    pairs: bool = False,
    style: str | None = None,
    optimize: bool = False,
    device: str | None = None,
    cache: PipelineCache | None = default_cache,
    progress: ProgressCallback | None = None,
    cancel: Cancel = None,
) -> list[GenerationRecord]:
    """Make ``plan``'s images: load its model if it has no pipeline (on ``device``, through ``cache``), optimize
    each prompt when ``optimize`` or a ``style`` is given, apply its toggles, generate (every prompt with every
    seed, or with ``pairs=True`` one image per ``(prompts[i], seeds[i])``)."""
    pipe = plan.pipeline if plan.pipeline is not None else load(plan.model_id, device=device, cache=cache)
    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    jobs = [(prompts, seeds, plan.config, plan.context)]  # one call: batches may span prompts
    if optimize or style:
        optimizer = PromptOptimizer(pipe if pipeline_tokenizers(pipe) else None)
        takes_negative = not guidance_distilled(pipe)  # a guidance-distilled model refuses negative prompts
        jobs = []
        for index, prompt in enumerate(prompts):
            optimized = optimizer.optimize(prompt, style)
            added = optimized.negative_prompt if takes_negative else None
            negative = plan.config.negative_prompt or added
            context = {**plan.context, "typed_prompt": prompt, "style": style}
            prompt_seeds = [seeds[index]] if pairs else seeds
            jobs.append(([optimized.prompt], prompt_seeds, plan.config.replace(negative_prompt=negative), context))
    records: list[GenerationRecord] = []
    with accelerate(pipe, plan.acceleration) if plan.acceleration else contextlib.nullcontext():
        for texts, job_seeds, config, context in jobs:
            records += generate(
                pipe, texts, config, job_seeds, model_id=plan.model_id, progress=progress, cancel=cancel,
                context=context, pairs=pairs and len(texts) > 1,
            )  # fmt: skip
    return records


__getattr__ = renamed_attributes(__name__, {"run": "run_plan"}, globals())
