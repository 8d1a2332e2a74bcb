"""The workbench's exceptions: one tree, so ``except WorkbenchError`` catches everything we raise.

::

    WorkbenchError
     ├── ConfigError              a setting has a value that is not allowed
     ├── UnknownModelError        a model id that cannot be resolved (offline, not on disk, not registered)
     ├── GenerationCancelled      a generation was cancelled; carries the records finished before
     └── ImageMetadataError       a PNG lacks the workbench metadata needed to reproduce it

Messages name the bad value and what is allowed.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "GenerationCancelled",
    "ImageMetadataError",
    "UnknownModelError",
    "WorkbenchError",
]


class WorkbenchError(Exception):
    """Base class of every error the workbench raises on purpose."""


class ConfigError(WorkbenchError, ValueError):
    """A configuration value is not allowed."""


class UnknownModelError(WorkbenchError, LookupError):
    """A model id that is neither registered, on disk, nor reachable; ``available`` lists what is."""

    def __init__(self, model_id: str, reason: str, available: list[str]):
        self.model_id = model_id
        self.available = available
        listing = "\n  ".join(available) if available else "(none)"
        super().__init__(f"unknown model {model_id!r}: {reason}.\nModels available locally:\n  {listing}")


class GenerationCancelled(WorkbenchError):
    """Generation stopped at a cancel request; ``records`` holds the images finished before it."""

    def __init__(self, records: list):
        self.records = records
        super().__init__(f"generation cancelled after {len(records)} finished image(s)")


class ImageMetadataError(WorkbenchError):
    """A PNG carries no (or unreadable) workbench generation metadata."""
