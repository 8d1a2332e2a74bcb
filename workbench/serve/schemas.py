"""What the HTTP API takes and gives, as pydantic models (they are also its OpenAPI schema)."""

from __future__ import annotations

import typing
from dataclasses import fields
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model, field_validator, model_validator

from workbench.client import MAX_IMAGES, SERVER_TOGGLES
from workbench.config import SCHEDULERS, AccelerationConfig
from workbench.generation import MAX_SEED

__all__ = [
    "MAX_IMAGES",
    "MAX_PROMPT_CHARS",
    "MAX_SIDE",
    "MAX_STEPS",
    "SERVER_TOGGLES",
    "AccelerationSettings",
    "GenerateRequest",
    "GenerateResponse",
    "GeneratedImage",
    "ModelInfo",
    "RouteInfo",
    "RouteTableInfo",
]

MAX_PROMPT_CHARS = 2000
MAX_STEPS = 200
MAX_SIDE = 2048


def _acceleration_model() -> type[BaseModel]:
    """A pydantic model with the per-request fields of ``AccelerationConfig`` (not ``SERVER_TOGGLES``),
    checked by it (its messages name the field)."""
    hints = typing.get_type_hints(AccelerationConfig)
    field_specs = {
        f.name: (hints[f.name], f.default) for f in fields(AccelerationConfig) if f.name not in SERVER_TOGGLES
    }

    def server_owned(cls, data: Any) -> Any:
        owned = sorted(set(data) & set(SERVER_TOGGLES)) if isinstance(data, dict) else []
        if owned:
            raise ValueError(
                f"{', '.join(owned)} {'is a server setting' if len(owned) == 1 else 'are server settings'}, not "
                f"a request's (the server applies them to every request: workbench serve --acceleration); a "
                f"request may set {', '.join(field_specs)}"
            )
        return data

    def check(self):
        AccelerationConfig(**self.model_dump())  # raises ConfigError, a ValueError: pydantic reports it
        return self

    return create_model(
        "AccelerationSettings",
        __config__=ConfigDict(extra="forbid", allow_inf_nan=False),
        __doc__="Per-request speed toggles (fields of workbench.AccelerationConfig; the defaults change nothing). "
        f"{', '.join(SERVER_TOGGLES)} are the server's to set, for every request.",
        __validators__={
            "server_owned": model_validator(mode="before")(classmethod(server_owned)),
            "check": model_validator(mode="after")(check),
        },
        **field_specs,
    )


AccelerationSettings = _acceleration_model()


class GenerateRequest(BaseModel):
    """One generation: a prompt, and optionally a model or route and settings. Unset settings come from
    the route (or the model's defaults); with neither ``model`` nor ``route`` the router decides."""

    model_config = ConfigDict(
        extra="forbid",
        allow_inf_nan=False,
        json_schema_extra={"examples": [{"prompt": "a red circle in the centre, on a white background", "seed": 0}]},
    )

    prompt: str = Field(min_length=1, max_length=MAX_PROMPT_CHARS)
    negative_prompt: str | None = Field(None, max_length=MAX_PROMPT_CHARS)
    model: str | None = Field(None, description="a model id from GET /v1/models")
    route: str | None = Field(None, description="a route name from GET /v1/routes")
    steps: int | None = Field(None, ge=1, le=MAX_STEPS)
    guidance: float | None = Field(None, ge=0, le=30)
    width: int | None = Field(None, ge=8, le=MAX_SIDE, multiple_of=8)
    height: int | None = Field(None, ge=8, le=MAX_SIDE, multiple_of=8)
    scheduler: Literal[tuple(SCHEDULERS)] | None = None  # type: ignore[valid-type]
    seed: int | None = Field(None, ge=0, le=MAX_SEED, description="the first image's seed (random when unset)")
    num_images: int = Field(1, ge=1, le=MAX_IMAGES, description="images with seeds seed, seed+1, ...")
    optimize: bool = Field(False, description="add quality modifiers and a negative prompt (PromptOptimizer)")
    style: str | None = Field(None, description="a style preset for the optimizer (implies optimize)")
    acceleration: AccelerationSettings | None = None  # type: ignore[valid-type]
    response_format: Literal["png", "json"] = Field(
        "png", description="POST /v1/generate only: a PNG, or JSON with base64 images and their records"
    )

    @field_validator("prompt")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("prompt must contain more than white space")
        return value

    @field_validator("style")
    @classmethod
    def _known_style(cls, value: str | None) -> str | None:
        from workbench.prompts import load_styles

        if value is not None and value not in (styles := sorted(load_styles())):
            raise ValueError(f"unknown style {value!r}; styles: {styles}")
        return value

    @model_validator(mode="after")
    def _consistent(self):
        if self.model is not None and self.route is not None:
            raise ValueError("give model or route, not both (neither: the router decides)")
        return self

    def overrides(self) -> dict[str, Any]:
        """The generation settings this request sets (those it leaves unset come from the route or model)."""
        names = ("steps", "guidance", "width", "height", "scheduler", "negative_prompt")
        return {name: getattr(self, name) for name in names if getattr(self, name) is not None}


class GeneratedImage(BaseModel):
    png_base64: str = Field(description="the PNG, with the record in its metadata")
    record: dict[str, Any] = Field(description="seed, settings, device, latency, ... (GenerationRecord.to_dict)")


class GenerateResponse(BaseModel):
    images: list[GeneratedImage]
    worker: str = Field(description="the device that generated them")
    queued_s: float = Field(description="seconds spent waiting for a worker")


class ModelInfo(BaseModel):
    id: str
    description: str
    loaded_on: list[str] = Field(description="the workers' devices that hold it in memory")


class RouteInfo(BaseModel):
    name: str
    model_id: str
    settings: dict[str, Any]
    description: str
    examples: list[str]


class RouteTableInfo(BaseModel):
    source: str
    threshold: float
    fallback: str | None
    preview: str | None
    classifier: str
    routes: list[RouteInfo]
