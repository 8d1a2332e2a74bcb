from pathlib import Path

import pytest

from workbench.errors import ConfigError
from workbench.resources import bundled_studies
from workbench.study_notebooks import describe_studies, find_study, study_metadata

EVALUATION = Path(__file__).parent.parent / "notebooks" / "01_model_evaluation.ipynb"


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


def test_the_bundled_studies_declare_their_headline_and_prompts():
    declared = {name: study_metadata(name) for name in bundled_studies()}
    assert declared["00_explorer"] == {}
    assert declared["01_model_evaluation"]["prompts"] == {
        "name": "prompt_set",
        "categories": "categories",
        "n": "n_prompts",
    }
    labels = {name: meta["headline"]["label"] for name, meta in declared.items() if "headline" in meta}
    assert labels["01_model_evaluation"] == ["model_id"] and labels["04_ab_test"] == ["arm"]
    assert labels["06_metric_validity"] == ["metric"] and labels["05_acceleration"] == ["model", "config"]


def test_a_malformed_declaration_is_refused_naming_the_notebook(tmp_path, write_notebook):
    import nbformat

    notebook = write_notebook(tmp_path / "odd.ipynb", "steps = 2")
    document = nbformat.read(notebook, as_version=4)
    for odd in ({"headline": {"label": "model_id"}}, {"prompts": ["prompt_set"]}, ["headline"]):
        document.metadata["workbench"] = odd
        nbformat.write(document, notebook)
        with pytest.raises(ConfigError, match=r"odd.ipynb: metadata.workbench must be \{'headline'"):
            study_metadata(notebook)
