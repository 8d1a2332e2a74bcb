"""The server as a Ray Serve deployment: the same app and API, one replica per GPU, autoscaled.

Each replica runs ``create_app`` with one worker on the device Ray gave it (``num_gpus=1``; on a
cluster without GPUs, one CPU each), so everything the local server does (validation, the queue and
its 429s, streaming, cancelling) holds per replica; Ray Serve spreads requests over the replicas.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass, replace
from typing import Any

from workbench.errors import ConfigError
from workbench.serve.app import create_app
from workbench.serve.settings import ServeSettings

__all__ = ["Autoscaling", "deployment", "serve_on_ray"]

APP_NAME = "workbench"


@dataclass(frozen=True)
class Autoscaling:
    """Ray Serve autoscaling: between ``min_replicas`` and ``max_replicas`` (default: one per GPU), aiming
    at ``target_ongoing_requests`` in flight per replica."""

    min_replicas: int = 1
    max_replicas: int | None = None
    target_ongoing_requests: float = 2.0

    def config(self, gpus: int) -> dict[str, Any]:
        most = self.max_replicas or max(1, gpus)
        if not 0 <= self.min_replicas <= most:
            raise ConfigError(f"replicas must satisfy 0 <= min ({self.min_replicas}) <= max ({most})")
        return {"min_replicas": self.min_replicas, "max_replicas": most,
                "target_ongoing_requests": self.target_ongoing_requests}  # fmt: skip


def deployment(settings: ServeSettings, autoscaling: Autoscaling | None = None, *, gpus: int | None = None):
    """The bound Ray Serve application for ``settings`` (its ``devices`` are replaced by each replica's own)."""
    from ray import serve

    from workbench.ray_cluster import gpu_count

    gpus = gpu_count() if gpus is None else gpus
    replica_settings = replace(settings, devices=("cuda:0",) if gpus else ("cpu",))

    def build_app():  # runs in each replica: the app, its router and its models load there
        return create_app(replica_settings)

    generator = serve.deployment(
        serve.ingress(build_app)(),
        name="generator",
        ray_actor_options={"num_gpus": 1} if gpus else {"num_cpus": 1},
        autoscaling_config=(autoscaling or Autoscaling()).config(gpus),
        # Let each replica's own queue answer 429s, rather than Ray queueing without bound in front of it.
        max_ongoing_requests=settings.max_queue + 1,
    )
    return generator.bind()


def serve_on_ray(
    settings: ServeSettings,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    autoscaling: Autoscaling | None = None,
    address: str | None = None,
    blocking: bool = True,
):
    """Start Ray Serve on ``host:port`` with the generator deployment. With ``blocking=False`` it returns
    at once (``ray.serve.shutdown()`` stops it); else it runs until Ctrl-C or SIGTERM, then shuts down."""
    from ray import serve

    from workbench.ray_cluster import connect

    ray = connect(address)
    serve.start(http_options={"host": host, "port": port})
    application = deployment(settings, autoscaling)
    if not blocking:
        return serve.run(application, name=APP_NAME, route_prefix="/", blocking=False)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # `kill` stops it the way Ctrl-C does
    try:
        serve.run(application, name=APP_NAME, route_prefix="/", blocking=True)
    except KeyboardInterrupt:
        pass
    finally:
        serve.shutdown()
        ray.shutdown()
    return None
