"""Running parameterized study notebooks with papermill into shareable, self-describing run folders.

``run_study(notebook, parameters)`` does, in order::

    0. find the notebook: a path, or the name of a study that ships with the package (``find_study``)
    1. check the parameters against the notebook's ``parameters`` cell (``study_parameters``, before any kernel)
    2. execute it with papermill on the running interpreter's kernel (``study_kernel``) -> executed.ipynb,
       its progress shown on the console meanwhile (``progress``)
    3. render report.html (nbconvert, code hidden, images embedded)
    4. write manifest.json (parameters, versions, git commit, device, timing, outcome, the study's headline)
    5. refresh outputs/index.html, the list of every run (``run_index``)

A failing cell still leaves executed.ipynb (with papermill's banner), a report and a manifest, then
raises ``NotebookRunError`` naming the cell and the error.
"""

from __future__ import annotations

import platform
import subprocess
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workbench.errors import ConfigError, NotebookRunError
from workbench.progress import watching
from workbench.resources import package_version
from workbench.run_folder import RunFolder, new_run_id, read_manifest
from workbench.run_index import table_page, write_index
from workbench.study_kernel import interpreter_kernel
from workbench.study_notebooks import describe_studies, find_study, study_metadata
from workbench.study_parameters import check_parameters, check_study_metrics, current_parameters, notebook_parameters

# The names of the modules split out of this one stay importable from here.
__all__ = [
    "StudyRun",
    "check_parameters",
    "check_study_metrics",
    "describe_studies",
    "find_study",
    "notebook_parameters",
    "run_study",
    "table_page",
    "write_index",
]

# A kernel can die while starting, before any cell runs (a port another kernel starting beside it took, as
# happens to sweep points started together): the run then starts another, up to this many in all.
KERNEL_STARTS = 3
_KERNEL_DIED = "Kernel died before replying to kernel_info"


@dataclass(frozen=True)
class StudyRun:
    """Where a finished study run lies."""

    folder: Path
    report: Path
    manifest: dict[str, Any]


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, cwd=Path(__file__).parent
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def _environment() -> dict[str, Any]:
    import diffusers
    import torch
    import transformers

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else platform.processor() or "cpu"
    return {
        "versions": {
            "workbench": package_version(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "diffusers": diffusers.__version__,
            "transformers": transformers.__version__,
        },
        "git_commit": _git_commit(),
        "device": device,
        "host": platform.node(),
    }


def _render_report(executed: Path, report: Path) -> None:
    import nbformat
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(
        exclude_input=True, exclude_input_prompt=True, exclude_output_prompt=True, embed_images=True
    )
    body, _ = exporter.from_notebook_node(nbformat.read(executed, as_version=4))
    report.write_text(body)


def run_study(
    notebook: str | Path,
    parameters: dict[str, Any] | None = None,
    *,
    output_root: str | Path = "outputs",
    progress: bool = True,
    resume: str | Path | None = None,
) -> StudyRun:
    """Execute ``notebook`` (a path, or a bundled study's name: see ``find_study``) with ``parameters`` into
    ``output_root/<study>/<run_id>/`` (see module docstring). ``progress``: one line on stderr of cells run and
    of the engine's images made, with the time left (``workbench.progress``).

    ``resume`` names an earlier run (its folder, or its run id under ``output_root/<study>``): the notebook
    runs again in that folder with that run's parameters (``parameters`` override them), and the
    evaluation inside it only does what the earlier run had not stored.
    """
    import papermill
    from papermill.exceptions import PapermillExecutionError

    notebook = find_study(notebook)
    parameters = dict(parameters or {})
    # 1. The run folder: a new one named by time and parameters, or the one being resumed.
    if resume is not None:
        folder = _earlier_run(Path(output_root) / notebook.stem, resume)
        earlier = read_manifest(folder)
        parameters = {k: v for k, v in earlier["parameters"].items() if k != "output_dir"} | parameters
        run_id = earlier["run_id"]
    parameters = current_parameters(notebook, parameters)
    check_parameters(notebook, parameters)
    check_study_metrics(notebook, parameters)
    if resume is None:
        run_id = new_run_id(parameters)
        folder = Path(output_root) / notebook.stem / run_id
        folder.mkdir(parents=True, exist_ok=False)
    run = RunFolder(folder, run_id)
    if "output_dir" in notebook_parameters(notebook):
        parameters["output_dir"] = str(folder.resolve())
    executed, report = folder / "executed.ipynb", folder / "report.html"
    manifest: dict[str, Any] = {
        "study": notebook.stem,
        "notebook": str(notebook),
        "parameters": parameters,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "status": "running",  # until the run ends: a killed run says so in the index
        "headline": study_metadata(notebook).get("headline"),  # what the index shows of the summary rows
        **_environment(),
    }
    run.write_manifest(manifest)
    # 2. Execute on this interpreter's kernel, its progress shown on the console.
    failure: NotebookRunError | None = None
    start = time.perf_counter()
    shown = watching(sys.stderr) if progress else nullcontext()
    with shown as watch, interpreter_kernel(watch.environment if watch else None) as kernel:
        for attempt in range(KERNEL_STARTS):
            try:
                papermill.execute_notebook(
                    str(notebook),
                    str(executed),
                    parameters=parameters,
                    kernel_name=kernel,
                    progress_bar=watch.cell_bar if watch else False,
                    cwd=str(Path.cwd()),
                )
            except PapermillExecutionError as error:
                failure = NotebookRunError(executed, error.cell_index, error.ename, error.evalue)
            except RuntimeError as error:  # a kernel that died starting, before any cell ran: start another
                if _KERNEL_DIED not in str(error) or attempt == KERNEL_STARTS - 1:
                    raise
                continue
            break
    # 3-5. Report, manifest, index: written for failed runs too.
    _render_report(executed, report)
    manifest |= {
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "seconds": round(time.perf_counter() - start, 1),
        "status": "failed" if failure else "ok",
        "error": str(failure) if failure else None,
    }
    run.export_if_stale()  # results.parquet from the rows stored, whether or not the notebook saved them
    manifest |= run.manifest_facts()
    run.write_manifest(manifest)
    write_index(output_root)
    if failure:
        raise failure
    return StudyRun(folder, report, manifest)


def _earlier_run(study_root: Path, resume: str | Path) -> Path:
    for folder in (Path(resume), study_root / str(resume)):
        if (folder / "manifest.json").is_file():
            return folder
    runs = sorted(p.parent.name for p in study_root.glob("*/manifest.json"))
    raise ConfigError(f"no earlier run {str(resume)!r} to resume; runs of this study: {runs or '(none)'}")
