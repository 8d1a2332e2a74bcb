"""outputs/index.html: every study run with its parameters, headline numbers and report, filterable offline.

A run's headline is what its study declares (``study_notebooks``: the manifest keeps it); a run made before
studies declared one shows its bundled study's, else ``SUMMARY_HEADLINE``.
"""

from __future__ import annotations

import functools
import html
import json
from pathlib import Path
from typing import Any

from workbench.resources import bundled_studies
from workbench.run_folder import read_manifest
from workbench.study_notebooks import study_metadata

__all__ = ["SUMMARY_HEADLINE", "run_headline", "table_page", "write_index"]

# The headline of a study that declares none: its summary rows are wb.summarize's, one per model.
SUMMARY_HEADLINE = {
    "label": ["model_id"],
    "figures": {"latency_mean_s": "{:.3f} s/img", "clip_score_mean": "CLIP {:.1f}"},
}


def run_headline(manifest: dict[str, Any]) -> dict[str, Any]:
    """The headline a run's summary rows are shown by: its manifest's, else (a run from before studies declared
    one) its bundled study's, else ``SUMMARY_HEADLINE``."""
    if "headline" in manifest:
        return manifest["headline"] or SUMMARY_HEADLINE
    return _bundled_headline(manifest.get("study", ""))


@functools.cache
def _bundled_headline(study: str) -> dict[str, Any]:
    bundled = bundled_studies()
    return (study_metadata(bundled[study]).get("headline") if study in bundled else None) or SUMMARY_HEADLINE


def _headline(manifest: dict[str, Any], declared: dict[str, Any]) -> str:
    """The summary rows of a run, each as its label and figures as ``declared`` (a study's headline)."""
    parts = []
    for row in manifest.get("summary") or []:
        label = " ".join(str(row[column]) for column in declared.get("label", []) if row.get(column) is not None)
        figures = [form.format(row[column]) for column, form in declared.get("figures", {}).items()
                   if row.get(column) is not None]  # fmt: skip
        parts.append(f"{label}: {', '.join(figures)}")
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
            headline=html.escape(_headline(m, run_headline(m))),
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
