"""Running parameterized study notebooks with papermill into shareable, self-describing run folders.

``run_study(notebook, parameters)`` does, in order::

    0. find the notebook: a path, or the name of a study that ships with the package (``find_study``)
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

from workbench.errors import ConfigError, NotebookRunError
from workbench.resources import bundled_studies, package_version
from workbench.run_folder import RunFolder, new_run_id, read_manifest

__all__ = [
    "StudyRun",
    "check_parameters",
    "check_study_metrics",
    "notebook_parameters",
    "run_study",
    "table_page",
    "write_index",
]

# What a parameter's type admits; an int is a fine float, a bool is no number. Other names are not checked.
_TYPES = {
    "int": (int,),
    "float": (int, float),
    "str": (str,),
    "bool": (bool,),
    "list": (list,),
    "List": (list,),
    "dict": (dict,),
    "Dict": (dict,),
    "None": (type(None),),
}


@dataclass(frozen=True)
class StudyRun:
    """Where a finished study run lies."""

    folder: Path
    report: Path
    manifest: dict[str, Any]


def find_study(name_or_path: str | Path) -> Path:
    """The notebook a study argument means: an existing file wins, else a bundled study by name
    (``01_model_evaluation``, ``.ipynb`` optional)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    bundled = bundled_studies()
    name = path.name.removesuffix(".ipynb")
    if len(path.parts) == 1 and name in bundled:
        return bundled[name]
    raise ConfigError(
        f"no study {str(name_or_path)!r}: no notebook file there, and no bundled study of that name; "
        f"bundled studies: {sorted(bundled)}",
        "notebook",
    )


def describe_studies() -> list[tuple[str, str]]:
    """Each bundled study's name with a one-line description: its notebook's first markdown heading."""
    described = []
    for name, path in bundled_studies().items():
        cells = json.loads(path.read_text()).get("cells", [])
        markdown = ("".join(c["source"]) if isinstance(c["source"], list) else c["source"]
                    for c in cells if c.get("cell_type") == "markdown")  # fmt: skip
        lines = (line.strip() for text in markdown for line in text.splitlines())
        heading = next((line.lstrip("#").strip() for line in lines if line.startswith("#")), "")
        described.append((name, heading))
    return described


def notebook_parameters(notebook: str | Path) -> dict[str, dict[str, Any]]:
    """The parameters of a notebook (a path or a bundled study's name), read from its cell tagged
    ``parameters``: name -> {default, type}.

    ``default`` is the value's source text; ``type`` is the annotation as written (``device: str | None = None``
    gives ``"str | None"``), else the type name of the default value."""
    cells = _read_notebook(find_study(notebook)).cells
    cell = next((c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])), None)
    if cell is None:
        raise ConfigError(f"{notebook} has no cell tagged 'parameters'")
    try:
        tree = ast.parse(cell.source)
    except SyntaxError as error:
        raise ConfigError(
            f"{notebook}: the parameters cell is not plain Python ({error.msg}, line {error.lineno})"
        ) from None
    found = {}
    for node in tree.body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            name, annotation, value = node.target.id, node.annotation, node.value
        elif isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name, annotation, value = node.targets[0].id, None, node.value
        else:
            continue
        default = ast.get_source_segment(cell.source, value) or ast.unparse(value)
        found[name] = {"default": default, "type": _type_name(annotation, value, cell.source)}
    return found


def _read_notebook(path: Path):
    """The notebook at ``path`` (nbformat, version 4), or a one-line ConfigError naming the file and what is
    wrong with it: unreadable, not JSON, or JSON that is no notebook."""
    import nbformat
    from nbformat.reader import NotJSONError

    try:
        notebook = nbformat.read(str(path), as_version=4)
        cells = notebook.cells
        if not isinstance(cells, list) or not all(isinstance(c, dict) and "source" in c for c in cells):
            raise ValueError("its cells are not notebook cells")
    except OSError as error:
        reason = error.strerror or str(error)
    except UnicodeDecodeError:
        reason = "it is not a text file (not UTF-8)"
    except NotJSONError:
        reason = "it is not JSON (a .ipynb file is)"
    except Exception:  # JSON, but no notebook: nbformat's validation and conversion errors vary
        reason = "it is JSON but not a Jupyter notebook"
    else:
        return notebook
    raise ConfigError(f"cannot read {path} as a study notebook: {reason}", "notebook")


