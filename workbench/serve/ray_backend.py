"""The old name of ``workbench.serve.ray_deployment`` (importing it warns)."""

from workbench.deprecation import renamed
from workbench.serve.ray_deployment import *  # noqa: F403
from workbench.serve.ray_deployment import __all__  # noqa: F401

renamed("workbench.serve.ray_backend", "workbench.serve.ray_deployment", stacklevel=2)
