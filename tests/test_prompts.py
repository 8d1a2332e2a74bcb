import random

import pytest

from workbench.errors import ConfigError
from workbench.prompts import (
    QUALITY_MODIFIERS,
    PromptOptimizer,
    StylePreset,
    expand_template,
    load_prompts,
    load_styles,
)


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


# --- styles and the optimizer ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def optimizer():
    return PromptOptimizer()


def test_style_presets_load_with_a_prompt_slot():
    styles = load_styles()
    assert {"photo", "art", "sketch", "cinematic", "anime", "watercolor", "isometric", "plain"} <= set(styles)
    assert styles["photo"].prefix == "a photo of " and "natural light" in styles["photo"].modifiers
    with pytest.raises(ConfigError, match=r"must contain \{prompt\} once"):
        StylePreset("bad", "no slot")


def test_optimize_adds_style_quality_and_negative_prompts(optimizer):
    prompt, negative = optimizer.optimize("a large red circle on the left, on a white background", "photo")
    assert prompt.startswith("a photo of a large red circle on the left, on a white background, natural light")
    assert "sketch" in negative and "blurry" in negative
    plain = optimizer.optimize("a red circle", quality=False)
    assert plain.prompt == "a red circle" and plain.added == () and plain.negative_prompt.startswith("blurry")
    with pytest.raises(ConfigError, match="unknown style 'oil'; styles: "):
        optimizer.optimize("a red circle", "oil")


def test_modifiers_the_prompt_already_has_are_not_added_again(optimizer):
    result = optimizer.optimize("A Photo of a red circle, Sharp Focus", "photo")
    assert result.prompt.lower().count("photo") == 1 and result.prompt.lower().count("sharp focus") == 1
    assert {"a photo of", "sharp focus"} <= set(result.skipped)
    assert not set(result.added) & set(result.skipped)


def test_budget_drops_modifiers_from_the_end_and_reports_them(optimizer):
    # The toy tokenizer spells unknown words letter by letter: "trending on artstation" costs many tokens.
    subject = "a large red circle on the left, on a white background, " * 2
    result = optimizer.optimize(subject.strip(" ,"), "art")
    assert result.tokens <= result.limit and result.dropped
    assert list(result.added) + list(result.dropped) == [
        m
        for m in ["digital art of", "vibrant colours", "painterly", "trending on artstation", *QUALITY_MODIFIERS]
        if m not in result.skipped
    ]
    assert result.dropped[-1] == QUALITY_MODIFIERS[-1]  # the last modifier goes first


def test_two_tokenizers_the_tighter_window_decides():
    from transformers import CLIPTokenizer

    from workbench.models import TOYWORLD_DIR

    folder = TOYWORLD_DIR / "sd-small" / "tokenizer"
    wide, narrow = CLIPTokenizer.from_pretrained(folder), CLIPTokenizer.from_pretrained(folder, model_max_length=24)
    result = PromptOptimizer(tokenizers=[wide, narrow]).optimize("a large red circle on the left", "photo")
    assert result.limit == 24 and result.tokens <= 24 and result.dropped


def test_property_the_subject_is_never_truncated_or_reordered(optimizer):
    rng = random.Random(0)
    vocabulary = ["a", "red", "large", "circle", "on", "the", "left", "photo", "sharp", "focus", "zebra", "quokka"]
    for _ in range(150):
        subject = " ".join(rng.choice(vocabulary) for _ in range(rng.randint(1, 90)))
        style = rng.choice([None, *sorted(optimizer.styles)])
        result = optimizer.optimize(subject, style, quality=rng.random() < 0.8)
        added_prefix = style and optimizer.styles[style].prefix.strip() in result.added
        prefix = optimizer.styles[style].prefix if added_prefix else ""
        assert result.prompt.startswith(prefix + subject), (subject, result.prompt)  # first and whole
        if result.subject_fits:
            assert result.tokens <= result.limit, (subject, result.prompt)
        else:
            assert result.prompt == subject and result.added == ()


# --- templates and wildcards ---------------------------------------------------------------------------


def test_templates_expand_combinatorially_and_sample_with_a_variant_seed():
    everything = expand_template("a {small|large} __colour__ __shape__")
    assert len(everything) == 2 * 6 * 4 and len(set(everything)) == 48 and "a large red circle" in everything
    sample = expand_template("a {small|large} __colour__ __shape__", n=5, seed=3)
    assert sample == expand_template("a {small|large} __colour__ __shape__", n=5, seed=3)
    assert sample != expand_template("a {small|large} __colour__ __shape__", n=5, seed=4)
    assert set(sample) <= set(everything)
    with pytest.raises(ConfigError, match=r"unknown wildcard\(s\) \['mood'\].*'colour'"):
        expand_template("a __mood__ circle")