def _type_name(annotation: ast.expr | None, value: ast.expr, source: str) -> str:
    if isinstance(annotation, ast.Constant) and isinstance(annotation.value, str):
        return annotation.value  # a quoted annotation
    if annotation is not None:
        return ast.get_source_segment(source, annotation) or ast.unparse(annotation)
    try:
        return type(ast.literal_eval(value)).__name__
    except (ValueError, SyntaxError, TypeError):
        return "unknown"


def _admits(type_name: str, value: Any) -> bool | None:
    """Whether the annotation ``type_name`` admits ``value`` (``str | None``, ``Optional[int]``, ``list[int]``,
    ``Literal["local", "ray"]``, ``list[Literal["a", "b"]]``, ...), or None where it cannot tell (then any
    value goes)."""
    try:
        return _check(ast.parse(type_name, mode="eval").body, value)
    except SyntaxError:
        return None


def _check(node: ast.expr, value: Any) -> bool | None:
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
        return _any(_check(member, value) for member in (node.left, node.right))
    if isinstance(node, ast.Subscript):
        kind = _name(node.value)
        inner = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
        if kind == "Literal":
            choices = _choices(node)
            return None if choices is None else any(_same(value, choice) for choice in choices)
        if kind in {"Optional", "Union"}:
            members = [*inner, ast.Constant(None)] if kind == "Optional" else inner
            return _any(_check(member, value) for member in members)
        outer = _check(node.value, value)
        if outer and kind in {"list", "List"} and len(inner) == 1:  # list[X]: each item must be an X
            items = [_check(inner[0], item) for item in value]
            return False if False in items else outer
        return outer  # dict[str, int] is a dict; its items are not checked
    if isinstance(node, ast.Constant) and node.value is None:
        return value is None
    allowed = _TYPES.get(_name(node))
    if allowed is None:
        return None
    return isinstance(value, allowed) and (bool in allowed or not isinstance(value, bool))


def _any(results) -> bool | None:
    """True where any member admits the value, False where each refuses it, else None (cannot tell)."""
    results = list(results)
    return True if True in results else False if all(r is False for r in results) else None


def _same(value: Any, choice: Any) -> bool:
    """``value`` is the Literal's ``choice`` (True is not 1, 1.0 is not 1)."""
    return type(value) is type(choice) and value == choice


def _choices(node: ast.Subscript) -> list[Any] | None:
    """A ``Literal[...]``'s values, or None where one is not a plain constant."""
    elts = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
    try:
        return [ast.literal_eval(elt) for elt in elts]
    except ValueError:
        return None


def _literal_values(type_name: str) -> list[Any]:
    """The values the ``Literal[...]`` parts of an annotation name (none where it has no Literal)."""
    tree = ast.parse(type_name, mode="eval")
    literals = [n for n in ast.walk(tree) if isinstance(n, ast.Subscript) and _name(n.value) == "Literal"]
    return [choice for node in literals for choice in _choices(node) or []]


def _name(node: ast.expr) -> str:
    """``str`` for ``str``, ``Optional`` for ``typing.Optional``."""
    return node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else ""


def check_parameters(notebook: str | Path, parameters: dict[str, Any]) -> None:
    """Refuse unknown names, and values the parameter's type does not admit, naming them. The type is the
    annotation's (``device: str | None = None`` takes None or a string; ``worker_backend: Literal["local",
    "ray"] = "local"`` one of those two; ``classifiers: list[Literal["keyword", "embedding"]]`` a list of
    them), else the default value's."""
    known = notebook_parameters(notebook)
    unknown = sorted(set(parameters) - set(known))
    if unknown:
        raise ConfigError(f"unknown parameter(s) {unknown} for {Path(notebook).name}; valid: {sorted(known)}")
    for name, value in parameters.items():
        if _admits(known[name]["type"], value) is False:
            choices = _literal_values(known[name]["type"])
            hint = f"; one of {', '.join(map(repr, choices))}" if choices else ""
            raise ConfigError(
                f"parameter {name!r} must be {known[name]['type']} (default {known[name]['default']}), "
                f"got {type(value).__name__} {value!r}{hint}",
                name,
            )


