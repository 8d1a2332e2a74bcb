import ast
import hashlib
import itertools
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from workbench.errors import ConfigError
from workbench.metrics.composition import CompositionScorer
from workbench.toyworld import captions, judge, reader, scenes
from workbench.toyworld.degrade import degrade
from workbench.toyworld.reader import load_reader
from workbench.toyworld.train_reader import train_reader


def test_the_judge_reads_every_attribute_of_rendered_and_degraded_scenes():
    truth = scenes.sample_scenes(600, seed=21)
    for attribute, values in scenes.VALUES.items():
        assert {getattr(s, attribute) for s in truth} == set(values)
    rng = np.random.default_rng(21)
    rendered = [scenes.render(s, rng) for s in truth]
    for name, images, floor in (("rendered", rendered, 0.99), ("degraded", [degrade(i, rng) for i in rendered], 0.95)):
        judgements = judge.judge_images(images, [scenes.caption(s) for s in truth])
        accuracy = {a: np.mean([j.attributes[a].right is True for j in judgements]) for a in scenes.ATTRIBUTES}
        print(f"judge on {len(truth)} {name} scenes:", {a: round(float(v), 4) for a, v in accuracy.items()})
        assert all(v >= floor for v in accuracy.values()), (name, accuracy)
        assert np.mean([j.composition_all == 1.0 for j in judgements]) >= floor - 0.02, name
        changed = [  # each scene's caption with one attribute (in turn) moved to its next value
            replace(s, **{a: scenes.VALUES[a][(scenes.VALUES[a].index(getattr(s, a)) + 1) % len(scenes.VALUES[a])]})
            for s, a in zip(truth, itertools.cycle(scenes.ATTRIBUTES))
        ]
        caught = judge.judge_images(images, [scenes.caption(s) for s in changed])
        assert np.mean([j.composition_all == 0.0 for j in caught]) >= floor - 0.02, name


def test_every_caption_form_parses_back_to_its_scene():
    for scene in scenes.all_scenes():
        for synonym in (0, 1):
            parsed = captions.parse_prompt(scenes.caption(scene, synonym))
            assert parsed.reason is None and parsed.attributes == scene.attributes(), (scene, synonym)


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        ("a crimson circle in the middle", {"shape": "circle", "colour": "red", "position": "centre"}),
        (
            "A big violet square, centred, against a gray backdrop",
            {"shape": "square", "colour": "purple", "size": "large", "position": "centre", "background": "grey"},
        ),
        (
            "a tiny emerald plus sign at the bottom",
            {"shape": "cross", "colour": "green", "size": "small", "position": "bottom"},
        ),
        (
            "photograph of a huge golden triangle on the right side on black",
            {
                "shape": "triangle",
                "colour": "yellow",
                "size": "large",
                "position": "right",
                "background": "black",
                "style": "photo",
            },
        ),
        (
            "an outline of a little navy disc, top, on a dark background",
            {
                "shape": "circle",
                "colour": "blue",
                "size": "small",
                "position": "top",
                "background": "black",
                "style": "sketch",
            },
        ),
        ("a flat amber circle on white", {"shape": "circle", "colour": "orange", "background": "white"}),
        ("circles", {"shape": "circle"}),
    ],
)
def test_synonyms_and_paraphrases_parse_to_the_world_values(prompt, expected):
    parsed = captions.parse_prompt(prompt)
    assert parsed.reason is None
    assert parsed.attributes == {"style": "plain", **expected}


@pytest.mark.parametrize(
    ("prompt", "reason"),
    [
        ("a cat on a sofa at sunset", "no shape word"),
        ("", "no shape word"),
        ("a red circle next to a dog", "words outside the toy world: next, dog"),
        ("a red and blue circle", "more than one colour: red, blue"),
        ("a circle and a square", "more than one shape: circle, square"),
        ("a white circle", "'white' is not a shape colour"),
        ("a circle at the top left", "more than one position: top, left"),
    ],
)
def test_a_prompt_outside_the_toy_world_gets_no_values_and_a_reason(prompt, reason):
    parsed = captions.parse_prompt(prompt)
    assert parsed.attributes == {} and parsed.reason.startswith("not a toy-world prompt") and reason in parsed.reason
    image = scenes.render(scenes.all_scenes()[0])
    judged = judge.judge_image(image, prompt)
    assert judged.attributes == {} and judged.composition is None and judged.composition_all is None
    assert judged.reason == parsed.reason


