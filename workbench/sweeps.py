"""Sweeps: one study run (``studies.run_study``) for every point of a parameter grid, locally or as Ray tasks.

A grid file names the parameters to vary and, optionally, those to hold::

    grid:               # every combination of these
      steps: [10, 20]
      models: [[toyworld/sd-small], [toyworld/sd-base]]
    fixed:              # the same at every point
      n_prompts: 4

Each point is an ordinary run in ``outputs/<study>/<run_id>/``; the sweep writes its own index,
``outputs/sweeps/<sweep_id>/index.html`` and ``sweep.json``, after every point, so a sweep cut short still
shows what finished. A point that fails is recorded with its error and does not stop the others.
"""

from __future__ import annotations

import hashlib
import html
import itertools
import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from workbench.deprecation import renamed_attributes, renamed_keyword
from workbench.errors import ConfigError

__all__ = ["POOLS", "SweepPoint", "SweepResult", "grid_points", "read_grid", "run_sweep", "sweep_pool"]


@dataclass(frozen=True)
class SweepPoint:
    """One grid point's outcome: its parameters, status ("ok" or "failed"), run folder and error."""

    index: int
    parameters: dict[str, Any]
    status: str
    run: str | None = None  # the run folder, relative to the output root
    error: str | None = None
    seconds: float | None = None


@dataclass(frozen=True)
class SweepResult:
    folder: Path
    points: list[SweepPoint]

    @property
    def failed(self) -> list[SweepPoint]:
        return [p for p in self.points if p.status != "ok"]


def read_grid(path: str | Path) -> tuple[dict[str, list], dict[str, Any]]:
    """(grid, fixed) from a grid YAML file (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"no grid file at {path}")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict) or set(data) - {"grid", "fixed"} or not isinstance(data.get("grid"), dict):
        raise ConfigError(f"{path}: a grid file is a mapping with 'grid' (name: [values]) and optional 'fixed'")
    return data["grid"], data.get("fixed") or {}


def grid_points(grid: dict[str, list], fixed: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every combination of the grid's values, each with the fixed parameters."""
    for name, values in grid.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"grid parameter {name!r} needs a non-empty list of values, got {values!r}")
    overlap = sorted(set(grid) & set(fixed or {}))
    if overlap:
        raise ConfigError(f"parameter(s) {overlap} are both in the grid and fixed")
    names = list(grid)
    return [{**(fixed or {}), **dict(zip(names, combo, strict=True))} for combo in itertools.product(*grid.values())]


def _run_point(notebook: str, parameters: dict[str, Any], output_root: str, cwd: str) -> dict[str, Any]:
    """Run one point; a failure is returned as data, never raised (so the other points go on)."""
    from workbench.errors import NotebookRunError
    from workbench.studies import run_study

    os.chdir(cwd)  # a Ray worker starts elsewhere; relative paths in the notebook mean the sweep's folder
    start = time.perf_counter()
    try:
        run = run_study(notebook, parameters, output_root=output_root, progress=False)
        outcome = {"status": "ok", "run": str(run.folder)}
    except NotebookRunError as error:
        outcome = {"status": "failed", "run": str(error.executed.parent), "error": str(error)}
    except Exception as error:  # the point's problem is recorded; the sweep goes on
        outcome = {"status": "failed", "error": f"{type(error).__name__}: {error}"}
    return outcome | {"seconds": round(time.perf_counter() - start, 1)}


# A pool runs every point: run(points, (notebook, output_root, cwd), record, ray_address), calling
# record(index, outcome) as each point finishes.
SweepPool = Callable[[list[dict[str, Any]], tuple[str, str, str], Callable[[int, dict], None], str | None], None]


def _run_locally(points, args, record, ray_address) -> None:
    """One point after another, in this process."""
    for index, parameters in enumerate(points):
        record(index, _run_point(args[0], parameters, *args[1:]))


def _run_on_ray(points, args, record, ray_address) -> None:
    """Every point as a Ray task, with a GPU each where the cluster has GPUs; recorded as they finish."""
    from workbench.ray_cluster import connect, gpu_count

    ray = connect(ray_address)
    task = ray.remote(num_cpus=1, num_gpus=1 if gpu_count() else 0)(_run_point)
    pending = {task.remote(args[0], parameters, *args[1:]): i for i, parameters in enumerate(points)}
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=1)
        index = pending.pop(ready[0])
        try:
            outcome = ray.get(ready[0])
        except Exception as error:  # the task itself died (its worker was killed, ...)
            outcome = {"status": "failed", "error": f"{type(error).__name__}: {error}"}
        record(index, outcome)


