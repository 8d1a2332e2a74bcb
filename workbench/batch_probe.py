"""``batch_size="auto"``: the batch size a plan makes images fastest at on a device, found by a short probe.

Before timing starts, the plan runs a few denoising steps at batch sizes 1, 2, 4, ..., up to the most images
the plan has to make (on an accelerator each shape is warmed up first; none of it is timed in the study), each
size's time per image carried over to the plan's step count from its last step. It stops when a batch no longer
gains ``MIN_GAIN`` in time per image over the best smaller one, when the next size's memory, extrapolated from
the last two, would pass the budget (``device_memory.memory_budget_mb``), or when a size runs out of memory.
The choice is the last size that gained: the fastest per image, where a larger batch within ``MIN_GAIN`` of
it (measurement noise, on a few steps) is not taken; a size slower than a smaller one is measured twice, the
faster kept (a machine busy for a moment should not end the probe). A probe is kept per plan
(model, settings, image size, toggles: ``probe_key``) and device for the rest of the process, and a run
records its probes (``RunFolder``), so a resumed run batches as its first part did. A probe that stopped at
its plan's image count while still gaining is made again for a plan with twice as many images or more. A
probe call that fails for another reason than memory ends the probe (the study's own calls then fail alike,
as error rows).

Images depend on their batch mates within floating-point rounding (2/255 at most on the toy world), so the
images of a run at ``"auto"`` match a run at the chosen size, not at another.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import torch

from workbench.device_memory import is_out_of_memory, memory_budget_mb, release_memory
from workbench.errors import WorkbenchError
from workbench.models import PipelineCache, default_cache
from workbench.plan import Plan, run_plan
from workbench.system_load import device_name

__all__ = ["MIN_GAIN", "PROBE_STEPS", "BatchProbe", "forget_probes", "known_probe", "probe_batch_size", "probe_key"]

PROBE_STEPS = 2  # denoising steps of a timed probe call (its warm-up call takes one)
MIN_GAIN = 0.05  # a larger batch must cut the best time per image by this share to be taken and tried further
_probes: dict[str, BatchProbe] = {}  # this process's probes by key


@dataclass(frozen=True)
class BatchProbe:
    """What a probe tried (``sizes``, with the time per image and peak memory of each), why it stopped, what
    it chose, and how long it took."""

    key: str
    model_id: str
    device: str
    sizes: tuple[int, ...]
    seconds_per_image: tuple[float, ...]
    peak_mb: tuple[float, ...]
    budget_mb: float | None
    chosen: int
    stopped: str
    probe_seconds: float
    images: int = 0  # the plan's images when it was probed
    capped: bool = False  # it stopped at the plan's image count, still gaining: a larger plan is probed again

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: tuples as lists, a peak a backend did not report (NaN) as None."""
        plain = {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}
        plain["peak_mb"] = [None if p != p else p for p in plain["peak_mb"]]
        return plain

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BatchProbe:
        fields = {f.name for f in dataclasses.fields(cls)}
        data = {**data, "peak_mb": [math.nan if p is None else p for p in data.get("peak_mb", [])]}
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in fields})


def probe_key(plan: Plan, device: str) -> str:
    """What a probe's choice holds for: the plan's model (and a given pipeline's dtype), settings (the image
    size and step count among them; not the batch size, or the negative prompt, which costs what an empty one
    does), toggles, and the device with its hardware's name. A/B arms that differ in their negative prompts
    share a probe."""
    if device == "cuda":
        device = f"cuda:{torch.cuda.current_device()}"
    settings = {
        "model_id": plan.model_id,
        "dtype": str(getattr(plan.pipeline, "dtype", None)),
        "config": plan.config.replace(batch_size=1, negative_prompt=None).to_dict(),
        "acceleration": plan.acceleration.to_dict() if plan.acceleration else None,
        "device": device,
        "hardware": device_name(device),
    }
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


def forget_probes() -> None:
    """Drop this process's probes (the next ``"auto"`` plan is probed again)."""
    _probes.clear()