def test_a_wrong_image_is_judged_wrong_on_exactly_that_attribute():
    rng = np.random.default_rng(5)
    cases = [
        (scene, attribute, value)
        for scene in scenes.sample_scenes(24, seed=5)
        for attribute, values in scenes.VALUES.items()
        for value in values
        if value != getattr(scene, attribute)
    ]
    images = [scenes.render(replace(scene, **{attribute: value}), rng) for scene, attribute, value in cases]
    judgements = judge.judge_images(images, [scenes.caption(scene) for scene, _, _ in cases])
    for (scene, attribute, value), judged in zip(cases, judgements, strict=True):
        wrong = [a for a, j in judged.attributes.items() if j.right is not True]
        assert wrong == [attribute], (scene, attribute, value, judged)
        assert judged.attributes[attribute] == judge.AttributeJudgement(getattr(scene, attribute), value, False)
        assert judged.composition == pytest.approx(5 / 6) and judged.composition_all == 0.0


def test_only_the_named_attributes_are_judged():
    scene = scenes.Scene("triangle", "green", "black", "large", "left", "plain")
    judged = judge.judge_image(scenes.render(scene), "a green triangle")
    assert set(judged.attributes) == {"shape", "colour", "style"}
    assert judged.attributes["colour"] == judge.AttributeJudgement("green", "green", True)
    assert judged.composition == 1.0 and judged.composition_all == 1.0 and judged.reason is None
    judged = judge.judge_image(scenes.render(scene), "a blue triangle")
    assert judged.composition == pytest.approx(2 / 3) and judged.composition_all == 0.0


def test_an_image_without_a_shape_reads_nothing_and_is_surely_wrong():
    blank = Image.new("RGB", (scenes.IMAGE_SIZE,) * 2, scenes.BACKGROUNDS["grey"])
    read = judge.read_image(blank)
    assert {a: r.value for a, r in read.items()} == {a: None for a in scenes.ATTRIBUTES} | {"background": "grey"}
    assert all(r.sure for r in read.values())
    judged = judge.judge_image(blank, "a red circle on a grey background")
    assert judged.attributes["shape"] == judge.AttributeJudgement("circle", None, False)
    assert judged.attributes["background"].right and judged.composition == pytest.approx(1 / 4)
    assert judged.composition_all == 0.0 and judged.reason is None


def _readings(**unsure: str) -> dict[str, judge.Reading]:
    scene = scenes.Scene("circle", "red", "white", "large", "centre", "plain").attributes()
    return {a: judge.Reading(unsure.get(a, v), 0.5 if a in unsure else 0.99, a not in unsure) for a, v in scene.items()}


def test_an_unsure_attribute_is_neither_right_nor_wrong_and_named():
    expected = {"shape": "circle", "colour": "red", "size": "large", "style": "plain"}
    judged = judge._judge(_readings(shape="square"), expected)
    assert judged.attributes["shape"] == judge.AttributeJudgement("circle", "square", None)
    assert judged.composition == 1.0 and judged.composition_all is None
    assert judged.reason == "unsure of shape (square, p=0.50)"
    judged = judge._judge(_readings(shape="circle", style="photo"), expected | {"colour": "blue"})
    assert judged.composition == 0.5 and judged.composition_all is None  # one of two sure attributes wrong
    assert judged.reason.startswith("unsure of shape (circle") and "style (photo" in judged.reason
    judged = judge._judge(_readings(shape="square"), {"shape": "circle"})
    assert judged.composition is None and judged.composition_all is None
    columns = CompositionScorer(judge=lambda images, prompts: [judged]).score_columns([None], ["a circle"])
    assert columns["composition_all"] == [None] and columns["composition_wrong"] == [""]
    assert columns["composition_reason"] == ["unsure of shape (square, p=0.50)"]


