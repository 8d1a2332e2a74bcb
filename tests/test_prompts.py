import json
import random
from pathlib import Path

import pandas as pd
import pytest

from workbench.errors import ConfigError
from workbench.local_pipeline import token_budget
from workbench.prompts import (
    PROMPT_DIR,
    PROMPT_SETS,
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


# --- the benchmark suites ---------------------------------------------------------------------------------


def test_the_benchmark_suites_load_with_their_categories_metadata_and_licences(tmp_path):
    geneval = load_prompts("geneval")
    assert len(geneval) == 553 and geneval["prompt"].is_unique and geneval["prompt_id"].is_unique
    tags = {"single_object", "two_object", "counting", "colors", "position", "color_attr"}
    assert set(geneval["category"]) == tags
    assert json.loads(geneval["include"].iloc[0]) == [{"class": "bench", "count": 1}]
    counting = geneval[geneval["category"] == "counting"].iloc[0]
    (clause,), (excluded,) = json.loads(counting["include"]), json.loads(counting["exclude"])
    assert excluded == {"class": clause["class"], "count": clause["count"] + 1}  # "N" means exactly N
    position = geneval[geneval["category"] == "position"].iloc[0]
    assert json.loads(position["include"])[1]["position"][1] == 0  # [relation, index of the other clause]
    geneval.to_parquet(tmp_path / "geneval.parquet")  # JSON text stores where the mixed lists would not
    assert pd.read_parquet(tmp_path / "geneval.parquet").equals(geneval)
    compbench = load_prompts("t2i-compbench", categories=["color", "numeracy"])
    assert set(compbench["category"]) == {"color", "numeracy"} and compbench["prompt_id"].is_unique
    assert set(load_prompts("t2i-compbench")["category"]) == {
        "3d_spatial", "color", "complex", "non_spatial", "numeracy", "shape", "spatial", "texture"
    }  # fmt: skip
    dpg = load_prompts("dpg-bench")
    assert len(dpg) == 1065 and set(dpg["category"]) == {"dense"} and dpg["prompt_id"].is_unique
    for name in ("geneval", "t2i-compbench", "dpg-bench"):
        folder = PROMPT_DIR / Path(PROMPT_SETS[name]).parts[0]
        assert (folder / "LICENSE").is_file() and (folder / "SOURCE.md").is_file()


def test_a_prompt_table_of_ones_own_needs_a_prompt_column(tmp_path):
    (tmp_path / "mine.tsv").write_text("prompt\tnote\na red circle\tx\na blue square\ty\n")
    mine = load_prompts(str(tmp_path / "mine.tsv"))
    assert list(mine["prompt_id"]) == ["mine-0000", "mine-0001"] and set(mine["category"]) == {"all"}
    (tmp_path / "Parti.TSV").write_text("Prompt\tCategory\nbond\tAbstract\n")  # PartiPrompts' layout, as before
    parti = load_prompts(str(tmp_path / "Parti.TSV"))
    assert list(parti["prompt_id"]) == ["parti-0000"] and list(parti["category"]) == ["Abstract"]
    (tmp_path / "bad.csv").write_text("text\na red circle\n")
    with pytest.raises(ConfigError, match=r"has no prompt column; its columns are \['text'\]"):
        load_prompts(str(tmp_path / "bad.csv"))
    (tmp_path / "notes.txt").write_text("a red circle\n")
    with pytest.raises(ConfigError, match="unknown prompt set"):
        load_prompts(str(tmp_path / "notes.txt"))


def test_dense_prompts_past_the_window_are_flagged_truncated(tiny_pipe):
    dpg = load_prompts("dpg-bench", n=60, seed=0)
    budgets = [token_budget(tiny_pipe, prompt) for prompt in dpg["prompt"]]
    assert sum(b.count > b.limit for b in budgets) > 10  # most dense prompts overrun a 77-token window
    assert all(b.truncated == (b.count > b.limit) for b in budgets)
