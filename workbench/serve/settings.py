"""How the server runs (``ServeSettings``: devices, routes, models, queue, limits, key, toggles), and the refusal
to serve a network address without an API key (``check_exposure``)."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

from workbench.client import API_KEY_ENV
from workbench.config import AccelerationConfig
from workbench.errors import ConfigError

__all__ = ["ServeSettings", "check_exposure", "default_devices", "is_loopback"]


def default_devices() -> list[str]:
    """Every CUDA GPU, one worker each; else one worker on the CPU."""
    import torch

    return [f"cuda:{i}" for i in range(torch.cuda.device_count())] or ["cpu"]


@dataclass(frozen=True)
class ServeSettings:
    """How the server runs. ``models``: the model ids requests may name (default: the route table's and the
    toy world's). ``api_key``: when set, every endpoint but /healthz needs ``Authorization: Bearer <key>``.
    ``acceleration``: toggles for every request, the server-owned ones (compile, dtype, ...) included.
    ``max_request_s``: a request predicted to take longer (from the models' measured speed) is refused up
    front with a 422 (default: ``timeout_s``, past which a running request is stopped with a 504)."""

    devices: tuple[str, ...] = field(default_factory=lambda: tuple(default_devices()))
    routes: str = "toyworld"
    classifier: str = "embedding"
    models: tuple[str, ...] | None = None
    max_queue: int = 64
    timeout_s: float = 300.0
    api_key: str | None = field(default_factory=lambda: os.environ.get(API_KEY_ENV) or None, repr=False)
    preload: bool = True
    acceleration: AccelerationConfig | None = None  # applied to every request, warmed at start-up
    max_request_s: float | None = None  # refuse requests predicted to take longer (default: timeout_s)

    def __post_init__(self) -> None:
        object.__setattr__(self, "devices", tuple(self.devices))
        if self.acceleration is not None and not isinstance(self.acceleration, AccelerationConfig):
            raise ConfigError(f"acceleration must be an AccelerationConfig, got {self.acceleration!r}", "acceleration")
        from workbench.routing import classifier_factory

        classifier_factory(self.classifier)  # an unknown name fails with the registered ones
        if self.max_request_s is not None and not isinstance(self.max_request_s, bool) and isinstance(
            self.max_request_s, (int, float)) and isinstance(self.timeout_s, (int, float)) and (
            self.max_request_s > self.timeout_s
        ):  # fmt: skip
            raise ConfigError(
                f"max_request_s ({self.max_request_s}) must not exceed timeout_s ({self.timeout_s}): a request "
                "accepted for taking that long would be stopped at the time limit",
                "max_request_s",
            )
        for name in ("timeout_s", "max_request_s"):
            value = getattr(self, name)
            if (value is not None or name == "timeout_s") and (
                isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf
            ):
                raise ConfigError(f"{name} must be a number of seconds > 0, got {value!r}", name)
        if self.api_key is not None and len(self.api_key) < 8:
            raise ConfigError("api_key must be at least 8 characters long")

    def served_models(self, table) -> list[str]:
        from workbench.models import available_models

        if self.models is not None:
            return list(dict.fromkeys(self.models))
        toyworld = [m for m in available_models() if m.startswith("toyworld/")]
        return list(dict.fromkeys([spec.model_id for spec in table.routes.values()] + toyworld))


def is_loopback(host: str) -> bool:
    """Whether ``host`` is this machine only (a host name may resolve to anything: not loopback)."""
    import ipaddress

    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_exposure(host: str, api_key: str | None, *, insecure: bool = False) -> None:
    """Refuse to serve a non-loopback ``host`` without an API key (anyone on the network could generate, read
    /metrics and the docs), unless ``insecure``: then warn, on every start."""
    import sys

    if is_loopback(host) or api_key:
        return
    if not insecure:
        raise ConfigError(
            f"refusing to serve {host} without an API key: anyone who can reach it could generate and read "
            f"/metrics and /docs. Set one with --api-key KEY or ${API_KEY_ENV} (clients send 'Authorization: "
            "Bearer KEY'), or pass --insecure-no-auth to serve it open anyway",
            "api_key",
        )
    print(
        f"WARNING: serving {host} without an API key (--insecure-no-auth): anyone who can reach this port can "
        "generate, and read /metrics and /docs",
        file=sys.stderr,
    )
