"""A study's progress, from the engine in its kernel to the ``workbench run`` that started it.

``watching`` names a file in $WORKBENCH_PROGRESS for the study's kernel. Each engine pass there (``execute``:
an evaluation, an A/B test, a benchmark round) rewrites it after every batch (``reported``): the pass's number,
images done of its total, seconds so far. ``watching`` reads it every second and shows one line
(``ProgressLine``): redrawn in place on a terminal, else written at most once a minute and when the study ends.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO, TypeVar

__all__ = ["PROGRESS_ENV", "ProgressLine", "Watch", "read_progress", "reported", "watching"]

PROGRESS_ENV = "WORKBENCH_PROGRESS"
Result = TypeVar("Result")


def reported(sink: Callable[[Result], None], total: int, images: Callable[[Result], int]) -> Callable[[Result], None]:
    """``sink``, then each result's ``images`` counted as done (one pass of ``total`` images) in the file that
    $WORKBENCH_PROGRESS names; ``sink`` itself where it names none."""
    if not os.environ.get(PROGRESS_ENV):
        return sink
    path, start = Path(os.environ[PROGRESS_ENV]), time.monotonic()
    state = {"pass": (read_progress(path) or {}).get("pass", 0) + 1, "done": 0, "total": total}

    def write() -> None:
        temporary = path.with_name(f"{path.name}.{os.getpid()}")
        temporary.write_text(json.dumps(state | {"elapsed": time.monotonic() - start, "time": time.time()}))
        os.replace(temporary, path)  # the reader sees the old state or the new one, never half of one

    def report(result: Result) -> None:
        sink(result)
        state["done"] += images(result)
        write()

    write()
    return report


def read_progress(path: Path) -> dict[str, Any] | None:
    """The last state written to ``path``, or None before the first."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


class _Latest:
    """A file for papermill's tqdm bar: keeps the last text written (``5/12 cells``)."""

    text = ""

    def write(self, text: str) -> None:
        self.text = text.strip() or self.text

    def flush(self) -> None:
        pass


class ProgressLine:
    """One line of a study's progress on ``stream``: elapsed time, cells run, the engine pass's images and the
    time it has left. Redrawn in place on a terminal; else written at most every ``every`` seconds, and at the
    end (a log file gets a line a minute, however long a cell runs)."""

    def __init__(self, stream: TextIO, every: float = 60.0, clock: Callable[[], float] = time.monotonic):
        self.stream, self.every, self.clock = stream, every, clock
        self.terminal = stream.isatty()
        self.cells = _Latest()
        self.started, self.written, self.width = clock(), None, 0

    def text(self, state: dict[str, Any] | None) -> str:
        parts = [_duration(self.clock() - self.started), self.cells.text]
        if state:
            done, total = state["done"], state["total"]
            parts.append(f"pass {state['pass']}: {done}/{total} images")
            if 0 < done < total:
                left = state["elapsed"] * (total - done) / done - (time.time() - state["time"])
                parts[-1] += f", about {_duration(max(left, 0))} left"
        return " · ".join(filter(None, parts))

    def show(self, state: dict[str, Any] | None, *, last: bool = False) -> None:
        text = self.text(state)
        if self.terminal:
            self.stream.write("\r" + text.ljust(self.width) + ("\n" if last else ""))
            self.width = len(text)
        elif last or self.written is None or self.clock() - self.written >= self.every:
            self.stream.write(text + "\n")
            self.written = self.clock()
        self.stream.flush()


@dataclass(frozen=True)
class Watch:
    """What a watched study's kernel and papermill are given: the kernel's ``environment`` and papermill's
    ``cell_bar`` (its tqdm options, writing into the line)."""

    environment: dict[str, str]
    cell_bar: dict[str, Any]


@contextmanager
def watching(stream: TextIO, every: float = 60.0) -> Iterator[Watch]:
    """Show on ``stream`` the progress a study's kernel reports (``ProgressLine``) until the block ends."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "progress.json"
        line, stop = ProgressLine(stream, every), threading.Event()

        def poll() -> None:
            while not stop.wait(1.0):
                line.show(read_progress(path))

        thread = threading.Thread(target=poll, name="study-progress", daemon=True)
        thread.start()
        try:
            yield Watch(
                {PROGRESS_ENV: str(path)},
                {"file": line.cells, "bar_format": "{n_fmt}/{total_fmt} cells", "mininterval": 0},
            )
        finally:
            stop.set()
            thread.join()
            line.show(read_progress(path), last=True)


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"
