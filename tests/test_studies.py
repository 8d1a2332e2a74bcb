import json
import sys
from pathlib import Path

import pandas as pd
import pytest

from workbench.cli import main
from workbench.errors import ConfigError, NotebookRunError
from workbench.resources import bundled_studies
from workbench.studies import check_parameters, describe_studies, find_study, notebook_parameters, run_study

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


def _notebook(path: Path, parameters: str, *cells: str) -> Path:
    """A small notebook: a cell tagged parameters, then code cells."""
    import nbformat

    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {"name": "python3", "language": "python", "display_name": "Python 3"}
    notebook.cells = [nbformat.v4.new_code_cell(parameters, metadata={"tags": ["parameters"]})]
    notebook.cells += [nbformat.v4.new_code_cell(cell) for cell in cells]
    nbformat.write(notebook, path)
    return path


def test_a_study_is_found_by_name_or_path(tmp_path, monkeypatch):
    bundled = bundled_studies()["01_model_evaluation"]
    assert bundled.samefile(EVALUATION)
    assert find_study("01_model_evaluation") == find_study("01_model_evaluation.ipynb") == bundled
    assert find_study(EVALUATION) == EVALUATION
    monkeypatch.chdir(tmp_path)
    (tmp_path / "01_model_evaluation.ipynb").write_text("{}")  # a local file of that name wins
    assert find_study("01_model_evaluation.ipynb") == Path("01_model_evaluation.ipynb")
    assert find_study("01_model_evaluation") == bundled
    for missing in ("02_routnig", "elsewhere/01_model_evaluation.ipynb"):
        with pytest.raises(ConfigError, match=rf"no study '{missing}'.*bundled studies: \[.*'01_model_evaluation'"):
            find_study(missing)


def test_the_bundled_studies_are_described_by_their_first_heading():
    described = dict(describe_studies())
    assert set(described) == set(bundled_studies())
    assert described["01_model_evaluation"] == "Model evaluation"
    assert described["04_ab_test"] == "A/B test of prompt variations"


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


def test_typed_none_parameters_take_none_or_their_type(tmp_path):
    notebook = _notebook(
        tmp_path / "typed.ipynb",
        "device: str | None = None  # None for automatic\n"
        "threshold: float | None = None\n"
        "n: Optional[int] = 3\n"
        "quoted: 'int | None' = None\n"
        "items: list[int] = [0, 1]\n"
        "anything = None\n"
        "steps = 20",
    )
    found = notebook_parameters(notebook)
    assert found["device"] == {"default": "None", "type": "str | None"}
    assert found["quoted"]["type"] == "int | None" and found["steps"]["type"] == "int"
    check_parameters(notebook, {"device": None, "threshold": None, "n": None, "quoted": None, "items": [2]})
    check_parameters(notebook, {"device": "cpu", "threshold": 1, "n": 4, "quoted": 5, "anything": "x", "steps": 3})
    for name, value, allowed in [
        ("device", 3, r"str \| None"),
        ("threshold", "high", r"float \| None"),
        ("threshold", True, r"float \| None"),
        ("n", 1.5, r"Optional\[int\]"),
        ("items", None, r"list\[int\]"),
        ("steps", None, "int"),
    ]:
        with pytest.raises(ConfigError, match=rf"parameter '{name}' must be {allowed} \(default .*\), got ") as error:
            check_parameters(notebook, {name: value})
        assert error.value.field == name


def test_the_shipped_studies_type_their_unset_parameters():
    assert notebook_parameters("01_model_evaluation")["device"]["type"] == "str | None"
    acceleration = notebook_parameters("05_acceleration")
    assert acceleration["clip_model"] == {"default": '"toyworld/clip"', "type": "str | None"}
    check_parameters("05_acceleration", {"clip_model": None, "device": None})


def test_a_typed_none_parameter_reaches_the_kernel(tmp_path):
    notebook = _notebook(
        tmp_path / "typed.ipynb",
        'device: str | None = None\nthreshold: float | None = None\noutput_dir = "."',
        "import json\nfrom pathlib import Path\n\n"
        'Path(output_dir, "seen.json").write_text(json.dumps({"device": device, "threshold": threshold}))',
    )
    run = run_study(notebook, {"device": "cpu"}, output_root=tmp_path / "out", progress=False)
    assert json.loads((run.folder / "seen.json").read_text()) == {"device": "cpu", "threshold": None}
