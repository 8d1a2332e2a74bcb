"""The contract between the workbench and whatever makes its images: a small ``Protocol``.

``generate()`` and ``accelerate()`` (in ``workbench.generation``) talk only to an ``ImageBackend``. Two
implement it: ``LocalPipeline`` (a diffusers pipeline in this process, ``workbench.local_pipeline``) and
``RemoteModel`` (a ``workbench serve`` server, ``workbench.client``). A diffusers pipeline passed anywhere a
backend goes is wrapped in a ``LocalPipeline``, which shows it as ``pipe``: what works on the pipeline itself
(measuring MagCache's ratios) asks a backend for its ``pipe``. Nothing tests for a concrete backend class.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol, runtime_checkable

from workbench.config import AccelerationConfig, GenerationConfig
from workbench.records import GenerationRecord

__all__ = ["Cancel", "ImageBackend", "ProgressCallback", "is_cancelled"]

ProgressCallback = Callable[[int, int], None]  # (step, total) over a whole request
Cancel = Any  # a threading.Event, or a callable returning True to stop


@runtime_checkable
class ImageBackend(Protocol):
    """Something that makes images: one ``GenerationRecord`` per (prompt, seed) job, in the jobs' order."""

    @property
    def workbench_model_id(self) -> str:
        """The id its images are recorded under."""
        ...

    def make_images(
        self,
        jobs: list[tuple[str, int]],
        config: GenerationConfig | None,
        *,
        progress: ProgressCallback | None = None,
        cancel: Cancel = None,
        context: dict[str, Any] | None = None,
    ) -> Sequence[GenerationRecord]:
        """Make the images (inputs already checked); stop at ``cancel`` with ``GenerationCancelled``.
        ``config`` None means the backend's own settings (a server's route)."""
        ...

    def accelerated(self, config: AccelerationConfig) -> AbstractContextManager[AccelerationConfig]:
        """A block in which images are made with ``config``'s toggles; undone after it."""
        ...


def is_cancelled(cancel: Cancel) -> bool:
    """Whether ``cancel`` (None, a ``threading.Event`` or a callable) asks to stop."""
    if cancel is None:
        return False
    return cancel.is_set() if hasattr(cancel, "is_set") else bool(cancel())
