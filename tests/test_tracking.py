import json
import sys
from pathlib import Path

import pandas as pd
import pytest

from workbench.errors import ConfigError
from workbench.run_folder import save_study_results
from workbench.tracking import log_study_run

MODELS = ["toyworld/sd-small", "./my model+lora:style.safetensors@0.5"]


def _run_folder(path, status="ok", summary=True):
    """A study run folder as ``workbench run`` leaves it."""
    path.mkdir(parents=True)
    if summary:
        results = pd.DataFrame({"model_id": MODELS, "clip_score": [20.0, 25.0], "status": ["ok", "ok"]})
        table = pd.DataFrame(
            {
                "model_id": MODELS,
                "images": [4, 4],
                "latency_mean_s": [0.1, 0.3],
                "clip_mean": [20.0, 25.0],
                "clip_ci_low": [None, 24.0],  # NaN in the summary: no metric
                "mem_kind": ["cpu", "cpu"],  # text: no metric
            }
        )
        comparisons = pd.DataFrame({"model_id": [MODELS[1]], "reference": [MODELS[0]], "mean_diff": [5.0]})
        save_study_results(results, table, path, comparisons=comparisons)
    (path / "report.html").write_text("<html>report</html>")
    manifest = {
        "schema_version": 2,
        "study": "01_model_evaluation",
        "run_id": f"20261129-120000-{path.name}",
        "parameters": {"models": MODELS, "steps": 2, "guidance": 5.0, "output_dir": str(path), "notes": "x" * 7000},
        "started": "2026-11-29T12:00:00+0000",
        "finished": "2026-11-29T12:01:30+0000",
        "seconds": 90.0,
        "status": status,
        "versions": {"workbench": "0.1.0", "torch": "2.13.0"},
        "git_commit": "0123abcd",
        "device": "cpu",
        "images": 8,
    }
    (path / "manifest.json").write_text(json.dumps(manifest))
    return path


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One SQLite store for the module (creating one takes seconds), its experiment's artifacts under tmp."""
    from mlflow import MlflowClient

    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root}/mlflow.db"
    client = MlflowClient(uri)
    client.create_experiment("01_model_evaluation", artifact_location=(root / "artifacts").as_uri())
    return uri, client, root


def test_a_run_is_logged_with_its_parameters_metrics_tags_and_files(store, tmp_path):
    uri, client, root = store
    folder = _run_folder(tmp_path / "a")
    run = client.get_run(log_study_run(folder, uri))
    assert run.info.run_name == "20261129-120000-a" and run.info.status == "FINISHED"
    assert client.get_experiment(run.info.experiment_id).name == "01_model_evaluation"
    assert run.info.end_time - run.info.start_time == 90_000
    params = run.data.params
    assert params["models"] == json.dumps(MODELS) and params["steps"] == "2" and params["guidance"] == "5.0"
    assert "output_dir" not in params
    assert len(params["notes"]) == 6000 and params["notes"].endswith("...")  # MLflow's limit
    assert run.data.metrics == {
        "images": 8,
        "seconds": 90,
        "toyworld/sd-small/images": 4,
        "toyworld/sd-small/latency_mean_s": 0.1,
        "toyworld/sd-small/clip_mean": 20,
        "my model_lora_style.safetensors_0.5/images": 4,
        "my model_lora_style.safetensors_0.5/latency_mean_s": 0.3,
        "my model_lora_style.safetensors_0.5/clip_mean": 25,
        "my model_lora_style.safetensors_0.5/clip_ci_low": 24,
    }
    assert {
        "study": "01_model_evaluation",
        "workbench_run_id": "20261129-120000-a",  # the run name too; MLflow's run id is its own
        "status": "ok",
        "git_commit": "0123abcd",
        "workbench_version": "0.1.0",
        "device": "cpu",
        "run_folder": str(folder.resolve()),
    }.items() <= run.data.tags.items()
    listed = {f.path for f in client.list_artifacts(run.info.run_id)}
    assert listed == {"report.html", "summary.json", "comparisons.json", "manifest.json", "results.parquet"}
    assert run.info.artifact_uri.startswith((root / "artifacts").as_uri())
    local = Path(client.download_artifacts(run.info.run_id, "summary.json", str(tmp_path)))
    assert json.loads(local.read_text()) == json.loads((folder / "summary.json").read_text())


def test_a_failed_run_without_a_summary_is_logged_as_failed_to_the_default_uri(store, tmp_path, monkeypatch):
    uri, client, _ = store
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)  # what MLflow takes when no URI is given
    run = client.get_run(log_study_run(_run_folder(tmp_path / "b", status="failed", summary=False)))
    assert run.info.status == "FAILED" and run.data.tags["status"] == "failed"
    assert run.data.metrics == {"images": 8, "seconds": 90}
    assert {f.path for f in client.list_artifacts(run.info.run_id)} == {"report.html", "manifest.json"}


def test_no_run_folder_no_logging(tmp_path):
    with pytest.raises(ConfigError, match=r"has no manifest\.json"):
        log_study_run(tmp_path, "sqlite:///unused.db")


def test_without_mlflow_the_error_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # as if it were not installed
    with pytest.raises(ConfigError, match=r"pip install 't2i-workbench\[mlflow\]'") as error:
        log_study_run(_run_folder(tmp_path / "c"))
    assert error.value.field == "mlflow"