def check_study_metrics(notebook: str | Path, parameters: dict[str, Any]) -> None:
    """For a study with a ``metrics`` parameter: refuse unknown metric names, and per-set metrics without a
    reference set for prompts with no known answer (``metrics.check_metrics``), before any kernel starts.
    The prompts are the ones the study loads: ``prompt_set``, ``categories`` and ``n_prompts``."""
    from workbench.metrics import check_metrics, set_metric_names
    from workbench.prompts import load_prompts

    known = notebook_parameters(notebook)
    if "metrics" not in known:
        return

    def value(name: str) -> Any:
        return parameters[name] if name in parameters else ast.literal_eval(known[name]["default"])

    names = value("metrics")
    prompts: list[str] = []
    if "prompt_set" in known and not isinstance(names, str) and set_metric_names(names):
        prompts = list(load_prompts(value("prompt_set"), categories=value("categories") or None,
                                    n=value("n_prompts") or None)["prompt"])  # fmt: skip
    check_metrics(names, prompts, reference_images=value("reference_images") if "reference_images" in known else None)


# ipykernel_launcher, less two kinds of chatter. The console: the kernel's warning that it runs over TCP
# without encryption (the study's kernel listens on the loopback address for the papermill that started it,
# with a signing key of its own; its other messages, errors among them, still show). The report: diffusers'
# "Loading pipeline components..." bars, which no environment variable turns off (the kernel's env below
# quiets transformers and the hub) and which would be frozen widgets: off as diffusers' logging module loads.
_KERNEL_LAUNCHER = """
import importlib.util, logging, sys

if sys.path and sys.path[0] == "":
    del sys.path[0]
logging.getLogger("IPKernelApp").addFilter(lambda record: "without encryption" not in record.getMessage())


class QuietDiffusers:
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


sys.meta_path.insert(0, QuietDiffusers())
from ipykernel import kernelapp

kernelapp.launch_new_instance()
"""


@contextmanager
def _interpreter_kernel() -> Iterator[str]:
    """A kernelspec that runs this very interpreter, found before any other kernelspec on the machine."""
    name = "workbench-study"
    with tempfile.TemporaryDirectory() as folder:
        spec = Path(folder) / "kernels" / name
        spec.mkdir(parents=True)
        argv = [sys.executable, "-c", _KERNEL_LAUNCHER, "-f", "{connection_file}"]
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
    ``output_root/<study>/<run_id>/`` (see module docstring).

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
        **_environment(),
    }
    run.write_manifest(manifest)
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


def _headline(manifest: dict[str, Any]) -> str:
    parts = []
    for row in manifest.get("summary") or []:
        figures = [f"{row['latency_mean_s']:.3f} s/img"] if row.get("latency_mean_s") is not None else []
        figures += [f"CLIP {row['clip_score_mean']:.1f}"] if row.get("clip_score_mean") is not None else []
        figures += [f"τ {row['kendall_tau']:.2f}"] if row.get("kendall_tau") is not None else []
        parts.append(f"{row.get('model_id') or row.get('arm') or row.get('metric')}: {', '.join(figures)}")
    return "; ".join(parts)


