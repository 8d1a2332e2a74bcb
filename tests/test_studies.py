import json
import sys
from pathlib import Path

import pandas as pd
import pytest

from workbench.cli import main
from workbench.errors import ConfigError, NotebookRunError
from workbench.row import SCHEMA_VERSION
from workbench.studies import check_parameters, run_study

EVALUATION = Path(__file__).parent.parent / "notebooks" / "01_model_evaluation.ipynb"
BROKEN = Path(__file__).parent / "notebooks" / "broken.ipynb"
TINY = {"models": ["arch/tiny"], "n_prompts": 2, "seeds": [0, 1], "steps": 2, "batch_size": 2}


@pytest.mark.slow
def test_the_evaluation_notebook_runs_headlessly_into_a_report(tmp_path):
    run = run_study(EVALUATION, TINY, output_root=tmp_path, progress=False)
    for name in ("executed.ipynb", "report.html", "results.parquet", "manifest.json", "summary.json"):
        assert (run.folder / name).is_file(), name
    results = pd.read_parquet(run.folder / "results.parquet")
    assert len(results) == 4 and (results["status"] == "ok").all()
    assert results["clip_score"].notna().all()
    report = run.report.read_text()
    assert report.count("data:image/png;base64") >= 3  # two plots and the grid, embedded
    assert "import workbench" not in report  # a no-code view
    manifest = json.loads((run.folder / "manifest.json").read_text())
    assert manifest["status"] == "ok" and manifest["model_ids"] == ["arch/tiny"] and manifest["seeds"] == [0, 1]
    assert manifest["clip_model"] == ["toyworld/clip"] and manifest["versions"]["diffusers"]
    assert manifest["parameters"]["n_prompts"] == 2
    index = (tmp_path / "index.html").read_text()
    assert run.folder.name in index and "arch/tiny" in index


