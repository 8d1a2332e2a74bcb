"""A study's notebook: found by name or path, read, and described by its first heading."""

from __future__ import annotations

import json
from pathlib import Path

from workbench.errors import ConfigError
from workbench.resources import bundled_studies

__all__ = ["describe_studies", "find_study", "read_notebook"]


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
