"""Serving generation over HTTP: the FastAPI app (``app``), how it runs (``settings``), its worker pool
(``pool``), request schemas (``schemas``), metrics and the Ray Serve deployment (``ray_deployment``). The
client, ``RemoteModel``, is ``workbench.client``: it works without the server's dependencies.
"""

from workbench.serve.app import create_app
from workbench.serve.settings import ServeSettings

__all__ = ["ServeSettings", "create_app"]