def test_parameters_are_checked_before_any_kernel_starts(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown parameter\(s\) \['n_promts'\].*valid: .*'n_prompts'"):
        run_study(EVALUATION, {"n_promts": 3}, output_root=tmp_path)
    with pytest.raises(ConfigError, match="'steps' must be int"):
        check_parameters(EVALUATION, {"steps": "many"})
    with pytest.raises(ConfigError, match="'seeds' must be list"):
        check_parameters(EVALUATION, {"seeds": 3})
    check_parameters(EVALUATION, {"guidance": 3})  # an int is a fine float
    assert not any(tmp_path.iterdir())


def test_a_kernel_that_dies_starting_is_started_again_and_other_errors_are_not(tmp_path, monkeypatch):
    import papermill

    real, calls = papermill.execute_notebook, []

    def dies_once(*args, **kwargs):  # as when a kernel starting beside it took its port
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("Kernel died before replying to kernel_info")
        return real(*args, **kwargs)

    monkeypatch.setattr(papermill, "execute_notebook", dies_once)
    with pytest.raises(NotebookRunError, match="boom on purpose"):  # the second kernel ran the cells
        run_study(BROKEN, {}, output_root=tmp_path, progress=False)
    assert len(calls) == 2

    def fails(*args, **kwargs):
        calls.append(1)
        raise RuntimeError("something else")

    monkeypatch.setattr(papermill, "execute_notebook", fails)
    calls.clear()
    with pytest.raises(RuntimeError, match="something else"):
        run_study(BROKEN, {}, output_root=tmp_path / "other", progress=False)
    assert len(calls) == 1


def test_a_failing_cell_leaves_the_executed_notebook_and_says_which_cell(tmp_path):
    with pytest.raises(NotebookRunError) as error:
        run_study(BROKEN, {}, output_root=tmp_path, progress=False)
    assert error.value.ename == "ValueError" and "boom on purpose" in error.value.evalue
    assert error.value.cell_index is not None
    folder = error.value.executed.parent
    assert error.value.executed.is_file() and (folder / "report.html").is_file()
    assert not (folder / "after.txt").exists()
    assert json.loads((folder / "manifest.json").read_text())["status"] == "failed"
    # The kernel was this interpreter, whatever kernelspecs the machine has.
    assert (folder / "interpreter.txt").read_text() == sys.executable


def test_cli_run_reports_failure_with_exit_code(tmp_path, capsys):
    assert main(["run", str(BROKEN), "--output-root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "ValueError: boom on purpose" in err and "executed notebook" in err
    assert main(["run", str(BROKEN), "-p", "fail", "false", "--output-root", str(tmp_path)]) == 0


@pytest.mark.slow
def test_an_interrupted_study_resumes_with_only_the_missing_images(tmp_path):
    first = run_study(EVALUATION, TINY, output_root=tmp_path, progress=False)
    store = first.folder / "results.jsonl"
    lines = store.read_text().splitlines()
    store.write_text("\n".join(lines[:2]) + "\n")  # as if the run had been killed after two images
    kept = [json.loads(line) for line in lines[:2]]
    resumed = run_study(EVALUATION, {}, output_root=tmp_path, progress=False, resume=first.folder.name)
    assert resumed.folder == first.folder and resumed.manifest["parameters"]["n_prompts"] == 2
    rows = [json.loads(line) for line in store.read_text().splitlines()]
    assert len(rows) == 4 and rows[:2] == kept
    assert len(pd.read_parquet(resumed.folder / "results.parquet")) == 4


def test_resume_of_an_unknown_run_lists_the_runs(tmp_path):
    with pytest.raises(ConfigError, match="no earlier run 'nope'"):
        run_study(EVALUATION, {}, output_root=tmp_path, resume="nope")


def test_cli_lists_the_studies_and_runs_one_by_name(tmp_path, capsys):
    assert main(["studies"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith("01_model_evaluation") and "Model evaluation" in line for line in lines)
    # Found by name: its parameters are checked (and refused) before any kernel starts.
    assert main(["run", "01_model_evaluation", "-p", "n_promts", "3", "--output-root", str(tmp_path)]) == 2
    assert "unknown parameter(s) ['n_promts'] for 01_model_evaluation.ipynb" in capsys.readouterr().err
    assert main(["run", "01_model_evaluaton", "--output-root", str(tmp_path)]) == 2
    assert "bundled studies: [" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_a_value_outside_the_choices_fails_before_the_kernel_starts(tmp_path, capsys):
    argv = ["run", "01_model_evaluation", "-p", "worker_pool", "kubernetes", "--output-root", str(tmp_path)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: parameter 'worker_pool' must be Literal") and err.count("\n") == 1
    assert not any(tmp_path.iterdir())
    argv[3] = "worker_backend"  # the parameter's old name: it still works, and the console says so
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "parameter 'worker_backend' is deprecated; use 'worker_pool'" in err
    assert "error: parameter 'worker_pool' must be Literal" in err


def test_a_typed_none_parameter_reaches_the_kernel(tmp_path, write_notebook):
    notebook = write_notebook(
        tmp_path / "typed.ipynb",
        'device: str | None = None\nthreshold: float | None = None\noutput_dir = "."',
        "import json\nfrom pathlib import Path\n\n"
        'Path(output_dir, "seen.json").write_text(json.dumps({"device": device, "threshold": threshold}))',
    )
    run = run_study(notebook, {"device": "cpu"}, output_root=tmp_path / "out", progress=False)
    assert json.loads((run.folder / "seen.json").read_text()) == {"device": "cpu", "threshold": None}


def test_a_version_1_run_resumes_and_is_migrated(tmp_path, write_notebook, version_1_run):
    notebook = write_notebook(
        tmp_path / "typed.ipynb",
        'device: str | None = None\noutput_dir = "."',
        'from pathlib import Path\n\nPath(output_dir, "seen.txt").write_text(str(device))',
    )
    out = tmp_path / "out"
    earlier = version_1_run(
        out, "typed", "old-run", started="2025-12-01T10:00:00+0000", models=["m/a", "m/b"],
        parameters={"device": "cpu", "output_dir": "/elsewhere"},
    )  # fmt: skip
    run = run_study(notebook, {}, output_root=out, progress=False, resume="old-run")
    assert run.folder == earlier and (earlier / "seen.txt").read_text() == "cpu"
    manifest = json.loads((earlier / "manifest.json").read_text())
    assert manifest["schema_version"] == SCHEMA_VERSION and manifest["run_id"] == "old-run"
    assert manifest["images"] == 2 and manifest["model_ids"] == ["m/a", "m/b"]
    assert [row["model_id"] for row in manifest["summary"]] == ["m/a", "m/b"]  # read from the bare list
    assert "m/b: 0.250 s/img, CLIP 31.0" in (out / "index.html").read_text()
