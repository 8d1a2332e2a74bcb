"""Files that ship with the package: the data (prompt sets, route tables, styles, wildcards) and the study notebooks;
and the folder where the workbench caches what it computes (``cache_root``).

In the repository they sit at the top level (``data/``, ``notebooks/``); the build maps them into the package
as ``workbench.data`` and ``workbench.notebooks``, so ``importlib.resources`` finds them the same way in a
clone (an editable install) and in an installed wheel.
"""

from __future__ import annotations

import os
from importlib.metadata import PackageNotFoundError, version
from importlib.resources import files
from pathlib import Path

__all__ = ["CACHE_ENV", "bundled_studies", "cache_root", "data_path", "package_version"]

CACHE_ENV = "WORKBENCH_CACHE_DIR"


def data_path(*parts: str) -> Path:
    """The path of a shipped data file or folder, e.g. ``data_path("routes", "toyworld.yaml")``."""
    return Path(str(files("workbench.data").joinpath(*parts)))


def bundled_studies() -> dict[str, Path]:
    """The study notebooks that ship with the package, by name (``01_model_evaluation`` -> its path)."""
    folder = Path(str(files("workbench.notebooks")))
    return {path.stem: path for path in sorted(folder.glob("*.ipynb"))}


def package_version() -> str:
    """The installed package's version ("0.0.0" for a source tree that is not installed)."""
    try:
        return version("t2i-workbench")
    except PackageNotFoundError:
        return "0.0.0"


def cache_root() -> Path:
    """The workbench's cache folder: ``$WORKBENCH_CACHE_DIR``, else the XDG cache folder's t2i-workbench."""
    root = os.environ.get(CACHE_ENV)
    if root:
        return Path(root).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "t2i-workbench"
