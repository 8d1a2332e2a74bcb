import json
import sys
from pathlib import Path

import pandas as pd
import pytest

from workbench.cli import main
from workbench.errors import ConfigError, NotebookRunError
from workbench.resources import bundled_studies
from workbench.run_folder import SCHEMA_VERSION
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


def test_literal_parameters_take_only_their_choices(tmp_path):
    notebook = _notebook(
        tmp_path / "choices.ipynb",
        "from typing import Literal\n"
        'backend: Literal["local", "ray"] = "local"  # local or ray\n'
        'mode: Literal["a", "b"] | None = None\n'
        "level: Literal[1, 2] = 1\n"
        'names: list[Literal["x", "y"]] = ["x"]\n'
        "counts: list[int] = [1]",
    )
    assert notebook_parameters(notebook)["backend"] == {"default": '"local"', "type": 'Literal["local", "ray"]'}
    check_parameters(notebook, {"backend": "ray", "mode": None, "level": 2, "names": ["y", "x"], "counts": [3]})
    check_parameters(notebook, {"mode": "b", "names": []})
    for name, value in [
        ("backend", "kubernetes"),
        ("backend", None),
        ("mode", "c"),
        ("level", True),  # True == 1, but it is no choice of an int Literal
        ("level", "1"),
        ("names", ["x", "z"]),
        ("names", "x"),
        ("counts", [1, "two"]),
    ]:
        with pytest.raises(ConfigError, match=rf"parameter '{name}' must be .*, got ") as error:
            check_parameters(notebook, {name: value})
        assert error.value.field == name
    with pytest.raises(ConfigError, match=r"got str 'kubernetes'; one of 'local', 'ray'$"):
        check_parameters(notebook, {"backend": "kubernetes"})


def test_the_shipped_studies_declare_their_choices():
    from workbench.engine import WORKER_POOLS
    from workbench.routing import classifier_names, labelled_prompts
    from workbench.studies import _literal_values

    def choices(study: str, name: str) -> list:
        return _literal_values(notebook_parameters(study)[name]["type"])

    assert choices("01_model_evaluation", "worker_backend") == list(WORKER_POOLS)
    assert sorted(choices("02_routing", "classifiers")) == sorted(classifier_names())
    assert sorted(choices("02_routing", "split")) == sorted(set(labelled_prompts()["split"]))
    assert choices("03_prompt_optimization", "score_against") == choices("04_ab_test", "score_against")
    assert choices("04_ab_test", "score_against") == ["base", "arm"]
    for study, name, bad in [
        ("01_model_evaluation", "worker_backend", "kubernetes"),
        ("02_routing", "classifiers", ["keyword", "regex"]),
        ("02_routing", "split", "validation"),
        ("03_prompt_optimization", "score_against", "prompt"),
        ("04_ab_test", "score_against", "prompt"),
    ]:
        with pytest.raises(ConfigError, match=rf"parameter '{name}' must be .*Literal"):
            check_parameters(study, {name: bad})
    check_parameters("01_model_evaluation", {"worker_backend": "ray"})
    check_parameters("02_routing", {"classifiers": ["embedding"], "split": "train"})


