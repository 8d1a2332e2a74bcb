"""The README's Python examples run as written: in order, in one namespace, in a new process in an empty
folder, as a new user would paste them. A block whose first line starts with ``# not run in tests:`` (one that
needs a server) is skipped; other languages' blocks are not run."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import workbench

README = Path(__file__).parent.parent / "README.md"
SKIP = "# not run in tests:"

# Runs each block compiled as README.md at its own lines, so that a failure names the README's line.
RUNNER = """
import json, sys
for line, code in json.load(open(sys.argv[1])):
    exec(compile("\\n" * (line - 1) + code, "README.md", "exec"), globals())
"""


def python_blocks(text: str) -> list[tuple[int, str]]:
    """(line of the block's first line of code, code) of each ```python block, in order."""
    return [
        (text.count("\n", 0, match.start(1)) + 1, match.group(1))
        for match in re.finditer(r"^```python\n(.*?)^```", text, flags=re.M | re.S)
    ]


def test_the_readme_has_python_examples_that_compile_and_few_are_skipped():
    blocks = python_blocks(README.read_text())
    assert len(blocks) >= 8
    for line, code in blocks:
        compile("\n" * (line - 1) + code, "README.md", "exec")
    skipped = [line for line, code in blocks if code.startswith(SKIP)]
    assert len(skipped) <= 2, f"README blocks skipped in tests, at lines {skipped}"


@pytest.mark.slow
def test_the_readme_python_examples_run_in_order(tmp_path):
    blocks = [(line, code) for line, code in python_blocks(README.read_text()) if not code.startswith(SKIP)]
    (tmp_path / "blocks.json").write_text(json.dumps(blocks))
    env = {
        **os.environ,
        "PYTHONPATH": str(Path(workbench.__file__).parent.parent),  # this checkout, whatever is installed
        "HF_HUB_OFFLINE": "1",
        "MPLBACKEND": "Agg",
        # one thread: on a machine shared with other jobs, torch's threads spinning for cores slow it a hundredfold
        "OMP_NUM_THREADS": "1",
    }
    done = subprocess.run(
        [sys.executable, "-c", RUNNER, "blocks.json"], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-6000:]
    assert (tmp_path / "outputs" / "my-eval" / "results.parquet").is_file()  # the examples' files, where they say
