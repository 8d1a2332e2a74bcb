"""Serving generation over HTTP: the FastAPI app (``app``), its worker pool (``pool``), request schemas
(``schemas``), metrics and the Ray Serve deployment (``ray_deployment``). The client, ``RemoteModel``, is
``workbench.client``: it works without the server's dependencies.
"""

from workbench.serve.app import ServeSettings, create_app

__all__ = ["ServeSettings", "create_app"]
