"""How much diffusers and transformers say: errors only and no progress bars, unless asked for more.

Their warnings repeat what the workbench already reports ("... was truncated because CLIP can only handle
sequences up to 77 tokens": a row's ``prompt_truncated``) or concern nothing it uses ("... requires
torchvision"), and their "Loading pipeline components" bars fill scripts' and the command's output.
``set_verbosity(True)`` (``workbench --verbose``) shows them again. The choice lives in $WORKBENCH_VERBOSITY,
so worker processes and study kernels inherit it, and is put on the libraries when models load:
``import workbench`` imports neither.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys

from workbench.errors import ConfigError

__all__ = ["VERBOSITY_ENV", "apply_verbosity", "set_verbosity"]

VERBOSITY_ENV = "WORKBENCH_VERBOSITY"  # a logging level or its name; unset: errors only
LIBRARIES = ("diffusers", "transformers")


def _level(verbose: bool | int | str) -> int:
    if isinstance(verbose, bool):
        return logging.WARNING if verbose else logging.ERROR
    if isinstance(verbose, int) and verbose >= 0:
        return verbose
    if isinstance(verbose, str):
        name = verbose.strip().upper()
        level = int(name) if name.isdigit() else logging.getLevelName(name)
        if isinstance(level, int):
            return level
    raise ConfigError(
        f"verbosity must be True, False, a logging level or its name (debug, info, warning, error), got {verbose!r}"
        f" (set_verbosity, or ${VERBOSITY_ENV})",
        "verbosity",
    )


def set_verbosity(verbose: bool | int | str = True) -> None:
    """How much diffusers and transformers say from now on: ``False`` (the default) errors only and no progress
    bars, ``True`` their warnings and progress bars, or a logging level (``logging.INFO``, ``"debug"``), with
    progress bars at ``WARNING`` and below. Applied at once to the libraries already imported."""
    os.environ[VERBOSITY_ENV] = str(_level(verbose))
    apply_verbosity(imported_only=True)


def apply_verbosity(*, imported_only: bool = False) -> None:
    """Put the chosen verbosity on diffusers and transformers (importing them, unless ``imported_only``)."""
    level = _level(os.environ.get(VERBOSITY_ENV, "error"))
    for library in LIBRARIES:
        if imported_only and library not in sys.modules:
            continue
        logs = importlib.import_module(f"{library}.utils.logging")
        logs.set_verbosity(level)
        (logs.enable_progress_bar if level <= logging.WARNING else logs.disable_progress_bar)()