POOLS: dict[str, SweepPool] = {"local": _run_locally, "ray": _run_on_ray}  # where a sweep's points run


def sweep_pool(name: str) -> SweepPool:
    """The pool called ``name`` (a key of ``POOLS``)."""
    try:
        return POOLS[name]
    except (KeyError, TypeError):
        raise ConfigError(f"pool must be one of {list(POOLS)}, got {name!r}", "pool") from None


def run_sweep(
    notebook: str | Path,
    grid: dict[str, list],
    *,
    fixed: dict[str, Any] | None = None,
    pool: str = "local",
    output_root: str | Path = "outputs",
    ray_address: str | None = None,
    workers: int | None = None,
    backend: str | None = None,
) -> SweepResult:
    """Run ``notebook`` (a path, or a bundled study's name) at every grid point: one after another, or as Ray
    tasks with a GPU each where the cluster has GPUs. Every point's parameters are checked before any runs.
    ``workers`` shards each point's evaluation (the study's ``workers`` parameter: worker processes, one per
    visible GPU) when points run one after another. (``backend=``: the old name of ``pool=``.)"""
    from workbench.run_index import write_index
    from workbench.study_notebooks import find_study
    from workbench.study_parameters import check_parameters, current_parameters, notebook_parameters

    pool = renamed_keyword("run_sweep", "backend", "pool", backend, pool)
    run_points = sweep_pool(pool)
    notebook = find_study(notebook).resolve()
    if workers is not None:
        if "workers" not in notebook_parameters(notebook):
            raise ConfigError(f"{notebook.name} has no workers parameter: its points cannot be sharded", "workers")
        if pool != "local":
            raise ConfigError(f"workers shard points run one after another (pool 'local'), not {pool!r}", "pool")
        fixed = {**(fixed or {}), "workers": workers}
    points = [current_parameters(notebook, parameters) for parameters in grid_points(grid, fixed)]
    for parameters in points:
        check_parameters(notebook, parameters)
    root = Path(output_root).resolve()
    digest = hashlib.sha256(json.dumps([str(notebook), points], default=str).encode()).hexdigest()[:6]
    folder = root / "sweeps" / f"{time.strftime('%Y%m%d-%H%M%S')}-{digest}"
    folder.mkdir(parents=True)
    done: dict[int, SweepPoint] = {}
    header = {"notebook": str(notebook), "pool": pool, "grid": grid, "fixed": fixed or {}}

    def record(index: int, outcome: dict[str, Any]) -> None:
        run = outcome.get("run")
        outcome["run"] = str(Path(run).relative_to(root)) if run else None
        done[index] = SweepPoint(index, points[index], **outcome)
        _write_index(folder, header, points, done)

    _write_index(folder, header, points, done)
    run_points(points, (str(notebook), str(root), str(Path.cwd())), record, ray_address)
    write_index(root)  # the run index, once more: points running side by side each rewrote it
    return SweepResult(folder, [done[i] for i in range(len(points))])


def _write_index(folder: Path, header: dict[str, Any], points: list[dict], done: dict[int, SweepPoint]) -> None:
    """sweep.json and index.html: every point, finished or still pending."""
    rows = [asdict(done[i]) if i in done else {"index": i, "parameters": p, "status": "pending"}
            for i, p in enumerate(points)]  # fmt: skip
    (folder / "sweep.json").write_text(json.dumps({**header, "points": rows}, indent=2, default=str))
    cells = "\n".join(
        "<tr><td>{index}</td><td><code>{params}</code></td><td>{status}</td><td>{seconds}</td><td>{link}</td>"
        "<td>{error}</td></tr>".format(
            index=row["index"],
            params=html.escape(json.dumps(row["parameters"], default=str)),
            status=html.escape(row["status"]),
            seconds=row.get("seconds") or "",
            link=f'<a href="../../{html.escape(row["run"])}/report.html">report</a>' if row.get("run") else "",
            error=html.escape((row.get("error") or "")[:500]),
        )
        for row in rows
    )
    from workbench.run_index import table_page

    heading = f"Sweep of {Path(header['notebook']).name} ({header['pool']})"
    headers = ["#", "parameters", "status", "seconds", "", "error"]
    (folder / "index.html").write_text(table_page("sweep", heading, headers, cells))


__getattr__ = renamed_attributes(__name__, {"BACKENDS": "POOLS", "sweep_backend": "sweep_pool"}, globals())
