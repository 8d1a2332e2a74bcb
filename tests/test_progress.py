import io
import json
import time

from workbench.progress import PROGRESS_ENV, ProgressLine, read_progress, reported
from workbench.studies import run_study


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _state(done: int, total: int = 6, elapsed: float = 10.0, pass_: int = 1) -> dict:
    return {"pass": pass_, "done": done, "total": total, "elapsed": elapsed, "time": time.time()}


def test_the_line_says_images_done_and_the_time_left():
    clock = Clock()
    line = ProgressLine(io.StringIO(), clock=clock)
    clock.now = 75
    assert line.text(None) == "1:15"
    line.cells.write("\r3/12 cells   ")
    assert line.text(_state(2)) == "1:15 · 3/12 cells · pass 1: 2/6 images, about 0:20 left"  # 10 s for 2: 20 s
    assert line.text(_state(6, pass_=2)) == "1:15 · 3/12 cells · pass 2: 6/6 images"


def test_on_a_terminal_the_line_is_redrawn_in_place():
    stream, clock = Terminal(), Clock()
    line = ProgressLine(stream, clock=clock)
    for done in range(7):
        clock.now += 1
        line.show(_state(done))
    line.show(_state(6), last=True)
    written = stream.getvalue()
    assert written.count("\r") == 8 and written.count("\n") == 1 and written.endswith("pass 1: 6/6 images\n")


def test_elsewhere_a_line_is_written_at_most_once_a_minute_and_at_the_end():
    stream, clock = io.StringIO(), Clock()
    line = ProgressLine(stream, clock=clock)
    for second in range(600):  # ten minutes in one cell, polled every second
        clock.now = second
        line.show(_state(min(second // 100, 6)))
    clock.now = 600
    line.show(_state(6), last=True)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 11 and "\r" not in stream.getvalue()
    assert lines[1].startswith("1:00 ") and lines[-1] == "10:00 · pass 1: 6/6 images"


def test_each_engine_pass_is_reported_to_the_file_named(tmp_path, monkeypatch):
    made = []
    store = made.append
    monkeypatch.delenv(PROGRESS_ENV, raising=False)
    assert reported(store, 3, len) is store  # nobody watching: the sink as it was
    path = tmp_path / "progress.json"
    monkeypatch.setenv(PROGRESS_ENV, str(path))
    for _ in range(2):
        sink = reported(store, 3, len)
        assert read_progress(path)["done"] == 0
        sink([1, 2])
        sink([3])
    state = read_progress(path)
    assert (state["pass"], state["done"], state["total"]) == (2, 3, 3) and made == [[1, 2], [3]] * 2
    assert [p.name for p in tmp_path.iterdir()] == ["progress.json"]


def test_a_study_shows_its_engine_passes_on_the_console(tmp_path, capfd, write_notebook):
    notebook = write_notebook(
        tmp_path / "passes.ipynb",
        'output_dir = "."',
        "import json, os\nfrom pathlib import Path\nfrom types import SimpleNamespace\n\n"
        "from workbench.engine import execute\n\n"
        "batches = [SimpleNamespace(units=(0, 1)), SimpleNamespace(units=(2,))]\n"
        "for _ in range(2):\n"
        "    execute(batches, None, lambda result: None, runner=lambda batch: SimpleNamespace(rows=batch.units))\n"
        f'Path(output_dir, "env.json").write_text(json.dumps("{PROGRESS_ENV}" in os.environ))',
    )
    run = run_study(notebook, {}, output_root=tmp_path / "out")
    err = capfd.readouterr().err
    assert "cells · pass 2: 3/3 images\n" in err and err.count("\n") <= 3, err
    assert json.loads((run.folder / "env.json").read_text()) is True
    run = run_study(notebook, {}, output_root=tmp_path / "out", progress=False)
    assert "images" not in capfd.readouterr().err
    assert json.loads((run.folder / "env.json").read_text()) is False
