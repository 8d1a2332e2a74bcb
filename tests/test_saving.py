import json

import numpy as np
import pytest
from PIL import Image

from workbench.config import GenerationConfig
from workbench.errors import ImageMetadataError
from workbench.generation import generate, read_settings, reproduce, save_image

FAST = GenerationConfig(steps=3, guidance=4.0, negative_prompt="blurry")


def test_png_metadata_round_trip(tiny_pipe, tmp_path):
    (record,) = generate(tiny_pipe, "a red circle", FAST, 11)
    path = save_image(record, tmp_path)
    settings = read_settings(path)
    assert settings == json.loads(json.dumps(record.settings()))
    assert settings["seed"] == 11 and settings["negative_prompt"] == "blurry" and settings["steps"] == 3
    assert settings["versions"]["diffusers"]
    with Image.open(path) as image:
        assert "Seed: 11" in image.text["parameters"]
        assert np.array_equal(np.asarray(image), np.asarray(record.image))


@pytest.mark.parametrize(("prompt", "model_id"), [("../../etc/passwd", "a/b"), ("/abs/path\\x:y", "../../up")])
def test_file_names_never_come_from_prompts_or_model_ids(tiny_pipe, tmp_path, prompt, model_id):
    (record,) = generate(tiny_pipe, prompt, FAST, 0, model_id=model_id)
    path = save_image(record, tmp_path / "run")
    assert path.parent == tmp_path / "run"
    assert path.name.startswith("s0-") and path.suffix == ".png"
    assert "/" not in path.name and ".." not in path.stem and "passwd" not in path.name
    assert read_settings(path)["prompt"] == prompt


def test_different_settings_never_overwrite_each_other(tiny_pipe, tmp_path):
    records = generate(tiny_pipe, ["a", "b"], FAST, [0, 1])
    paths = {save_image(r, tmp_path) for r in records}
    assert len(paths) == 4


def test_reproduce_regenerates_a_saved_image(tiny_pipe, tmp_path):
    (record,) = generate(tiny_pipe, "a blue square", FAST.replace(batch_size=2), 4)
    result = reproduce(save_image(record, tmp_path))
    assert result.matches and result.max_abs_diff <= result.tolerance
    assert result.record.seed == 4 and result.record.config.negative_prompt == "blurry"


def test_reproduce_notices_a_changed_image(tiny_pipe, tmp_path):
    (record,) = generate(tiny_pipe, "a blue square", FAST, 4)
    path = save_image(record, tmp_path)
    with Image.open(path) as image:
        text, pixels = dict(image.text), np.asarray(image).copy()
    pixels[0, 0] = 255 - pixels[0, 0]
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    for key, value in text.items():
        info.add_text(key, value)
    Image.fromarray(pixels).save(path, pnginfo=info)
    result = reproduce(path)
    assert not result.matches and result.max_abs_diff > 2


def test_a_png_without_metadata_is_refused_clearly(tmp_path):
    path = tmp_path / "plain.png"
    Image.new("RGB", (8, 8)).save(path)
    with pytest.raises(ImageMetadataError, match="no 'workbench' metadata"):
        read_settings(path)
    with pytest.raises(ImageMetadataError, match="cannot read"):
        read_settings(tmp_path / "missing.png")
