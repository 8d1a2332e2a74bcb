"""The kernel a study runs on: this very interpreter, found before any other kernelspec on the machine.

It starts as ``python -m workbench.study_kernel``: ipykernel_launcher, less two kinds of chatter. The console:
the kernel's warning that it runs over TCP without encryption (it listens on the loopback address for the
papermill that started it, with a signing key of its own; its other messages, errors among them, still show).
The report: diffusers' "Loading pipeline components..." bars, which no environment variable turns off (the
kernelspec's env quiets transformers and the hub) and which would be frozen widgets: off as diffusers' logging
module loads.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import sys
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

__all__ = ["interpreter_kernel"]

# Library chatter (download bars, backend notices) would end up in the report; errors still show.
QUIET = {"TRANSFORMERS_VERBOSITY": "error", "DIFFUSERS_VERBOSITY": "error", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}


@contextmanager
def interpreter_kernel(env: Mapping[str, str] | None = None) -> Iterator[str]:
    """The name of a kernelspec that runs this interpreter, with ``env`` added to the kernel's environment."""
    name = "workbench-study"
    with tempfile.TemporaryDirectory() as folder:
        spec = Path(folder) / "kernels" / name
        spec.mkdir(parents=True)
        argv = [sys.executable, "-m", "workbench.study_kernel", "-f", "{connection_file}"]
        spec_json = {"argv": argv, "display_name": name, "language": "python", "env": {**QUIET, **(env or {})}}
        (spec / "kernel.json").write_text(json.dumps(spec_json))
        previous = os.environ.get("JUPYTER_PATH")
        os.environ["JUPYTER_PATH"] = os.pathsep.join(filter(None, [folder, previous]))
        try:
            yield name
        finally:
            if previous is None:
                os.environ.pop("JUPYTER_PATH", None)
            else:
                os.environ["JUPYTER_PATH"] = previous


class _QuietDiffusers:
    """An import hook: diffusers' logging module, once loaded, with its progress bars off."""

    def find_spec(self, name, path=None, target=None):
        if name != "diffusers.utils.logging":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        load = spec.loader.exec_module

        def exec_module(module):
            load(module)
            getattr(module, "disable_progress_bar", lambda: None)()

        spec.loader.exec_module = exec_module
        return spec


def _launch() -> None:
    if sys.path and sys.path[0] in ("", os.getcwd()):  # as ipykernel_launcher: the kernel puts it back
        del sys.path[0]
    logging.getLogger("IPKernelApp").addFilter(lambda record: "without encryption" not in record.getMessage())
    sys.meta_path.insert(0, _QuietDiffusers())
    from ipykernel import kernelapp

    kernelapp.launch_new_instance()


if __name__ == "__main__":
    _launch()
