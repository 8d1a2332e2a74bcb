"""What one generated image is: the image with its seed, the settings that made it and what it cost.

``GenerationRecord`` is plain data that every backend returns (a local pipeline, a server) and every layer
above reads: its ``settings()`` go into the PNG, its ``to_row()`` into a results table.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from workbench.config import AccelerationConfig, GenerationConfig

__all__ = ["GenerationRecord", "TokenBudget"]


@dataclass(frozen=True)
class TokenBudget:
    """How a prompt fits the text encoder's window: tokens used, the window, and the text cut off."""

    count: int  # tokens, start and end markers included
    limit: int
    dropped_text: str  # what the encoder will not see ("" when it fits)

    @property
    def truncated(self) -> bool:
        return bool(self.dropped_text)


@dataclass
class GenerationRecord:
    """One generated image with its seed, the settings that made it, and what it cost."""

    image: Image.Image
    prompt: str
    seed: int
    model_id: str
    config: GenerationConfig  # as used: width, height and scheduler filled in
    scheduler_class: str
    device: str
    dtype: str
    latency_s: float  # wall time of its pipeline call divided by the images in that call
    peak_mem_mb: float
    mem_kind: str  # what peak_mem_mb measures: cuda_allocated, cpu_rss_peak, ...
    status: str  # ok | nan | black
    tokens: TokenBudget
    versions: dict[str, str] = field(default_factory=dict)
    context: dict[str, Any] = field(default_factory=dict)  # what chose the settings: a route, an arm, ...
    acceleration: AccelerationConfig | None = None  # the toggles applied (acceleration.accelerate)
    # The (prompt, seed) jobs of its pipeline call, in order, where the acceleration makes an image depend on
    # its batch mates (AccelerationConfig.batch_dependent); empty otherwise.
    batch: tuple[tuple[str, int], ...] = ()

    def settings(self) -> dict[str, Any]:
        """Everything needed to make this image again (what goes into the PNG)."""
        return {
            "model_id": self.model_id,
            "prompt": self.prompt,
            "seed": self.seed,
            **self.config.to_dict(),
            "scheduler_class": self.scheduler_class,
            "device": self.device,
            "dtype": self.dtype,
            "versions": self.versions,
            **({"context": self.context} if self.context else {}),
            **({"acceleration": self.acceleration.to_dict()} if self.acceleration else {}),
            **({"batch": [list(job) for job in self.batch]} if self.batch else {}),
        }

    def to_dict(self) -> dict[str, Any]:
        """The settings and the measurements, as JSON-ready data (no image); ``from_dict`` reads it back."""
        measured = {k: getattr(self, k) for k in ("latency_s", "peak_mem_mb", "mem_kind", "status")}
        return {**self.settings(), **measured, "tokens": dataclasses.asdict(self.tokens)}

    @classmethod
    def from_dict(cls, data: dict[str, Any], image: Image.Image) -> GenerationRecord:
        """The record that ``to_dict`` wrote, with its image."""
        fields = {k: data[k] for k in GenerationConfig.__dataclass_fields__ if k in data}
        acceleration = data.get("acceleration")
        return cls(
            image=image,
            config=GenerationConfig.from_dict(fields),
            tokens=TokenBudget(**data["tokens"]),
            context=dict(data.get("context") or {}),
            acceleration=AccelerationConfig.from_dict(acceleration) if acceleration else None,
            versions=dict(data.get("versions") or {}),
            batch=tuple((prompt, seed) for prompt, seed in data.get("batch") or ()),
            **{k: data[k] for k in ("prompt", "seed", "model_id", "scheduler_class", "device", "dtype")},
            **{k: data[k] for k in ("latency_s", "peak_mem_mb", "mem_kind", "status")},
        )

    def to_row(self) -> dict[str, Any]:
        """A flat dict for a results table (no image)."""
        row = {k: v for k, v in self.settings().items() if k not in {"versions", "context", "acceleration", "batch"}}
        return {
            **row,
            **({"batch": json.dumps([list(job) for job in self.batch])} if self.batch else {}),  # JSON: one column
            **self.context,
            "acceleration": self.acceleration.label() if self.acceleration else "baseline",
            "latency_s": self.latency_s,
            "peak_mem_mb": self.peak_mem_mb,
            "mem_kind": self.mem_kind,
            "status": self.status,
            "token_count": self.tokens.count,
            "token_limit": self.tokens.limit,
            "prompt_truncated": self.tokens.truncated,
            "dropped_text": self.tokens.dropped_text,
        }
