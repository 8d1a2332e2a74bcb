import pytest

from workbench.errors import ConfigError
from workbench.prompts import load_prompts


def test_partiprompts_are_all_there_with_their_categories():
    parti = load_prompts("partiprompts")
    assert len(parti) == 1632 and parti["prompt_id"].is_unique
    assert {"People", "Arts", "Indoor Scenes"} <= set(parti["category"])


def test_category_filter_and_seeded_sample():
    people = load_prompts("partiprompts", categories=["People"])
    assert len(people) == 177 and set(people["category"]) == {"People"}
    a = load_prompts("partiprompts", n=10, seed=1)
    assert a.equals(load_prompts("partiprompts", n=10, seed=1))
    assert not a.equals(load_prompts("partiprompts", n=10, seed=2))


def test_toyworld_and_smoke_sets():
    toy = load_prompts("toyworld")
    assert set(toy["category"]) == {"plain", "photo", "sketch"} and len(toy) == 60
    assert len(load_prompts("smoke")) >= 3


def test_bad_names_are_refused_with_what_exists():
    with pytest.raises(ConfigError, match="partiprompts"):
        load_prompts("nope")
    with pytest.raises(ConfigError, match="Nonsense"):
        load_prompts("partiprompts", categories=["Nonsense"])