def write_index(output_root: str | Path) -> Path:
    """outputs/index.html: every run (newest first) with its parameters, headline numbers and report link,
    filterable by study, model and date (an inline script; the page needs nothing else and works offline)."""
    root = Path(output_root)
    manifests = []
    for path in root.glob("*/*/manifest.json"):
        try:
            manifests.append((path.parent, read_manifest(path)))
        except json.JSONDecodeError:
            continue
    manifests.sort(key=lambda item: item[1].get("started", ""), reverse=True)
    rows = "\n".join(
        '<tr data-study="{study}" data-models="{models}" data-started="{day}">'
        "<td>{study}</td><td>{started}</td><td>{status}</td><td><code>{params}</code></td><td>{headline}</td>"
        '<td><a href="{link}">report</a></td></tr>'.format(
            study=html.escape(m.get("study", "")),
            models=html.escape(json.dumps(_model_ids(m))),
            day=html.escape(m.get("started", "")[:10]),
            started=html.escape(m.get("started", "")),
            status=html.escape(m.get("status", "")),
            params=html.escape(json.dumps({k: v for k, v in m.get("parameters", {}).items() if k != "output_dir"})),
            headline=html.escape(_headline(m)),
            link=html.escape(str((folder / "report.html").relative_to(root))),
        )
        for folder, m in manifests
    )
    studies = sorted({m.get("study", "") for _, m in manifests})
    models = sorted({model for _, m in manifests for model in _model_ids(m)})
    index = root / "index.html"
    headers = ["study", "started", "status", "parameters", "headline", ""]
    index.write_text(table_page("t2i-workbench runs", "Study runs", headers, rows, controls=_filters(studies, models)))
    return index


def _model_ids(manifest: dict[str, Any]) -> list[str]:
    """The models a run used: its manifest's ``model_ids``, else those its summary rows name."""
    if manifest.get("model_ids"):
        return [str(m) for m in manifest["model_ids"]]
    return sorted({str(row["model_id"]) for row in manifest.get("summary") or [] if row.get("model_id")})


def _filters(studies: list[str], models: list[str]) -> str:
    """The index's filter controls and the script that hides the rows they do not match."""
    study_options = "".join(f'<option value="{html.escape(s)}">{html.escape(s)}</option>' for s in studies)
    model_options = "".join(f'<option value="{html.escape(m)}">' for m in models)
    return (
        '<form id="filters" onsubmit="return false">'
        f'<label>study <select id="filter-study"><option value="">all</option>{study_options}</select></label> '
        '<label>model <input id="filter-model" list="filter-models" placeholder="any (part of an id)"></label>'
        f'<datalist id="filter-models">{model_options}</datalist> '
        '<label>from <input id="filter-from" type="date"></label> '
        '<label>to <input id="filter-to" type="date"></label> <span id="filter-count"></span></form>'
        f"<script>{_FILTER_SCRIPT}</script>"
    )


# Shows the rows whose study, models (any id containing the text) and start date match the controls.
_FILTER_SCRIPT = """
document.addEventListener("DOMContentLoaded", function () {
  var control = function (name) { return document.getElementById("filter-" + name); };
  var rows = Array.prototype.slice.call(document.querySelectorAll("tr[data-study]"));
  function apply() {
    var study = control("study").value, model = control("model").value.trim().toLowerCase();
    var from = control("from").value, to = control("to").value, shown = 0;
    rows.forEach(function (row) {
      var models = JSON.parse(row.dataset.models || "[]"), day = row.dataset.started;
      var match = (!study || row.dataset.study === study)
        && (!model || models.some(function (id) { return id.toLowerCase().indexOf(model) >= 0; }))
        && (!from || (day && day >= from)) && (!to || (day && day <= to));
      row.hidden = !match;
      shown += match ? 1 : 0;
    });
    control("count").textContent = shown + " of " + rows.length + " runs";
  }
  ["study", "model", "from", "to"].forEach(function (name) {
    control(name).addEventListener("input", apply);
    control(name).addEventListener("change", apply);
  });
  apply();
});
"""


def table_page(title: str, heading: str, headers: list[str], rows: str, *, controls: str = "") -> str:
    """A plain HTML page with one table (an index of runs or of a sweep's points); ``rows`` is <tr> markup and
    ``controls`` markup placed above the table."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    return (
        f"<!doctype html><meta charset='utf-8'><title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif}td,th{padding:4px 8px;border-bottom:1px solid #ddd;"
        "vertical-align:top}form{margin:0 0 1em}label{margin-right:1em}</style>"
        f"<h1>{html.escape(heading)}</h1>{controls}<table><tr>{head}</tr>\n{rows}\n</table>"
    )
