"""What a comparison of two runs says: the ``Comparison`` (run B against run A), the regression thresholds it
is checked against (``Check``), its one-screen terminal summary and its self-contained HTML report.

``workbench.compare.compare_runs`` makes a ``Comparison``; this module reads it out.
"""

from __future__ import annotations

import base64
import html
import io
import math
import operator
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from workbench.errors import ConfigError
from workbench.ratings.preference import Preference
from workbench.stats import describe_interval, format_p

__all__ = ["COLUMNS", "LATENCY", "Check", "ComparedRun", "Comparison"]

LATENCY = "latency_ratio"  # the latency row's metric: median s/image of B over A
COLUMNS = [
    "model_id", "metric", "mean_diff", "ratio", "ci_low", "ci_high", "p_value", "p_holm", "win_rate",
    "n_prompts", "n_differing", "n_units", "change",
]  # fmt: skip
_OPERATORS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}
_THUMBNAIL = 256  # largest side of an image embedded in the report


@dataclass(frozen=True)
class Check:
    """A regression threshold, ``METRIC OP VALUE``: for ``<``/``<=`` a regression when the CI's upper end is
    beyond the value, for ``>``/``>=`` when its lower end is (the whole interval lies past the threshold).
    The CI is of B - A, or of the ratio B / A for ``latency_ratio``."""

    metric: str
    op: str
    value: float

    @classmethod
    def parse(cls, text: str) -> Check:
        match = re.fullmatch(r"\s*([A-Za-z_]\w*)\s*(<=|>=|<|>)\s*(\S+)\s*", text)
        value = _float(match.group(3)) if match else None
        if value is None or not math.isfinite(value):
            raise ConfigError(
                f"--fail-if {text!r} is not METRIC OP VALUE with OP one of {list(_OPERATORS)} and a number "
                f"(e.g. 'clip_score < -1', '{LATENCY} > 1.2')",
                "fail_if",
            )
        return cls(match.group(1), match.group(2), value)

    def fails(self, row: dict[str, Any]) -> bool:
        """Whether the comparison row's whole interval lies beyond the threshold (never for a missing CI)."""
        end = row["ci_high"] if self.op.startswith("<") else row["ci_low"]
        return bool(pd.notna(end) and _OPERATORS[self.op](end, self.value))

    def __str__(self) -> str:
        return f"{self.metric} {self.op} {self.value:g}"


@dataclass(frozen=True)
class ComparedRun:
    """One side of a comparison: its folder, a name (``study/run_id`` where it has a manifest) and manifest."""

    folder: Path
    name: str
    manifest: dict[str, Any]

    @property
    def id(self) -> str:
        """The folder's name, made safe for a file name."""
        return re.sub(r"[^A-Za-z0-9._-]+", "-", self.folder.name).strip("-.") or "run"


