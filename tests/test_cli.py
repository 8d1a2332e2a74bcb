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


def test_serve_deployments_are_a_registry_behind_the_deployment_option(monkeypatch, capsys):
    from workbench import commands
    from workbench.errors import ConfigError
    from workbench.serve.app import ServeSettings

    assert list(commands.DEPLOYMENTS) == ["local", "ray"]
    served = []
    monkeypatch.setitem(commands.DEPLOYMENTS, "local", lambda settings, args: served.append((settings, args.port)))
    assert main(["serve", "--classifier", "keyword", "--no-preload", "--port", "8123", "--devices", "cpu"]) == 0
    ((settings, port),) = served
    assert isinstance(settings, ServeSettings) and port == 8123
    assert settings.devices == ("cpu",) and settings.classifier == "keyword" and not settings.preload
    with pytest.raises(SystemExit):
        main(["serve", "--deployment", "kubernetes"])
    assert "invalid choice: 'kubernetes'" in capsys.readouterr().err
    with pytest.raises(ConfigError, match=r"deployment must be one of \['local', 'ray'\], got 'kubernetes'"):
        commands.deployment("kubernetes")


def test_serve_backend_option_still_works_and_says_it_is_deprecated(monkeypatch, capsys):
    from workbench import commands

    served = []
    monkeypatch.setitem(commands.DEPLOYMENTS, "local", lambda settings, args: served.append(args.deployment))
    assert main(["serve", "--backend", "local", "--no-preload", "--devices", "cpu"]) == 0
    assert served == ["local"]
    assert "warning: --backend is deprecated; use --deployment" in capsys.readouterr().err


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


def _bad_inputs(tmp_path: Path) -> dict[str, Path]:
    """Files of the wrong kind: text, a .ipynb that is not JSON, JSON that is no notebook, bad YAML, YAML that is
    no mapping, binary bytes, a PNG that is not one, a run folder whose manifest is not JSON, a folder."""
    files = {
        "text": ("some.txt", "hello\n"),
        "not_json": ("bad.ipynb", "not json\n"),
        "not_notebook": ("list.ipynb", "[1, 2]"),
        "bad_yaml": ("bad.yaml", "steps: [1\n"),
        "list_yaml": ("list.yaml", "- 1\n- 2\n"),
        "fake_png": ("fake.png", "not a png"),
        "grid": ("grid.yaml", "grid:\n  steps: [1, 2]\n"),
    }
    paths = {key: tmp_path / name for key, (name, _) in files.items()}
    for key, (_, text) in files.items():
        paths[key].write_text(text)
    paths["binary"] = tmp_path / "binary.txt"
    paths["binary"].write_bytes(bytes(range(128, 256)))
    paths["folder"] = tmp_path / "folder"
    paths["folder"].mkdir()
    paths["bad_run"] = tmp_path / "bad_run"
    paths["bad_run"].mkdir()
    (paths["bad_run"] / "manifest.json").write_text("{not json")
    paths["missing"] = tmp_path / "missing.yaml"
    return paths


BAD_INPUTS = [
    (["run", "{text}"], "text"),
    (["run", "{not_json}"], "not_json"),
    (["run", "{not_notebook}"], "not_notebook"),
    (["run", "{missing}"], "missing"),
    (["run", "01_model_evaluation", "-f", "{bad_yaml}"], "bad_yaml"),
    (["run", "01_model_evaluation", "-f", "{list_yaml}"], "list_yaml"),
    (["run", "01_model_evaluation", "-f", "{missing}"], "missing"),
    (["run", "01_model_evaluation", "-f", "{binary}"], "binary"),
    (["run", "01_model_evaluation", "-f", "{folder}"], "folder"),
    (["reproduce", "{fake_png}"], "fake_png"),
    (["reproduce", "{missing}"], "missing"),
    (["route", "--classifier", "keyword", "--file", "{binary}"], "binary"),
    (["route", "--classifier", "keyword", "--file", "{missing}"], "missing"),
    (["sweep", "01_model_evaluation", "--grid", "{bad_yaml}"], "bad_yaml"),
    (["sweep", "01_model_evaluation", "--grid", "{binary}"], "binary"),
    (["sweep", "01_model_evaluation", "--grid", "{missing}"], "missing"),
    (["sweep", "{not_json}", "--grid", "{grid}"], "not_json"),
    (["compare", "{bad_run}", "{folder}"], "bad_run"),
    (["compare", "{folder}", "{missing}"], "folder"),
]


@pytest.mark.parametrize(("argv", "culprit"), BAD_INPUTS, ids=lambda v: " ".join(v) if isinstance(v, list) else v)
def test_a_file_of_the_wrong_kind_is_one_line_naming_it_and_exit_2(argv, culprit, tmp_path, monkeypatch, capsys):
    import papermill

    monkeypatch.setattr(papermill, "execute_notebook", lambda *a, **k: pytest.fail("a kernel was started"))
    paths = _bad_inputs(tmp_path)
    argv = [arg.format(**paths) for arg in argv]
    if argv[0] in {"run", "sweep", "compare"}:
        argv += ["--output-root", str(tmp_path / "outputs")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert str(paths[culprit]) in err and "Traceback" not in err


def test_an_unreadable_file_is_one_line_naming_it(tmp_path, monkeypatch, capsys):
    locked = tmp_path / "params.yaml"
    locked.write_text("steps: 2\n")
    read_text = Path.read_text

    def refuse(self, *args, **kwargs):
        if self == locked:
            raise PermissionError(13, "Permission denied", str(self))
        return read_text(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_text", refuse)
    assert main(["run", "01_model_evaluation", "-f", str(locked)]) == 2
    assert capsys.readouterr().err == f"error: cannot read parameters file {locked}: Permission denied\n"


def test_an_unreadable_notebook_is_one_line_naming_it(tmp_path, monkeypatch, capsys):
    import nbformat

    notebook = tmp_path / "study.ipynb"
    notebook.write_text("{}")

    def refuse(path, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(nbformat, "read", refuse)
    assert main(["run", str(notebook), "--output-root", str(tmp_path / "outputs")]) == 2
    err = capsys.readouterr().err
    assert err == f"error: cannot read {notebook} as a study notebook: Permission denied\n"


def test_a_parameter_value_that_is_not_yaml_is_one_line(tmp_path, capsys):
    assert main(["run", "01_model_evaluation", "-p", "steps", "[1", "--output-root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: parameter 'steps': VALUE '[1' is not valid YAML") and err.count("\n") == 1
