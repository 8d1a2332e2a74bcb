"""Renamed names that keep working for one release: each use warns (DeprecationWarning) naming the new one."""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Callable
from typing import Any

__all__ = ["moved_attributes", "renamed", "renamed_attributes", "renamed_keyword"]


def renamed(old: str, new: str, *, stacklevel: int = 3) -> None:
    """Warn that ``old`` is now ``new``."""
    warnings.warn(f"{old} is deprecated; use {new}", DeprecationWarning, stacklevel=stacklevel)


def renamed_keyword(function: str, old: str, new: str, old_value: Any, new_value: Any) -> Any:
    """The value for keyword ``new`` of ``function``: ``new_value``, or ``old_value`` (with a warning) when the
    renamed keyword ``old`` was given (not None)."""
    if old_value is None:
        return new_value
    renamed(f"{function}({old}=...)", f"{function}({new}=...)", stacklevel=4)
    return old_value


def renamed_attributes(module: str, names: dict[str, str], namespace: dict[str, Any]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``names`` (old -> new) of ``module``: the new value, with a warning."""

    def __getattr__(name: str) -> Any:
        if name not in names:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        renamed(f"{module}.{name}", f"{module}.{names[name]}")
        return namespace[names[name]]

    return __getattr__


def moved_attributes(module: str, names: dict[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``names`` that moved out of ``module`` (old -> the new one's full name,
    ``"workbench.latency.latency_summary"``): the value from its new module, imported then, with a warning."""

    def __getattr__(name: str) -> Any:
        if name not in names:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        renamed(f"{module}.{name}", names[name])
        home, _, attribute = names[name].rpartition(".")
        return getattr(importlib.import_module(home), attribute)

    return __getattr__