@dataclass(frozen=True)
class Comparison:
    """Run B against run A. ``rows``: one per model and metric (``COLUMNS``; mean_diff is B - A, ratio is
    B / A for latency_ratio; n_differing the prompts where B - A is not 0; change is "better", "worse" or "");
    ``images``: one per shared unit with an image in both runs (model_id, prompt_id, seed, prompt, pixel_diff,
    image_a, image_b); ``notes``: what a reader must know (models in one run only, settings that differ, failed
    images); ``people``: per model and question, people's preference for B over A from a rating task's votes
    (given one). A change is "better" or "worse" where p_holm < alpha and the CI excludes 0, for latency_ratio
    where its CI excludes 1."""

    a: ComparedRun
    b: ComparedRun
    rows: pd.DataFrame
    images: pd.DataFrame
    metrics: tuple[str, ...]  # the per-image columns compared (latency_ratio aside)
    notes: tuple[str, ...] = ()
    top: int = 8  # images per model in the report
    people: tuple[Preference, ...] = ()

    def regressions(self, checks: list[Check] | tuple[Check, ...] = ()) -> list[str]:
        """One line per model and check whose whole CI lies beyond the threshold; an unknown metric is refused."""
        known = [*self.metrics, LATENCY]
        for check in checks:
            if check.metric not in known:
                raise ConfigError(
                    f"--fail-if names the metric {check.metric!r}, which this comparison does not have; "
                    f"metrics: {known}",
                    "fail_if",
                )
        found = []
        for row in self.rows.to_dict("records"):
            for check in (c for c in checks if c.metric == row["metric"] and c.fails(row)):
                what = "B / A" if row["metric"] == LATENCY else "B - A"
                found.append(
                    f"{row['model_id']}: {check} ({what} = {_estimate(row)}, 95% CI [{_num(row['ci_low'])}, "
                    f"{_num(row['ci_high'])}])"
                )
        return found

    def summary(self, checks: list[Check] | tuple[Check, ...] = ()) -> str:
        """The one-screen terminal view: the two runs, the notes, a table (model, metric, B - A or B / A, CI,
        p_holm, prompts (and how many differ, where some tie), and a flag: better, worse, REGRESSION) and people's
        verdict, given a rating task."""
        lines = [f"A  {_describe(self.a)}", f"B  {_describe(self.b)}", *(f"note: {n}" for n in self.notes)]
        table = [["model", "metric", "B-A or B/A", "95% CI", "p_holm", "prompts", ""]]
        for row in self.rows.to_dict("records"):
            flag = " ".join(filter(None, [row["change"], "REGRESSION" if _failing(row, checks) else ""]))
            ci = f"[{_num(row['ci_low'])}, {_num(row['ci_high'])}]"
            p = "-" if pd.isna(row["p_holm"]) else format_p(row["p_holm"])
            table.append([row["model_id"], row["metric"], _estimate(row), ci, p, _prompts(row), flag])
        widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
        for r in table:
            cells = [
                c.ljust(w) if i < 2 or i == 6 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))
            ]
            lines.append("  ".join(cells).rstrip())
        if self.people:
            lines.append(f"people (rating task {self.people[0].task_id}):")
            lines += [f"  {line}" for line in _people_lines(self)]
        changed = self.images[self.images["pixel_diff"] > 0]
        most = f"; the most: mean |A-B| {changed['pixel_diff'].max():.2f} of 255" if len(changed) else ""
        lines.append(f"images changed: {len(changed)} of {len(self.images)} shared{most}")
        return "\n".join(lines)

    def write_html(self, path: str | Path, checks: list[Check] | tuple[Check, ...] = ()) -> Path:
        """A self-contained report (images embedded as data URIs): the runs, notes, the table of differences
        and people's verdict (given a rating task), and per model the ``top`` images that changed most, A | B | the
        difference."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(_report(self, checks))
        return path


# --- words and pages --------------------------------------------------------------------------------


def _float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _num(x: float) -> str:
    return "n/a" if pd.isna(x) else f"{x:.3f}" if abs(x) < 10 else f"{x:.2f}"


def _estimate(row: dict[str, Any]) -> str:
    if row["metric"] == LATENCY:
        return f"{_num(row['ratio'])}x"
    return "n/a" if pd.isna(row["mean_diff"]) else f"{'+' if row['mean_diff'] >= 0 else ''}{_num(row['mean_diff'])}"


def _prompts(row: dict[str, Any]) -> str:
    """The prompts compared, and how many of them differ where some tie: "16 (2 differ)"."""
    differing = row["n_differing"]
    return f"{row['n_prompts']}" + (f" ({int(differing)} differ)" if differing < row["n_prompts"] else "")


def _failing(row: dict[str, Any], checks) -> bool:
    return any(c.metric == row["metric"] and c.fails(row) for c in checks)


def _describe(run: ComparedRun) -> str:
    m = run.manifest
    facts = [f"started {m['started']}" if m.get("started") else "", m.get("status", ""), m.get("device", "")]
    facts += [f"commit {m['git_commit'][:10]}" if m.get("git_commit") else ""]
    return f"{run.name}" + (f" ({', '.join(filter(None, facts))})" if any(facts) else "")


def _people_lines(comparison: Comparison) -> list[str]:
    """People's verdict, a line per model and question: "m, alignment: people prefer B to A in 64% of votes ..."."""
    return [f"{p.targets[0].rpartition(' @')[0]}, {p.question}: {p.verdict('A', 'B')}" for p in comparison.people]


def _data_uri(image: Image.Image) -> str:
    image = image.copy()
    image.thumbnail((_THUMBNAIL, _THUMBNAIL))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _difference_image(image_a: Image.Image, image_b: Image.Image) -> Image.Image:
    """|A - B| of two RGB images in grey, scaled so the largest difference is white."""
    diff = np.abs(np.asarray(image_a).astype(np.int16) - np.asarray(image_b).astype(np.int16)).max(axis=2)
    scaled = diff * (255.0 / diff.max()) if diff.max() > 0 else diff
    return Image.fromarray(scaled.astype(np.uint8), mode="L")


_STYLE = (
    "body{font-family:sans-serif;max-width:1200px}td,th{padding:4px 8px;border-bottom:1px solid #ddd;"
    "text-align:left;vertical-align:top}.num{text-align:right}.worse,.REGRESSION{color:#b00}.better{color:#070}"
    ".unit{display:inline-block;margin:0 24px 16px 0;font-size:85%;max-width:340px}"
    "img{width:96px;image-rendering:pixelated;border:1px solid #ccc;margin-right:4px}"
)
_HEADERS = ["model", "metric", "B - A (latency: B / A)", "95% CI", "p", "p (Holm)", "B better on", "prompts",
            "images", ""]  # fmt: skip