def test_a_value_outside_the_choices_fails_before_the_kernel_starts(tmp_path, capsys):
    argv = ["run", "01_model_evaluation", "-p", "worker_backend", "kubernetes", "--output-root", str(tmp_path)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: parameter 'worker_backend' must be Literal") and err.count("\n") == 1
    assert not any(tmp_path.iterdir())


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


def test_a_study_console_shows_no_kernel_or_library_chatter(tmp_path, capfd):
    notebook = _notebook(
        tmp_path / "quiet.ipynb",
        'output_dir = "."',
        "from diffusers.utils import logging as diffusers_logging\n\n"
        'for _ in diffusers_logging.tqdm(range(3), desc="Loading pipeline components..."):\n    pass\n'
        'print("done")',
    )
    run = run_study(notebook, {}, output_root=tmp_path / "out", progress=False)
    err = capfd.readouterr().err
    assert "without encryption" not in err and "IPKernelApp" not in err, err
    outputs = json.loads((run.folder / "executed.ipynb").read_text())["cells"][-1]["outputs"]
    assert [o.get("text") for o in outputs] == [["done\n"]]  # no progress bars in the report


def _version_1_run(folder: Path, study: str, run_id: str, *, started: str, models: list[str], **manifest) -> Path:
    """A run folder as runs were written before schema versions: no schema_version anywhere, summary.json a
    bare list (and the manifest's summary that list)."""
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


def test_the_index_filters_by_study_model_and_date(tmp_path):
    from workbench.studies import write_index

    _version_1_run(tmp_path, "01_model_evaluation", "r1", started="2026-01-02T10:00:00+0000", models=["m/a"])
    _version_1_run(
        tmp_path, "04_ab_test", "r2", started="2026-03-04T10:00:00+0000", models=["m/b"], model_ids=["m/b", "m/c"]
    )
    page = write_index(tmp_path).read_text()
    for control in ('id="filter-study"', 'id="filter-model"', 'id="filter-from" type="date"', 'type="date"'):
        assert control in page
    assert '<option value="01_model_evaluation">' in page and '<option value="04_ab_test">' in page
    assert '<option value="m/c">' in page and "<script>" in page and "src=" not in page  # nothing to fetch
    # Each row carries what the filters read: the manifest's model_ids, else its summary's (a version-1 run).
    quoted = "[&quot;m/b&quot;, &quot;m/c&quot;]"
    assert f'<tr data-study="04_ab_test" data-models="{quoted}" data-started="2026-03-04">' in page
    assert '<tr data-study="01_model_evaluation" data-models="[&quot;m/a&quot;]" data-started="2026-01-02">' in page
    assert page.index('data-study="04_ab_test"') < page.index('data-study="01_model_evaluation"')  # newest first
    assert "m/a: 0.250 s/img, CLIP 30.0" in page and "01_model_evaluation/r1/report.html" in page
    for header in ("study", "started", "status", "parameters", "headline"):
        assert f"<th>{header}</th>" in page


@pytest.mark.browser
def test_the_index_filters_hide_rows_in_a_browser(tmp_path):
    import shutil

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    sync_api = pytest.importorskip("playwright.sync_api")
    if chromium is None:
        pytest.skip("Chromium is not installed (apt-get install chromium)")
    from workbench.studies import write_index

    _version_1_run(tmp_path, "01_model_evaluation", "r1", started="2026-01-02T10:00:00+0000", models=["m/a"])
    _version_1_run(tmp_path, "01_model_evaluation", "r2", started="2026-02-02T10:00:00+0000", models=["m/b"])
    _version_1_run(tmp_path, "04_ab_test", "r3", started="2026-03-04T10:00:00+0000", models=["m/b"])
    index = write_index(tmp_path)
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page()
        page.goto(index.as_uri())

        def shown():
            return page.eval_on_selector_all("tr[data-study]:not([hidden])", "rows => rows.length")

        assert shown() == 3 and page.text_content("#filter-count") == "3 of 3 runs"
        page.select_option("#filter-study", "01_model_evaluation")
        assert shown() == 2
        page.fill("#filter-model", "M/B")
        assert shown() == 1
        page.select_option("#filter-study", "")
        page.fill("#filter-from", "2026-03-01")
        assert shown() == 1 and page.text_content("#filter-count") == "1 of 3 runs"
        page.fill("#filter-model", "")
        page.fill("#filter-to", "2026-03-03")
        assert shown() == 0
        browser.close()


def test_a_version_1_run_resumes_and_is_migrated(tmp_path):
    notebook = _notebook(
        tmp_path / "typed.ipynb",
        'device: str | None = None\noutput_dir = "."',
        'from pathlib import Path\n\nPath(output_dir, "seen.txt").write_text(str(device))',
    )
    out = tmp_path / "out"
    earlier = _version_1_run(
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
