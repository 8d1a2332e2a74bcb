"""Running a widget's work on a background thread, with progress and errors shown in words."""

from __future__ import annotations

import html
import threading
from collections.abc import Callable

import ipywidgets as w

from workbench.errors import GenerationCancelled, WorkbenchError

__all__ = ["Job"]


class Job:
    """One piece of work at a time on a daemon thread: a progress bar fed by ``progress(done, total)``,
    a Cancel button that sets ``cancel``, and a status line that shows the outcome or the error."""

    def __init__(self):
        self.progress_bar = w.IntProgress(value=0, min=0, max=1, description="", layout=w.Layout(width="320px"))
        self.cancel_button = w.Button(description="Cancel", icon="stop", disabled=True)
        self.status = w.HTML("")
        self.cancel = threading.Event()
        self.cancel_button.on_click(lambda _: self.cancel.set())
        self._thread: threading.Thread | None = None
        self.error: str | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def progress(self, done: int, total: int) -> None:
        self.progress_bar.max = max(1, total)
        self.progress_bar.value = min(done, total)

    def say(self, text: str, *, error: bool = False) -> None:
        colour = "#b00020" if error else "#333"
        self.status.value = f'<span style="color:{colour}">{html.escape(text, quote=False)}</span>'

    def start(self, work: Callable[[], str | None], buttons: list[w.Button]) -> None:
        """Run ``work`` (returning a line for the status) with ``buttons`` disabled until it ends."""
        if self.running:
            self.say("still working on the last request", error=True)
            return
        self.cancel.clear()
        self.error = None
        self.progress_bar.value = 0
        self.say("working...")

        def run() -> None:
            for button in buttons:
                button.disabled = True
            self.cancel_button.disabled = False
            try:
                self.say(work() or "done")
            except GenerationCancelled as stopped:
                self.say(f"cancelled ({len(stopped.records)} image(s) had finished)")
            except WorkbenchError as error:
                self.error = str(error)
                self.say(f"error: {error}", error=True)
            except Exception as error:  # shown in the widget, in words, not as a traceback wall
                self.error = f"{type(error).__name__}: {error}"
                self.say(f"error: {self.error}", error=True)
            finally:
                for button in buttons:
                    button.disabled = False
                self.cancel_button.disabled = True

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    def wait(self, timeout: float | None = None) -> None:
        """Block until the current work ends (for scripts and tests)."""
        if self._thread is not None:
            self._thread.join(timeout)

    def view(self) -> w.Widget:
        return w.HBox([self.progress_bar, self.cancel_button, self.status])
