"""Running parameterized study notebooks with papermill into shareable, self-describing run folders.

``run_study(notebook, parameters)`` does, in order::

    1. check the parameters against the notebook's ``parameters`` cell (before any kernel starts)
    2. execute it with papermill on the running interpreter's kernel -> executed.ipynb
    3. render report.html (nbconvert, code hidden, images embedded)
    4. write manifest.json (parameters, versions, git commit, device, timing, outcome)
    5. refresh outputs/index.html, the list of every run

A failing cell still leaves executed.ipynb (with papermill's banner), a report and a manifest, then
raises ``NotebookRunError`` naming the cell and the error.
"""

from __future__ import annotations

import ast
import hashlib
import html
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from workbench.errors import ConfigError, NotebookRunError

__all__ = [
    "StudyRun",
    "check_parameters",
    "notebook_parameters",
    "run_study",
    "save_study_results",
    "table_page",
    "write_index",
]

_TYPES = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,), "list": (list,), "dict": (dict,)}


@dataclass(frozen=True)
class StudyRun:
    """Where a finished study run lies."""

    folder: Path
    report: Path
    manifest: dict[str, Any]


def notebook_parameters(notebook: str | Path) -> dict[str, dict[str, Any]]:
    """The notebook's parameters: name -> {default, type}, from papermill's reading of the parameters cell.
    The type is the annotation's when there is one, else that of the default value."""
    import papermill

    found = papermill.inspect_notebook(str(notebook))
    if not found:
        raise ConfigError(f"{notebook} has no cell tagged 'parameters'")
    return {name: {"default": p["default"], "type": _type_name(p)} for name, p in found.items()}


def _type_name(parameter: dict[str, Any]) -> str:
    if parameter["inferred_type_name"] not in {"None", None}:
        return parameter["inferred_type_name"]
    try:
        return type(ast.literal_eval(parameter["default"])).__name__
    except (ValueError, SyntaxError):
        return "unknown"


def check_parameters(notebook: str | Path, parameters: dict[str, Any]) -> None:
    """Refuse unknown names and values whose type differs from the default's, naming them."""
    known = notebook_parameters(notebook)
    unknown = sorted(set(parameters) - set(known))
    if unknown:
        raise ConfigError(f"unknown parameter(s) {unknown} for {Path(notebook).name}; valid: {sorted(known)}")
    for name, value in parameters.items():
        allowed = _TYPES.get(known[name]["type"])
        wrong_bool = isinstance(value, bool) and known[name]["type"] in {"int", "float"}
        if allowed and (not isinstance(value, allowed) or wrong_bool):
            raise ConfigError(
                f"parameter {name!r} must be {known[name]['type']} (default {known[name]['default']}), "
                f"got {type(value).__name__} {value!r}"
            )