def probe_batch_size(
    plan: Plan,
    jobs: Sequence[tuple[str, int]],
    *,
    device: str,
    run_device: str | None,
    cache: PipelineCache | None = default_cache,
) -> BatchProbe:
    """The probe of ``plan`` on ``device`` (see the module docstring), on up to all of ``jobs`` (the plan's
    (prompt, seed) pairs: sizes stop at their number); this process's earlier probe of the same key, if any.
    ``run_device`` and ``cache``: what ``run_plan`` loads the model with (the batch runner's)."""
    key = probe_key(plan, device)
    known = _probes.get(key)
    if known is not None and not (known.capped and len(jobs) >= 2 * known.sizes[-1]):
        return known
    started = time.perf_counter()
    budget = memory_budget_mb(device)
    sizes: list[int] = []
    times: list[float] = []
    peaks: list[float] = []
    stopped, size, capped = f"every size up to the plan's {len(jobs)} image(s)", 1, False
    while size <= len(jobs):
        if budget is not None and len(peaks) >= 2 and _next_peak(sizes, peaks, size) > budget:
            stopped = f"{size} would pass the memory budget ({budget:.0f} MiB)"
            break
        try:
            measured = _measure(plan, jobs[:size], run_device, device, cache)
            if measured is not None and times and measured[0] > min(times):
                # slower than a smaller batch: more often a busy machine than the batch, so measured once more
                again = _measure(plan, jobs[:size], run_device, device, cache)
                measured = None if again is None else (min(measured[0], again[0]), max(measured[1], again[1]))
        except WorkbenchError:
            raise
        except Exception as error:  # the study's own calls will fail the same way, as error rows
            stopped = f"{size} failed ({type(error).__name__}: {str(error)[:200]})"
            break
        if measured is None:
            release_memory(device)
            stopped = f"{size} ran out of memory"
            break
        sizes.append(size)
        times.append(measured[0])
        peaks.append(measured[1])
        if len(times) > 1 and times[-1] > min(times[:-1]) * (1 - MIN_GAIN):
            stopped = f"{size} gained under {MIN_GAIN:.0%} in time per image"
            break
        size *= 2
    else:
        capped = bool(sizes)  # still gaining where the plan's images ran out
    gained = [i for i, t in enumerate(times) if i == 0 or t <= min(times[:i]) * (1 - MIN_GAIN)]
    chosen = sizes[gained[-1]] if sizes else 1
    probe = BatchProbe(key, plan.model_id, device, tuple(sizes), tuple(round(t, 6) for t in times),
                       tuple(round(p, 1) for p in peaks), None if budget is None else round(budget, 1), chosen,
                       stopped, round(time.perf_counter() - started, 3), len(jobs), capped)  # fmt: skip
    if sizes:  # a probe that measured nothing (its plan failed, or ran out at one image) is made again next time
        _probes[key] = probe
    return probe


def known_probe(key: str) -> BatchProbe | None:
    """This process's probe of ``key``, if any."""
    return _probes.get(key)


def _measure(
    plan: Plan, jobs: Sequence[tuple[str, int]], run_device: str | None, device: str, cache
) -> tuple[float, float] | None:
    """Seconds per image of ``jobs`` at the plan's step count, and peak memory (MiB), from one call of
    ``PROBE_STEPS`` steps (after a one-step warm-up of the same shape on an accelerator: kernel choice,
    allocator; on the CPU only before the first size, whose call loads the model, since a first call at a new
    shape costs little more there): the call's time with its last step's time added for each step the plan has
    beyond the probe's (the call's fixed costs, text encoding and decoding, weigh as much as they do in the
    plan's calls); None where the device ran out of memory."""
    prompts, seeds = [p for p, _ in jobs], [s for _, s in jobs]
    steps = min(PROBE_STEPS, plan.config.steps)
    out_of_memory, marks = False, []

    def step_ended(step: int, total: int) -> None:
        _synchronize(device)
        marks.append(time.perf_counter())

    try:
        for warm_up in ([True] if device != "cpu" or len(jobs) == 1 else []) + [False]:
            call = replace(plan, config=plan.config.replace(steps=1 if warm_up else steps, batch_size=len(jobs)))
            marks.clear()
            start = time.perf_counter()
            records = run_plan(call, prompts, seeds, pairs=True, device=run_device, cache=cache, progress=step_ended)
            elapsed = time.perf_counter() - start
    except Exception as error:
        if not is_out_of_memory(error):
            raise
        out_of_memory = True
    if out_of_memory:
        return None
    step = (marks[-1] - marks[0]) / (len(marks) - 1) if len(marks) > 1 else 0.0
    peak = max((r.peak_mem_mb for r in records if r.peak_mem_mb == r.peak_mem_mb), default=math.nan)
    return (elapsed + (plan.config.steps - steps) * step) / len(jobs), peak


def _synchronize(device: str) -> None:
    """Wait for the device's queued work (a step's end is then when its kernels finished)."""
    kind = device.split(":")[0]
    if kind == "cuda":
        torch.cuda.synchronize(device)
    elif kind == "mps":
        torch.mps.synchronize()


def _next_peak(sizes: list[int], peaks: list[float], size: int) -> float:
    """The peak memory at ``size``, extrapolated along the line through the last two sizes' peaks."""
    per_image = (peaks[-1] - peaks[-2]) / (sizes[-1] - sizes[-2])
    return peaks[-1] + max(per_image, 0.0) * (size - sizes[-1])
