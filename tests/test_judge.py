import ast
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from workbench.errors import ConfigError
from workbench.toyworld import captions, judge, scenes


def test_the_pixel_judge_reads_every_attribute_of_rendered_scenes():
    truth = scenes.sample_scenes(600, seed=21)
    for attribute, values in (
        ("shape", scenes.SHAPES),
        ("colour", scenes.COLOURS),
        ("background", scenes.BACKGROUNDS),
        ("size", scenes.SIZES),
        ("position", scenes.POSITIONS),
        ("style", scenes.STYLES),
    ):
        assert {getattr(s, attribute) for s in truth} == set(values)
    rng = np.random.default_rng(21)
    judgements = judge.judge_images([scenes.render(s, rng) for s in truth], [scenes.caption(s) for s in truth])
    accuracy = {a: np.mean([j.attributes[a].right for j in judgements]) for a in scenes.ATTRIBUTES}
    print(f"pixel judge on {len(truth)} rendered scenes:", {a: round(float(v), 4) for a, v in accuracy.items()})
    assert all(v >= 0.98 for v in accuracy.values()), accuracy
    assert np.mean([j.composition_all for j in judgements]) >= 0.98


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
    alternatives = {
        "shape": scenes.SHAPES,
        "colour": tuple(scenes.COLOURS),
        "background": tuple(scenes.BACKGROUNDS),
        "size": tuple(scenes.SIZES),
        "position": tuple(scenes.POSITIONS),
        "style": scenes.STYLES,
    }
    for scene in scenes.sample_scenes(24, seed=5):
        for attribute, values in alternatives.items():
            for value in values:
                if value == getattr(scene, attribute):
                    continue
                image = scenes.render(replace(scene, **{attribute: value}), rng)
                judged = judge.judge_image(image, scenes.caption(scene))
                wrong = [a for a, j in judged.attributes.items() if not j.right]
                assert wrong == [attribute], (scene, attribute, value, judged)
                assert judged.attributes[attribute].read == value
                assert judged.composition == pytest.approx(5 / 6) and judged.composition_all == 0.0


def test_only_the_named_attributes_are_judged():
    scene = scenes.Scene("triangle", "green", "black", "large", "left", "plain")
    judged = judge.judge_image(scenes.render(scene), "a green triangle")
    assert set(judged.attributes) == {"shape", "colour", "style"}
    assert judged.attributes["colour"] == judge.AttributeJudgement("green", "green", True)
    assert judged.composition == 1.0 and judged.composition_all == 1.0 and judged.reason is None
    judged = judge.judge_image(scenes.render(scene), "a blue triangle")
    assert judged.composition == pytest.approx(2 / 3) and judged.composition_all == 0.0


def test_an_image_without_a_shape_reads_nothing_and_is_wrong():
    blank = Image.new("RGB", (scenes.IMAGE_SIZE,) * 2, scenes.BACKGROUNDS["grey"])
    assert judge.read_image(blank) == {a: None for a in scenes.ATTRIBUTES} | {"background": "grey"}
    judged = judge.judge_image(blank, "a red circle on a grey background")
    assert judged.attributes["shape"] == judge.AttributeJudgement("circle", None, False)
    assert judged.attributes["background"].right and judged.composition == pytest.approx(1 / 4)


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


def test_the_pixel_judge_loads_no_clip():
    for path, skip in ((captions.__file__, None), (judge.__file__, "ToyJudge")):
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
