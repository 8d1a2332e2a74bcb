"""Connecting to Ray (an optional extra: ``pip install 't2i-workbench[ray]'``) for sweeps and serving."""

from __future__ import annotations

import os

from workbench.errors import ConfigError

__all__ = ["connect", "gpu_count"]


def connect(address: str | None = None, *, num_cpus: int | None = None):
    """The ``ray`` module, connected: to ``address`` (or $RAY_ADDRESS) when given, else to a Ray instance
    already started in this process, else to a new local one."""
    try:
        import ray
    except ImportError:
        raise ConfigError("running on Ray needs Ray: pip install 't2i-workbench[ray]'") from None
    if not ray.is_initialized():
        address = address or os.environ.get("RAY_ADDRESS")
        options = {"address": address} if address else {"num_cpus": num_cpus, "include_dashboard": False}
        ray.init(**options, log_to_driver=False)
    return ray


def gpu_count() -> int:
    """The GPUs of the connected Ray cluster."""
    import ray

    return int(ray.cluster_resources().get("GPU", 0))
