"""diffusers and transformers are quiet unless asked: no warnings, no loading bars, by default."""

import json
import logging
import os
import subprocess
import sys

import pytest

import workbench as wb
from workbench.cli import main
from workbench.errors import ConfigError
from workbench.verbosity import VERBOSITY_ENV

LONG = " ".join(["a photo of a large red circle on the left and a small blue square on the right"] * 6)  # > 77 tokens
LIBRARIES = ("diffusers", "transformers")


@pytest.fixture
def library_logs(caplog, monkeypatch):
    """The libraries' log records (their loggers do not propagate to the root logger caplog listens on); the
    verbosity as it was afterwards."""
    monkeypatch.setenv(VERBOSITY_ENV, "error")
    monkeypatch.delenv(VERBOSITY_ENV)  # the default, and restored after the test
    for name in LIBRARIES:
        logging.getLogger(name).addHandler(caplog.handler)
    yield caplog
    for name in LIBRARIES:
        logging.getLogger(name).removeHandler(caplog.handler)
    wb.set_verbosity(False)


def _load_and_generate(library_logs, capsys) -> tuple[list[logging.LogRecord], str]:
    library_logs.clear()
    capsys.readouterr()
    pipe = wb.load("toyworld/sd-small", device="cpu", cache=None)
    (record,) = wb.generate(pipe, LONG, wb.GenerationConfig(steps=2), seeds=0)
    assert record.tokens.truncated  # the row says so: the library need not
    library = [r for r in library_logs.records if r.name.split(".")[0] in LIBRARIES and r.levelno >= logging.WARNING]
    return library, capsys.readouterr().err


def test_loading_and_generating_say_nothing_by_default_and_everything_when_verbose(library_logs, capsys):
    records, err = _load_and_generate(library_logs, capsys)
    assert not records, [r.getMessage()[:120] for r in records]
    assert "Loading pipeline components" not in err and "it/s" not in err, err
    wb.set_verbosity(True)
    records, err = _load_and_generate(library_logs, capsys)
    assert any("truncated because CLIP can only handle" in r.getMessage() for r in records)
    assert "Loading pipeline components" in err


def test_a_level_or_its_name_is_taken_and_applied_to_the_imported_libraries(library_logs):
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    for verbose, level in [("info", logging.INFO), (logging.DEBUG, logging.DEBUG), (False, logging.ERROR),
                           ("Warning", logging.WARNING), (True, logging.WARNING)]:  # fmt: skip
        wb.set_verbosity(verbose)
        assert os.environ[VERBOSITY_ENV] == str(level)  # what worker processes and study kernels inherit
        assert diffusers_logging.get_verbosity() == transformers_logging.get_verbosity() == level
        assert diffusers_logging.is_progress_bar_enabled() == (level <= logging.WARNING)
    for bad in ("loud", -1, 2.5, None):
        with pytest.raises(ConfigError, match=rf"verbosity must be True, False, a logging level .* got {bad!r}"):
            wb.set_verbosity(bad)
    os.environ[VERBOSITY_ENV] = "loud"
    with pytest.raises(ConfigError, match=rf"got 'loud' \(set_verbosity, or \${VERBOSITY_ENV}\)"):
        wb.load("toyworld/sd-small", device="cpu", cache=None)


def test_the_command_takes_verbose(library_logs, capsys):
    assert main(["models"]) == 0
    assert VERBOSITY_ENV not in os.environ
    assert main(["--verbose", "models"]) == 0 and "toyworld/sd-small" in capsys.readouterr().out
    assert os.environ[VERBOSITY_ENV] == str(logging.WARNING)


def test_choosing_a_verbosity_imports_neither_library():
    script = (
        "import json, sys, workbench as wb; wb.set_verbosity(True); "
        "print(json.dumps([m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert json.loads(out) == []
