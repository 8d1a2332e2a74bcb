"""Serving generation over HTTP: the FastAPI app (``app``), its worker pool (``pool``), the client
(``remote.RemoteModel``) and the Ray Serve deployment (``ray_backend``).

``create_app`` and ``ServeSettings`` are imported on first use, so the client works without the
server's dependencies.
"""

from workbench.serve.remote import RemoteModel

__all__ = ["RemoteModel", "ServeSettings", "create_app"]


def __getattr__(name: str):
    if name in ("ServeSettings", "create_app"):
        from workbench.serve import app

        return getattr(app, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
