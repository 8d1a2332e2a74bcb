import numpy as np
import pytest
import torch
from PIL import Image

from workbench.errors import ConfigError
from workbench.metrics import CLIPScorer, fidelity
from workbench.toyworld import scenes


@pytest.fixture(scope="module")
def scorer():
    return CLIPScorer("toyworld/clip", batch_size=4)


@pytest.fixture(scope="module")
def scene_images():
    truth = scenes.sample_scenes(6, seed=4)
    rng = np.random.default_rng(4)
    return [scenes.render(s, rng) for s in truth], [scenes.caption(s) for s in truth]


class _TensorFeatures(torch.nn.Module):
    """Hands torchmetrics plain feature tensors (transformers 5 returns output objects it cannot read)."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.config = model.config

    def get_image_features(self, *args, **kwargs):
        return self.model.get_image_features(*args, **kwargs).pooler_output

    def get_text_features(self, *args, **kwargs):
        return self.model.get_text_features(*args, **kwargs).pooler_output


def test_score_matches_torchmetrics_definition(scorer, scene_images):
    from torchmetrics.functional.multimodal import clip_score

    images, prompts = scene_images
    ours = scorer.score(images, prompts)
    model = _TensorFeatures(scorer.model)
    for image, prompt, score in zip(images, prompts, ours.scores, strict=True):
        pixels = torch.from_numpy(np.array(image)).permute(2, 0, 1)
        reference = clip_score(pixels, prompt, model_name_or_path=lambda: (model, scorer.processor))
        assert score == pytest.approx(float(reference), abs=1e-3)
    assert ours.clip_model == "toyworld/clip"


def test_batches_change_nothing_and_prompts_are_embedded_once(scene_images):
    images, prompts = scene_images
    batched = CLIPScorer("toyworld/clip", batch_size=4).score(images, prompts).scores
    single = CLIPScorer("toyworld/clip", batch_size=1)
    one_by_one = [single.score([i], [p]).scores[0] for i, p in zip(images, prompts, strict=True)]
    assert batched == pytest.approx(one_by_one, abs=1e-4)
    single.score(images, prompts)  # again: no new text embeddings
    assert len(single._text_cache) == len(set(prompts))


def test_the_right_caption_scores_higher(scorer, scene_images):
    images, prompts = scene_images
    right = scorer.score(images, prompts).scores
    wrong = scorer.score(images, prompts[1:] + prompts[:1]).scores
    assert np.mean(right) > np.mean(wrong) + 5


def test_long_prompts_are_flagged(scorer, scene_images):
    images, _ = scene_images
    result = scorer.score(images[:2], ["a red circle", "red " * 100])
    assert result.truncated == [False, True]


class _ChattyTokenizer:
    """The CLIP's tokenizer, warning as transformers does unless asked for ``verbose=False``: the truncation
    log line and the max_length warning some versions print for every batch."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    def __getattr__(self, name):
        return getattr(self.tokenizer, name)

    def __call__(self, *args, **kwargs):
        import logging
        import warnings

        if kwargs.get("verbose", True):
            logging.getLogger("transformers.tokenization_utils_base").warning(
                "Token indices sequence length is longer than the specified maximum sequence length for this model"
            )
            warnings.warn("`max_length` is ignored when `padding`=`True` and there is no truncation", stacklevel=2)
        return self.tokenizer(*args, **kwargs)


def test_long_prompts_are_scored_quietly_and_flagged(scene_images, caplog, monkeypatch):
    import warnings

    images, _ = scene_images
    quiet = CLIPScorer("toyworld/clip", batch_size=1)
    for processor in (quiet.processor, None):  # the real tokenizer, then one that warns unless told not to
        if processor is None:
            quiet._text_cache.clear()
            monkeypatch.setattr(quiet.processor, "tokenizer", _ChattyTokenizer(quiet.processor.tokenizer))
        caplog.clear()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = quiet.score(images[:3], ["a red circle", "red " * 100, "blue " * 100])
        assert result.truncated == [False, True, True]
        assert not caught, [str(w.message) for w in caught]
        assert not [r for r in caplog.records if r.levelname == "WARNING"], caplog.text


def test_mismatched_lengths_are_refused(scorer, scene_images):
    with pytest.raises(ConfigError, match="one prompt per image"):
        scorer.score(scene_images[0][:2], ["a"])


def test_fidelity(scorer):
    rng = np.random.default_rng(0)
    base = Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8))
    same = fidelity(base, base.copy(), scorer)
    assert same["psnr"] == float("inf") and same["ssim"] == pytest.approx(1.0)
    assert same["clip_cosine"] == pytest.approx(1.0, abs=1e-5)
    noisy = np.clip(np.asarray(base, dtype=int) + rng.integers(-20, 21, (32, 32, 3)), 0, 255).astype(np.uint8)
    changed = fidelity(base, Image.fromarray(noisy))
    assert 20 < changed["psnr"] < 40 and changed["ssim"] < 0.99 and "clip_cosine" not in changed
    with pytest.raises(ConfigError, match="same size"):
        fidelity(base, base.resize((16, 16)))
