"""Shared fixtures: a tiny random Stable Diffusion pipeline saved to disk and loaded back like any model; small
study notebooks and run folders as earlier versions wrote them."""

from __future__ import annotations

import json
import shutil
import socket
import tempfile
from pathlib import Path

import pandas as pd
import pytest
import torch

from workbench.architectures import build_architecture
from workbench.models import load


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def free_port():
    """A function giving a TCP port on 127.0.0.1 that is free when asked."""

    def pick() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    return pick


@pytest.fixture(scope="session")
def batched_rows():
    """A function giving a model's rows as a study stores them: one batch per latency (its round: the batch's
    index), ``images`` rows each, other processes using ``busy`` of the CPU during each batch."""

    def batched(model: str, latencies: list[float], busy: list[float], images: int = 2) -> pd.DataFrame:
        """Rows of ``model``: one batch per latency (round = its index), ``images`` rows each."""
        rows = []
        for index, (latency, cpu) in enumerate(zip(latencies, busy, strict=True)):
            for image in range(images):
                rows.append({
                    "model_id": model, "prompt_id": f"p{index}", "seed": image, "latency_s": latency,
                    "batch_id": f"{model}-{index}", "batch_round": index, "batch_images": images,
                    "cpu_busy_other": cpu, "status": "ok", "peak_mem_mb": 1.0, "clip_score": 50.0 + image,
                })  # fmt: skip
        return pd.DataFrame(rows)

    return batched


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A tiny random pipeline, saved with save_pretrained (it then loads through from_pretrained)."""
    folder = tmp_path_factory.mktemp("models") / "tiny-sd"
    build_architecture("tiny", seed=0).save_pretrained(folder)
    return folder


@pytest.fixture
def tiny_pipe(tiny_model_dir):
    return load(str(tiny_model_dir), device="cpu", cache=None)


@pytest.fixture(scope="session")
def local_ray():
    """A local Ray instance on loopback with its state in a temporary folder. Token auth is off: on, Ray
    writes a token under the home folder, and this process reads the mode once, when it imports ray."""
    patch = pytest.MonkeyPatch()
    patch.setenv("RAY_AUTH_MODE", "disabled")
    ray = pytest.importorskip("ray")
    folder = tempfile.mkdtemp(prefix="ray")
    ray.init(num_cpus=2, include_dashboard=False, _temp_dir=folder, log_to_driver=False)
    yield ray
    ray.shutdown()
    patch.undo()
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def write_notebook():
    """A function writing a small notebook: a cell tagged parameters, then code cells."""

    def write(path: Path, parameters: str, *cells: str) -> Path:
        import nbformat

        notebook = nbformat.v4.new_notebook()
        notebook.metadata["kernelspec"] = {"name": "python3", "language": "python", "display_name": "Python 3"}
        notebook.cells = [nbformat.v4.new_code_cell(parameters, metadata={"tags": ["parameters"]})]
        notebook.cells += [nbformat.v4.new_code_cell(cell) for cell in cells]
        nbformat.write(notebook, path)
        return path

    return write


@pytest.fixture
def version_1_run():
    """A function writing a run folder as runs were written before schema versions: no schema_version anywhere,
    summary.json a bare list (and the manifest's summary that list)."""

    def write(folder: Path, study: str, run_id: str, *, started: str, models: list[str], **manifest) -> Path:
        run = folder / study / run_id
        run.mkdir(parents=True)
        summary = [{"model_id": m, "latency_mean_s": 0.25, "clip_score_mean": 30.0 + i} for i, m in enumerate(models)]
        (run / "summary.json").write_text(json.dumps(summary))
        rows = [{"run_id": run_id, "model_id": m, "prompt_id": "p0", "seed": 0, "status": "ok"} for m in models]
        pd.DataFrame(rows).to_parquet(run / "results.parquet", index=False)
        document = {"study": study, "run_id": run_id, "started": started, "status": "ok", "summary": summary}
        (run / "manifest.json").write_text(json.dumps(document | manifest))
        (run / "report.html").write_text("<p>report</p>")
        return run

    return write
