import pytest

from workbench.config import SCHEDULERS, GenerationConfig
from workbench.errors import ConfigError


def test_defaults_mean_the_models_own_size_and_scheduler():
    config = GenerationConfig()
    assert (config.width, config.height, config.scheduler) == (None, None, None)
    assert config.steps >= 1 and config.batch_size == 1


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"steps": 0}, "steps"),
        ({"steps": 2.5}, "steps"),
        ({"steps": True}, "steps"),
        ({"guidance": -1}, "guidance"),
        ({"guidance": "high"}, "guidance"),
        ({"width": 100}, "width"),
        ({"height": 0}, "height"),
        ({"scheduler": "magic"}, "scheduler"),
        ({"batch_size": 0}, "batch_size"),
        ({"negative_prompt": 3}, "negative_prompt"),
    ],
)
def test_bad_values_are_refused_with_the_value_and_what_is_allowed(changes, named):
    with pytest.raises(ConfigError) as error:
        GenerationConfig(**changes)
    message = str(error.value)
    assert named in message
    assert repr(next(iter(changes.values()))) in message


def test_scheduler_error_lists_the_allowed_names():
    with pytest.raises(ConfigError, match="euler_a"):
        GenerationConfig(scheduler="magic")


def test_round_trips_through_dict_json_and_yaml():
    config = GenerationConfig(
        steps=7, guidance=3, width=64, height=32, negative_prompt="blurry", scheduler="ddim", batch_size=4
    )
    assert GenerationConfig.from_dict(config.to_dict()) == config
    assert GenerationConfig.from_json(config.to_json()) == config
    assert GenerationConfig.from_yaml(config.to_yaml()) == config
    assert isinstance(GenerationConfig.from_json(config.to_json()).guidance, float)


def test_unknown_fields_are_named():
    with pytest.raises(ConfigError, match=r"\['stepz'\]"):
        GenerationConfig.from_dict({"stepz": 3})
    with pytest.raises(ConfigError, match="stepz"):
        GenerationConfig().replace(stepz=3)


def test_replace_validates_again():
    assert GenerationConfig().replace(steps=3).steps == 3
    with pytest.raises(ConfigError):
        GenerationConfig().replace(width=12)


def test_every_scheduler_name_is_a_diffusers_class():
    import diffusers

    for class_name in SCHEDULERS.values():
        assert hasattr(diffusers, class_name)