def _report(comparison: Comparison, checks) -> str:
    """The HTML page: the two runs, the notes, the table of differences and the images that changed most."""
    e = html.escape
    a, b = comparison.a, comparison.b
    notes = "".join(f"<li>{e(n)}</li>" for n in comparison.notes)
    return (
        f"<!doctype html><meta charset='utf-8'><title>{e(a.id)} vs {e(b.id)}</title><style>{_STYLE}</style>"
        f"<h1>Run B against run A</h1><table><tr><th>A</th><td>{e(_describe(a))}</td></tr>"
        f"<tr><th>B</th><td>{e(_describe(b))}</td></tr></table>"
        + (f"<h2>Notes</h2><ul>{notes}</ul>" if notes else "")
        + "<h2>Differences</h2><p>Per model, over the (prompt, seed) units both runs made: seeds are averaged "
        "within a prompt and prompts are the paired units (the mean difference with a "
        f"{e(describe_interval(bounded=True))}, Wilcoxon signed-rank p, Holm across models and metrics; where "
        "some prompts tie, the prompts column says how many differ). Latency: the median "
        "time per image of B over A, with a bootstrap CI "
        f"(lower is better). Checks: {e(', '.join(map(str, checks))) or 'none'}.</p>"
        f"<table><tr>{''.join(f'<th>{e(h)}</th>' for h in _HEADERS)}</tr>{_table_rows(comparison, checks)}</table>"
        + _people_section(comparison)
        + "<h2>The images that changed most</h2><p>Mean absolute pixel difference (0-255); A, B and |A - B| "
        f"(brightest: the largest difference); the top {comparison.top} per model.</p>{_image_sections(comparison)}"
    )


def _people_section(comparison: Comparison) -> str:
    if not comparison.people:
        return ""
    lines = "".join(f"<li>{html.escape(line)}</li>" for line in _people_lines(comparison))
    return (
        f"<h2>People</h2><p>The votes of rating task {html.escape(comparison.people[0].task_id)} between each "
        "model's images in A and in B (the same prompt and seed, shown blind): the share B won, ties counted half, "
        "with a 95% percentile interval over resampled prompts (widened by the raters' dispersion) and the p of "
        f"no preference from the same resamples, Holm across models per question.</p><ul>{lines}</ul>"
    )


def _table_rows(comparison: Comparison, checks) -> str:
    rows = []
    for row in comparison.rows.to_dict("records"):
        flags = " ".join(filter(None, [row["change"], "REGRESSION" if _failing(row, checks) else ""]))
        numbers = [
            _estimate(row),
            f"[{_num(row['ci_low'])}, {_num(row['ci_high'])}]",
            "-" if pd.isna(row["p_value"]) else html.escape(format_p(row["p_value"])),
            "-" if pd.isna(row["p_holm"]) else html.escape(format_p(row["p_holm"])),
            "-" if pd.isna(row["win_rate"]) else f"{row['win_rate']:.0%}",
            _prompts(row),
            str(row["n_units"]),
        ]
        rows.append(
            f"<tr><td>{html.escape(row['model_id'])}</td><td>{html.escape(row['metric'])}</td>"
            + "".join(f"<td class='num'>{n}</td>" for n in numbers)
            + f"<td class='{flags}'>{flags}</td></tr>"
        )
    return "".join(rows)


def _image_sections(comparison: Comparison) -> str:
    e = html.escape
    images = comparison.images
    if images.empty:
        return "<p>No shared images to compare.</p>"
    parts = []
    for model, group in images.groupby("model_id", sort=True):
        changed = group[group["pixel_diff"] > 0]
        parts.append(
            f"<h3>{e(model)}</h3><p>{len(changed)} of {len(group)} shared images changed; mean difference "
            f"{group['pixel_diff'].mean():.2f}</p>"
        )
        for unit in changed.nlargest(comparison.top, "pixel_diff").to_dict("records"):
            with Image.open(unit["image_a"]) as image_a, Image.open(unit["image_b"]) as image_b:
                shown = [("A", image_a.convert("RGB")), ("B", image_b.convert("RGB"))]
            shown.append(("|A - B|", _difference_image(shown[0][1], shown[1][1])))
            caption = f"{unit['prompt_id']}, seed {unit['seed']}: {unit['pixel_diff']:.2f}"
            pictures = "".join(
                f"<img src='{_data_uri(image)}' alt='{label}' title='{label}'>" for label, image in shown
            )
            parts.append(
                f"<div class='unit'><div>{pictures}</div><b>{e(caption)}</b> {e(str(unit['prompt'] or ''))}</div>"
            )
    return "".join(parts)
