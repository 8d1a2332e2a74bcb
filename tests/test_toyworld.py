import numpy as np
import pytest

from workbench import GenerationConfig, generate, load
from workbench.errors import ConfigError
from workbench.models import TOYWORLD_DIR, describe_models
from workbench.toyworld import scenes
from workbench.toyworld.tokenizer import MAX_LENGTH, build_tokenizer


def test_scenes_are_seeded_and_captions_name_every_attribute():
    assert scenes.sample_scenes(20, seed=3) == scenes.sample_scenes(20, seed=3)
    scene = scenes.Scene("triangle", "green", "black", "small", "left", "sketch")
    a = scenes.render(scene, np.random.default_rng(1))
    b = scenes.render(scene, np.random.default_rng(1))
    assert a.size == (scenes.IMAGE_SIZE, scenes.IMAGE_SIZE) and a.tobytes() == b.tobytes()
    assert scenes.caption(scene) == "a sketch of a small green triangle on the left, on a black background"
    assert (
        scenes.caption(scene, synonym=1) == "a drawing of a tiny green triangle on the left side, on a dark background"
    )


def test_styles_draw_differently():
    base = dict(shape="circle", colour="blue", background="white", size="large", position="centre")
    images = {
        style: np.asarray(scenes.render(scenes.Scene(**base, style=style)), dtype=float) for style in scenes.STYLES
    }
    # A sketch leaves the middle of the shape empty; a photo is shaded (brighter top-left than bottom-right).
    assert images["sketch"][16, 16].mean() > 200 and images["plain"][16, 16].mean() < 150
    assert images["photo"][12, 12].sum() > images["photo"][20, 20].sum() + 30


def test_held_out_pairs_never_reach_generator_training_draws():
    draw = scenes.sample_scenes(3000, seed=0, exclude_held_out=True)
    assert not any(s.held_out for s in draw)
    assert any(s.held_out for s in scenes.sample_scenes(3000, seed=0))


def test_pixel_check_reads_real_scenes_right():
    rng = np.random.default_rng(0)
    for scene in scenes.sample_scenes(300, seed=9):
        read = scenes.pixel_attributes(scenes.render(scene, rng))
        assert all(read[a] == getattr(scene, a) for a in ("colour", "background", "size", "position")), scene


def test_tokenizer_gives_each_caption_word_one_token_and_truncates_at_its_window():
    tokenizer = build_tokenizer(scenes.vocabulary())
    text = "a photo of a large red circle on the left"
    ids = tokenizer(text).input_ids
    assert len(ids) == len(text.split()) + 2
    assert tokenizer.decode(ids, skip_special_tokens=True) == text
    assert tokenizer.model_max_length == MAX_LENGTH
    long = tokenizer("zebra " * 100, truncation=True).input_ids
    assert len(long) == MAX_LENGTH and long[-1] == tokenizer.eos_token_id


@pytest.mark.slow
def test_training_entry_point_writes_a_loadable_pipeline(tmp_path):
    from workbench.toyworld.train import TrainSettings, train_family

    results = train_family(tmp_path, TrainSettings(scale=0.002, images=256, workers=1))  # a few steps of each
    assert [r["phase"] for r in results] == ["clip", "vae", "sd-small", "sd-base", "dit-small", "clip-vision"]
    for name in ("sd-small", "dit-small"):
        pipe = load(str(tmp_path / name), device="cpu", cache=None)
        (record,) = generate(pipe, "a red circle", GenerationConfig(steps=2), 0)
        assert record.image.size == (scenes.IMAGE_SIZE, scenes.IMAGE_SIZE)
    assert (tmp_path / "train_log.jsonl").read_text().count('"event": "done"') == 1

    # One phase again, on what the others left (how the diffusion transformer was added to the family).
    (tmp_path / "dit-small" / "model_index.json").unlink()
    again = train_family(tmp_path, TrainSettings(scale=0.002, images=256, workers=1), phases=["dit-small"])
    assert [r["phase"] for r in again] == ["dit-small"] and (tmp_path / "dit-small" / "model_index.json").is_file()
    with pytest.raises(ConfigError, match=r"unknown training phase\(s\) \['dit'\]; phases: .*'dit-small'"):
        train_family(tmp_path, TrainSettings(), phases=["dit"])


def test_the_packaged_family_is_registered():
    listed = dict(describe_models())
    for model_id in ("toyworld/sd-small", "toyworld/sd-base", "toyworld/dit-small", "toyworld/clip"):
        assert model_id in listed
    assert sum(f.stat().st_size for f in TOYWORLD_DIR.rglob("*") if f.is_file()) < 30 * 2**20


@pytest.mark.parametrize("model_id", ["toyworld/sd-small", "toyworld/sd-base", "toyworld/dit-small"])
def test_toy_generators_draw_the_asked_colour(model_id):
    """A small, fast version of the quality bar: one image per colour, judged by the pixel check."""
    pipe = load(model_id, device="cpu")
    truth = [
        scenes.Scene(shape, colour, background, "large", "centre", "plain")
        for shape, colour, background in zip(
            ("circle", "square", "triangle", "cross", "circle", "square"),
            scenes.COLOURS,
            ("white", "grey", "black", "white", "grey", "black"),
            strict=True,
        )
    ]
    records = generate(pipe, [scenes.caption(s) for s in truth], GenerationConfig(batch_size=6), seeds=0)
    read = [scenes.pixel_attributes(r.image) for r in records]
    assert [r["colour"] for r in read] == [s.colour for s in truth]
    assert [r["background"] for r in read] == [s.background for s in truth]


def test_toy_clip_reads_real_scenes():
    from workbench.toyworld.judge import ToyJudge, accuracy

    truth = scenes.sample_scenes(200, seed=1)
    rng = np.random.default_rng(1)
    scores = accuracy(ToyJudge(TOYWORLD_DIR / "clip").judge([scenes.render(s, rng) for s in truth], truth))
    assert all(scores[f"clip_{a}"] >= 0.9 for a in scenes.ATTRIBUTES), scores


def test_an_unknown_training_phase_is_refused_with_the_known_ones(tmp_path):
    from workbench.toyworld.train import TrainSettings, _run_phase, phase_trainers

    assert {"clip", "vae", "clip-vision", "sd-small", "sd-base", "dit-small"} <= set(phase_trainers())
    with pytest.raises(ConfigError, match=r"unknown training phase 'unet'; phases: .*'sd-base'"):
        _run_phase(("unet", tmp_path, TrainSettings(), None))


def test_a_degraded_render_is_the_same_size_reproducible_from_its_seed_and_changed():
    from workbench.toyworld.degrade import degrade

    scene = scenes.Scene("square", "blue", "white", "large", "left", "plain")
    clean = scenes.render(scene)
    first, second = (degrade(clean, np.random.default_rng(3)) for _ in range(2))
    assert first.size == clean.size and first.mode == "RGB"
    assert np.array_equal(np.asarray(first), np.asarray(second))  # the same seed, the same image
    change = np.abs(np.asarray(first, dtype=float) - np.asarray(clean, dtype=float))
    assert 0 < change.mean() < 40  # changed, and still the same scene