def test_the_judge_is_unsure_where_an_image_turns_from_one_value_into_another():
    scene = scenes.Scene("circle", "red", "white", "small", "left", "plain")
    left, centre = scenes.render(scene), scenes.render(replace(scene, position="centre"))
    low, high = 0.0, 1.0  # blended from left (0) to centre (1): find where the reading turns, by bisection
    for _ in range(30):
        middle = (low + high) / 2
        low, high = (
            (middle, high)
            if judge.read_image(Image.blend(left, centre, middle))["position"].value == "left"
            else (low, middle)
        )
    between = Image.blend(left, centre, (low + high) / 2)
    assert not judge.read_image(between)["position"].sure
    judged = judge.judge_image(between, scenes.caption(scene))
    assert judged.attributes["position"].right is None and judged.composition_all is None
    assert judged.composition == 1.0 and judged.reason.startswith("unsure of position")


def test_judge_images_takes_arrays_and_refuses_bad_input():
    scene = scenes.all_scenes()[7]
    array = np.asarray(scenes.render(scene))
    (judged,) = judge.judge_images([array], [scenes.caption(scene)])
    assert judged.composition_all == 1.0
    with pytest.raises(ConfigError, match="2 images but 1 prompts"):
        judge.judge_images([array, array], [scenes.caption(scene)])
    with pytest.raises(ConfigError, match="2 images but 1 prompts"):
        judge.judge_images([array, array], scenes.caption(scene))
    with pytest.raises(ConfigError, match="not str"):
        judge.judge_image("image.png", scenes.caption(scene))


def _imports(path: Path, skip_class: str | None = None) -> set[str]:
    tree = ast.parse(path.read_text())
    nodes = [n for n in tree.body if not (isinstance(n, ast.ClassDef) and n.name == skip_class)]
    found = set()
    for node in (n for top in nodes for n in ast.walk(top)):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            found.add(node.module or "")
    return found


def test_the_judge_loads_no_clip():
    for path, skip in ((captions.__file__, None), (judge.__file__, "ToyJudge"), (reader.__file__, None)):
        imports = _imports(Path(path), skip)
        assert not {i for i in imports if i.startswith(("transformers", "workbench.metrics"))}, imports
    code = (
        "import sys\n"
        "from workbench.toyworld import judge, scenes\n"
        "s = scenes.all_scenes()[0]\n"
        "assert judge.judge_images([scenes.render(s)], [scenes.caption(s)])[0].composition_all == 1.0\n"
        "print(sorted(m for m in sys.modules if m.startswith(('transformers', 'open_clip'))))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]", result.stdout


def test_the_reader_trains_from_its_seed_and_loads_as_saved(tmp_path):
    settings = {"images": 400, "epochs": 1, "held_out": 200, "workers": 1, "log": lambda message: None}
    trained = train_reader(tmp_path / "a", seed=3, **settings)
    again = train_reader(tmp_path / "b", seed=3, **settings)
    weights = [load_file(tmp_path / name / "model.safetensors") for name in ("a", "b")]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])  # seeded: the same weights
    config = json.loads((tmp_path / "a" / "config.json").read_text())
    assert config["seed"] == 3
    assert config["command"].startswith("python -m workbench.toyworld.train_reader --out DIR --seed 3")
    assert config["sha256"] == hashlib.sha256((tmp_path / "a" / "model.safetensors").read_bytes()).hexdigest()
    assert set(config["held_out"]) == set(scenes.ATTRIBUTES) and config["threshold"] == trained.threshold
    pixels = np.stack([np.asarray(scenes.render(s)) for s in scenes.sample_scenes(8, seed=1)])
    assert load_reader(tmp_path / "a").read(pixels) == trained.read(pixels) == again.read(pixels)


def test_the_shipped_reader_says_how_it_was_trained():
    config = json.loads((reader.READER_DIR / "config.json").read_text())
    assert config["command"].startswith("python -m workbench.toyworld.train_reader")
    assert {"seed", "training_images", "epochs", "training_limits", "held_out", "temperatures", "torch"} <= set(config)
    assert config["sha256"] == hashlib.sha256((reader.READER_DIR / "model.safetensors").read_bytes()).hexdigest()
    assert all(figures["accuracy_sure"] >= 0.97 for figures in config["held_out"].values()), config["held_out"]
