import pytest

from workbench.errors import ConfigError
from workbench.study_parameters import (
    _literal_values,
    check_parameters,
    check_study_metrics,
    current_parameters,
    notebook_parameters,
)


def test_typed_none_parameters_take_none_or_their_type(tmp_path, write_notebook):
    notebook = write_notebook(
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


def test_literal_parameters_take_only_their_choices(tmp_path, write_notebook):
    notebook = write_notebook(
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

    def choices(study: str, name: str) -> list:
        return _literal_values(notebook_parameters(study)[name]["type"])

    assert choices("01_model_evaluation", "worker_pool") == list(WORKER_POOLS)
    assert sorted(choices("02_routing", "classifiers")) == sorted(classifier_names())
    assert sorted(choices("02_routing", "split")) == sorted(set(labelled_prompts()["split"]))
    assert choices("03_prompt_optimization", "score_against") == choices("04_ab_test", "score_against")
    assert choices("04_ab_test", "score_against") == ["base", "arm"]
    for study, name, bad in [
        ("01_model_evaluation", "worker_pool", "kubernetes"),
        ("02_routing", "classifiers", ["keyword", "regex"]),
        ("02_routing", "split", "validation"),
        ("03_prompt_optimization", "score_against", "prompt"),
        ("04_ab_test", "score_against", "prompt"),
    ]:
        with pytest.raises(ConfigError, match=rf"parameter '{name}' must be .*Literal"):
            check_parameters(study, {name: bad})
    check_parameters("01_model_evaluation", {"worker_pool": "ray"})
    check_parameters("02_routing", {"classifiers": ["embedding"], "split": "train"})


def test_the_shipped_studies_type_their_unset_parameters():
    assert notebook_parameters("01_model_evaluation")["device"]["type"] == "str | None"
    acceleration = notebook_parameters("05_acceleration")
    assert acceleration["clip_model"] == {"default": '"toyworld/clip"', "type": "str | None"}
    check_parameters("05_acceleration", {"clip_model": None, "device": None})


def test_per_set_metrics_are_checked_on_the_prompts_a_study_declares(tmp_path, write_notebook):
    import nbformat

    notebook = write_notebook(
        tmp_path / "sets.ipynb", 'metrics = ["clip_score"]\nprompt_set = "toyworld"\ncategories = []\nn_prompts = 0'
    )
    check_study_metrics(notebook, {"metrics": ["fid"], "prompt_set": "partiprompts"})  # no prompts declared
    document = nbformat.read(notebook, as_version=4)
    for prompts in ({"name": "prompt_set", "categories": "categories", "n": "n_prompts"}, {"name": "prompt_set"}):
        document.metadata["workbench"] = {"prompts": prompts}
        nbformat.write(document, notebook)
        check_study_metrics(notebook, {"metrics": ["fid"]})  # toy world prompts have known answers
        with pytest.raises(ConfigError, match=r"fid needs a reference set"):
            check_study_metrics(notebook, {"metrics": ["fid"], "prompt_set": "partiprompts"})
    document.metadata["workbench"] = {"prompts": {"name": "prompt_file"}}
    nbformat.write(document, notebook)
    with pytest.raises(
        ConfigError, match=r"sets.ipynb: metadata.workbench.prompts names no such parameter\(s\) \['prompt_file'\]"
    ):
        check_study_metrics(notebook, {"metrics": ["fid"]})


def test_a_renamed_parameter_still_works_under_its_old_name_and_warns():
    with pytest.warns(DeprecationWarning, match="parameter 'worker_backend' is deprecated; use 'worker_pool'"):
        current = current_parameters("01_model_evaluation", {"worker_backend": "ray", "steps": 2})
    assert current == {"worker_pool": "ray", "steps": 2}
    check_parameters("01_model_evaluation", current)
    with pytest.raises(ConfigError, match="'worker_backend' is the old name of 'worker_pool': give 'worker_pool' only"):
        current_parameters("01_model_evaluation", {"worker_backend": "ray", "worker_pool": "local"})