@contextmanager
def _interpreter_kernel() -> Iterator[str]:
    """A kernelspec that runs this very interpreter, found before any other kernelspec on the machine."""
    name = "workbench-study"
    with tempfile.TemporaryDirectory() as folder:
        spec = Path(folder) / "kernels" / name
        spec.mkdir(parents=True)
        argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
        # Library chatter (download bars, backend notices) would end up in the report; errors still show.
        env = {"TRANSFORMERS_VERBOSITY": "error", "DIFFUSERS_VERBOSITY": "error", "HF_HUB_DISABLE_PROGRESS_BARS": "1"}
        spec_json = {"argv": argv, "display_name": name, "language": "python", "env": env}
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

    from workbench import __version__

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else platform.processor() or "cpu"
    return {
        "versions": {
            "workbench": __version__,
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


def save_study_results(results: pd.DataFrame, summary: pd.DataFrame, output_dir: str | Path) -> None:
    """What a study notebook leaves for its manifest and the run index: results.parquet and summary.json."""
    output_dir = Path(output_dir)
    results.to_parquet(output_dir / "results.parquet", index=False)
    (output_dir / "summary.json").write_text(summary.to_json(orient="records", indent=2))


def run_study(
    notebook: str | Path,
    parameters: dict[str, Any] | None = None,
    *,
    output_root: str | Path = "outputs",
    progress: bool = True,
    resume: str | Path | None = None,
) -> StudyRun:
    """Execute ``notebook`` with ``parameters`` into ``output_root/<study>/<run_id>/`` (see module docstring).

    ``resume`` names an earlier run (its folder, or its run id under ``output_root/<study>``): the notebook
    runs again in that folder with that run's parameters (``parameters`` override them), and the
    evaluation inside it only does what the earlier run had not stored.
    """
    import papermill
    from papermill.exceptions import PapermillExecutionError

    notebook = Path(notebook)
    if not notebook.is_file():
        raise ConfigError(f"no notebook at {notebook}")
    parameters = dict(parameters or {})
    # 1. The run folder: a new one named by time and parameters, or the one being resumed.
    if resume is not None:
        folder = _earlier_run(Path(output_root) / notebook.stem, resume)
        earlier = json.loads((folder / "manifest.json").read_text())
        parameters = {k: v for k, v in earlier["parameters"].items() if k != "output_dir"} | parameters
        run_id = earlier["run_id"]
    check_parameters(notebook, parameters)
    if resume is None:
        digest = hashlib.sha256(json.dumps(parameters, sort_keys=True, default=str).encode()).hexdigest()[:6]
        run_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{digest}"
        folder = Path(output_root) / notebook.stem / run_id
        folder.mkdir(parents=True, exist_ok=False)
    if "output_dir" in notebook_parameters(notebook):
        parameters["output_dir"] = str(folder.resolve())
    executed, report = folder / "executed.ipynb", folder / "report.html"
    manifest: dict[str, Any] = {
        "study": notebook.stem,
        "run_id": run_id,
        "notebook": str(notebook),
        "parameters": parameters,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "status": "running",  # until the run ends: a killed run says so in the index
        **_environment(),
    }
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str))
    # 2. Execute on this interpreter's kernel.
    failure: NotebookRunError | None = None
    start = time.perf_counter()
    with _interpreter_kernel() as kernel:
        try:
            papermill.execute_notebook(
                str(notebook),
                str(executed),
                parameters=parameters,
                kernel_name=kernel,
                progress_bar=progress,
                cwd=str(Path.cwd()),
            )
        except PapermillExecutionError as error:
            failure = NotebookRunError(executed, error.cell_index, error.ename, error.evalue)
    # 3-5. Report, manifest, index: written for failed runs too.
    _render_report(executed, report)
    manifest |= {
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "seconds": round(time.perf_counter() - start, 1),
        "status": "failed" if failure else "ok",
        "error": str(failure) if failure else None,
    }
    summary = folder / "summary.json"
    if summary.is_file():
        manifest["summary"] = json.loads(summary.read_text())
    if (folder / "results.parquet").is_file():
        results = pd.read_parquet(folder / "results.parquet")
        manifest["images"] = len(results)
        for key, column, cast in (
            ("model_ids", "model_id", str),
            ("seeds", "seed", int),
            ("clip_model", "clip_model", str),
        ):
            if column in results:
                manifest[key] = sorted(cast(v) for v in results[column].dropna().unique())
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str))
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


def _headline(manifest: dict[str, Any]) -> str:
    parts = []
    for row in manifest.get("summary") or []:
        figures = [f"{row['latency_mean_s']:.3f} s/img"] if row.get("latency_mean_s") is not None else []
        figures += [f"CLIP {row['clip_mean']:.1f}"] if row.get("clip_mean") is not None else []
        parts.append(f"{row.get('model_id') or row.get('arm')}: {', '.join(figures)}")
    return "; ".join(parts)


def write_index(output_root: str | Path) -> Path:
    """outputs/index.html: every run (newest first) with its parameters, headline numbers and report link."""
    root = Path(output_root)
    manifests = []
    for path in root.glob("*/*/manifest.json"):
        try:
            manifests.append((path.parent, json.loads(path.read_text())))
        except json.JSONDecodeError:
            continue
    manifests.sort(key=lambda item: item[1].get("started", ""), reverse=True)
    rows = "\n".join(
        "<tr><td>{study}</td><td>{started}</td><td>{status}</td><td><code>{params}</code></td><td>{headline}</td>"
        '<td><a href="{link}">report</a></td></tr>'.format(
            study=html.escape(m.get("study", "")),
            started=html.escape(m.get("started", "")),
            status=html.escape(m.get("status", "")),
            params=html.escape(json.dumps({k: v for k, v in m.get("parameters", {}).items() if k != "output_dir"})),
            headline=html.escape(_headline(m)),
            link=html.escape(str((folder / "report.html").relative_to(root))),
        )
        for folder, m in manifests
    )
    index = root / "index.html"
    headers = ["study", "started", "status", "parameters", "headline", ""]
    index.write_text(table_page("t2i-workbench runs", "Study runs", headers, rows))
    return index


def table_page(title: str, heading: str, headers: list[str], rows: str) -> str:
    """A plain HTML page with one table (an index of runs or of a sweep's points); ``rows`` is <tr> markup."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    return (
        f"<!doctype html><meta charset='utf-8'><title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif}td,th{padding:4px 8px;border-bottom:1px solid #ddd;"
        f"vertical-align:top}}</style><h1>{html.escape(heading)}</h1><table><tr>{head}</tr>\n{rows}\n</table>"
    )
