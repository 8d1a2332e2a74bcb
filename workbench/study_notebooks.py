"""A study's notebook: found by name or path, read, described, and what it declares for the runner.

A study declares in its notebook's metadata, under ``workbench`` (each part optional)::

    "headline": {"label": ["model_id"], "figures": {"latency_mean_s": "{:.3f} s/img"}}
    "prompts": {"name": "prompt_set", "categories": "categories", "n": "n_prompts"}
    "renamed": {"worker_backend": "worker_pool"}

``headline``: what the run index shows of each summary row, its label (the columns present, joined) and its
figures (column: format). ``prompts``: the parameters that name the prompts the study loads (``load_prompts``'s
arguments), so that its per-set metrics are checked against them before the kernel starts. ``renamed``: old
parameter names that still work for one release (old -> new; ``study_parameters.current_parameters``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from workbench.errors import ConfigError
from workbench.resources import bundled_studies

__all__ = ["describe_studies", "find_study", "read_notebook", "study_metadata"]


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


def read_notebook(path: Path):
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


def study_metadata(notebook: str | Path) -> dict[str, Any]:
    """What a study (a path or a bundled study's name) declares for the runner: its notebook's
    ``metadata["workbench"]`` (module docstring), checked; empty where it declares nothing."""
    path = find_study(notebook)
    declared = read_notebook(path).metadata.get("workbench", {})
    headline = declared.get("headline", {}) if isinstance(declared, dict) else None
    if not (
        isinstance(headline, dict)
        and _strings(headline.get("label", []), list)
        and _strings(headline.get("figures", {}), dict)
        and _strings(declared.get("prompts", {}), dict)
        and _strings(declared.get("renamed", {}), dict)
    ):
        raise ConfigError(
            f"{path}: metadata.workbench must be {{'headline': {{'label': [column, ...], 'figures': {{column: "
            f"format}}}}, 'prompts': {{argument: parameter}}, 'renamed': {{old: new}}}}, got {declared!r}",
            "notebook",
        )
    return dict(declared)


def _strings(value: Any, kind: type) -> bool:
    """``value`` is a ``kind`` (list or dict) of strings (a dict's keys and values)."""
    if not isinstance(value, kind):
        return False
    return all(isinstance(item, str) for item in ([*value, *value.values()] if kind is dict else value))
