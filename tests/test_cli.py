from pathlib import Path

import pytest

from workbench.cli import main
from workbench.generation import read_settings


def test_generate_then_reproduce(tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "images"
    assert (
        main(
            [
                "generate",
                "a red circle",
                "--model",
                str(tiny_model_dir),
                "--seeds",
                "1",
                "2",
                "--steps",
                "2",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    paths = sorted(out.glob("*.png"))
    assert len(paths) == 2
    assert {read_settings(p)["seed"] for p in paths} == {1, 2}
    assert main(["reproduce", str(paths[0])]) == 0
    assert "matches" in capsys.readouterr().out


def test_models_lists_what_loads_offline(capsys):
    assert main(["models"]) == 0
    assert "arch/sd15" in capsys.readouterr().out


def test_errors_are_one_clear_line_and_exit_2(capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["generate", "x", "--model", "nobody/nothing-here"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown model 'nobody/nothing-here'") and "Traceback" not in err
    assert main(["generate", "x", "--model", "arch/tiny", "--width", "30"]) == 2
    assert "width must be a multiple of 8" in capsys.readouterr().err


def test_serve_backends_are_a_registry_behind_the_backend_option(monkeypatch, capsys):
    from workbench import cli
    from workbench.errors import ConfigError
    from workbench.serve.app import ServeSettings

    assert list(cli.SERVE_BACKENDS) == ["local", "ray"]
    served = []
    monkeypatch.setitem(cli.SERVE_BACKENDS, "local", lambda settings, args: served.append((settings, args.port)))
    assert main(["serve", "--classifier", "keyword", "--no-preload", "--port", "8123", "--devices", "cpu"]) == 0
    ((settings, port),) = served
    assert isinstance(settings, ServeSettings) and port == 8123
    assert settings.devices == ("cpu",) and settings.classifier == "keyword" and not settings.preload
    with pytest.raises(SystemExit):
        main(["serve", "--backend", "kubernetes"])
    assert "invalid choice: 'kubernetes'" in capsys.readouterr().err
    with pytest.raises(ConfigError, match=r"backend must be one of \['local', 'ray'\], got 'kubernetes'"):
        cli._serve_backend("kubernetes")


@pytest.fixture
def fake_tracking(monkeypatch, tmp_path):
    """run_study and workbench.tracking stood in for: a finished run folder, and the MLflow calls recorded."""
    import sys
    import types

    from workbench import studies

    folder = tmp_path / "outputs" / "study" / "run-1"
    folder.mkdir(parents=True)
    outcome = {"failure": None}

    def run_study(notebook, parameters, *, output_root, resume):
        if outcome["failure"]:
            raise outcome["failure"]
        return studies.StudyRun(folder, folder / "report.html", {"status": "ok"})

    logged = []

    def log_study_run(run_folder, tracking_uri=None):
        if outcome.get("tracking_error"):
            raise outcome["tracking_error"]
        logged.append((Path(run_folder), tracking_uri))
        return "mlflow-run-id"

    monkeypatch.setattr(studies, "run_study", run_study)
    monkeypatch.setitem(sys.modules, "workbench.tracking", types.SimpleNamespace(log_study_run=log_study_run))
    return folder, outcome, logged


def test_run_logs_to_mlflow_when_asked(fake_tracking, capsys):
    folder, _, logged = fake_tracking
    assert main(["run", "study"]) == 0
    assert logged == [] and "MLflow" not in capsys.readouterr().out
    assert main(["run", "study", "--mlflow"]) == 0  # no URI: MLflow's own default
    assert main(["run", "study", "--mlflow", "sqlite:///runs/mlflow.db"]) == 0
    assert main(["run", "--mlflow=file:///elsewhere", "study"]) == 0
    assert logged == [(folder, None), (folder, "sqlite:///runs/mlflow.db"), (folder, "file:///elsewhere")]
    out = capsys.readouterr().out
    assert "MLflow run: mlflow-run-id\n" in out and "MLflow run: mlflow-run-id (sqlite:///runs/mlflow.db)" in out


def test_a_failed_run_is_logged_to_mlflow_and_still_fails(fake_tracking, capsys):
    from workbench.errors import ConfigError, NotebookRunError

    folder, outcome, logged = fake_tracking
    outcome["failure"] = NotebookRunError(folder / "executed.ipynb", 3, "ValueError", "boom")
    assert main(["run", "study", "--mlflow", "sqlite:///mlflow.db"]) == 2
    assert logged == [(folder, "sqlite:///mlflow.db")]
    captured = capsys.readouterr()
    assert "MLflow run: mlflow-run-id" in captured.out and "cell 3 failed with ValueError: boom" in captured.err
    # Where logging fails too, the run's own failure is still the error reported.
    outcome["tracking_error"] = ConfigError("logging to MLflow needs mlflow: pip install mlflow")
    assert main(["run", "study", "--mlflow"]) == 2
    err = capsys.readouterr().err
    assert "not logged to MLflow: logging to MLflow needs mlflow" in err and "error: cell 3 failed" in err


@pytest.mark.slow
def test_run_with_mlflow_logs_to_a_sqlite_store(monkeypatch, tmp_path, capsys):
    import json

    pytest.importorskip("mlflow")
    from mlflow import MlflowClient

    from workbench import studies
    from workbench.errors import NotebookRunError

    folders = {}
    for status in ("ok", "failed"):
        folder = folders[status] = tmp_path / "outputs" / "study" / f"run-{status}"
        folder.mkdir(parents=True)
        manifest = {"study": "study", "run_id": folder.name, "parameters": {"steps": 2}, "status": status}
        (folder / "manifest.json").write_text(json.dumps(manifest | {"started": "2026-11-29T12:00:00+0000"}))

    def run_study(notebook, parameters, *, output_root, resume):
        if notebook == "broken":
            raise NotebookRunError(folders["failed"] / "executed.ipynb", 1, "ValueError", "boom")
        return studies.StudyRun(folders["ok"], folders["ok"] / "report.html", {})

    monkeypatch.setattr(studies, "run_study", run_study)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    client = MlflowClient(uri)
    client.create_experiment("study", artifact_location=(tmp_path / "artifacts").as_uri())
    assert main(["run", "study", "--mlflow", uri]) == 0
    assert main(["run", "broken", "--mlflow", uri]) == 2
    out = capsys.readouterr().out
    ids = [line.split()[2] for line in out.splitlines() if line.startswith("MLflow run: ")]
    assert len(ids) == 2
    runs = [client.get_run(i) for i in ids]
    assert [r.info.status for r in runs] == ["FINISHED", "FAILED"]
    assert [r.info.run_name for r in runs] == ["run-ok", "run-failed"] and runs[0].data.params["steps"] == "2"
