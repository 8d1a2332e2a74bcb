import json
import sys
from pathlib import Path

import pandas as pd
import pytest

from workbench.cli import main
from workbench.errors import ConfigError, NotebookRunError
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
