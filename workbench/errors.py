"""The workbench's exceptions, all of them: one tree, so ``except WorkbenchError`` catches everything we raise.

::

    WorkbenchError
     ├── ConfigError                a setting has a value that is not allowed; ``field`` names it when known
     │    └── VoteConflict          a rater answered a question they have answered already (undo it first)
     ├── UnknownModelError          a model id that cannot be resolved (offline, not on disk, not registered)
     ├── GenerationCancelled        a generation was cancelled; carries the records finished before
     ├── ImageMetadataError         a PNG lacks the workbench metadata needed to reproduce it
     ├── EmbeddingUnavailableError  the sentence-embedding model for routing cannot be loaded
     ├── NotebookRunError           a study notebook failed in a cell; the executed notebook is kept
     ├── RemoteError                a server could not be reached, or refused for a reason other than content
     ├── QueueFull                  a server's queue is full; try again after ``retry_after`` seconds
     └── WorkerLost                 a worker of a sharded study stopped mid-way; its unfinished batch is not stored

Messages name the bad value and what is allowed.
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "ConfigError",
    "EmbeddingUnavailableError",
    "GenerationCancelled",
    "ImageMetadataError",
    "NotebookRunError",
    "QueueFull",
    "RemoteError",
    "UnknownModelError",
    "VoteConflict",
    "WorkbenchError",
    "WorkerLost",
]


class WorkbenchError(Exception):
    """Base class of every error the workbench raises on purpose."""


class ConfigError(WorkbenchError, ValueError):
    """A configuration value is not allowed; ``field`` is the setting's name where one is to blame."""

    def __init__(self, message: str, field: str | None = None):
        self.field = field
        super().__init__(message)


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


class EmbeddingUnavailableError(WorkbenchError, ImportError):
    """The sentence-embedding model cannot be loaded (package or weights missing)."""


class NotebookRunError(WorkbenchError):
    """A study notebook failed in a cell; the executed notebook with the error is at ``executed``."""

    def __init__(self, executed: Path, cell_index: int | None, ename: str, evalue: str):
        self.executed, self.cell_index, self.ename, self.evalue = executed, cell_index, ename, evalue
        where = f"cell {cell_index}" if cell_index is not None else "a cell"
        super().__init__(f"{where} failed with {ename}: {evalue}\n(the executed notebook is at {executed})")


class RemoteError(WorkbenchError):
    """The server could not be reached, or refused the request for a reason other than its content."""


class QueueFull(WorkbenchError):
    """The queue holds ``queued`` requests; try again after ``retry_after`` seconds, presenting ``ticket``
    (the request's place in line: ``position`` among those waiting to get in, 1 = next)."""

    def __init__(
        self, queued: int, retry_after: float, ticket: str | None = None, position: int | None = None
    ):  # fmt: skip
        self.queued, self.retry_after, self.ticket, self.position = queued, retry_after, ticket, position
        place = f"; your place in line: {position} (send ticket {ticket})" if ticket else ""
        super().__init__(f"the queue is full ({queued} requests waiting); retry after {retry_after:.1f} s{place}")


class WorkerLost(WorkbenchError):
    """A worker of a sharded study stopped mid-way: its unfinished batch is not stored (a rerun makes it)."""


class VoteConflict(ConfigError):
    """A second answer to a question a rater has answered (a vote sent again keeps its id: that is no conflict)."""
