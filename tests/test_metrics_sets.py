import math
import socket
import warnings

import numpy as np
import pytest
import scipy.linalg
import torch
from PIL import Image

from workbench.errors import ConfigError
from workbench.metrics import sets as set_metrics
from workbench.metrics.sets import (
    CMMD_SCALE,
    CMMD_SIGMA,
    INCEPTION_WEIGHTS_URL,
    CLIPFeatures,
    InceptionFeatures,
    bias_note,
    cmmd,
    feature_extractor,
    fid,
    kid,
    set_metric,
)
from workbench.toyworld import scenes

N = 96
METRICS = ("fid", "kid", "cmmd")


def _images(n, seed, colour=None):
    rng = np.random.default_rng(seed)
    drawn = scenes.sample_scenes(n, seed)
    if colour is not None:
        drawn = [scenes.Scene(**{**scene.attributes(), "colour": colour}) for scene in drawn]
    return [scenes.render(scene, rng) for scene in drawn]


def _shuffled(images, seed):
    rng = np.random.default_rng(seed)
    out = []
    for image in images:
        pixels = np.asarray(image).reshape(-1, 3).copy()
        rng.shuffle(pixels)
        out.append(Image.fromarray(pixels.reshape(image.size[1], image.size[0], 3)))
    return out


@pytest.fixture(scope="module")
def clip():
    return CLIPFeatures("toyworld/clip")


@pytest.fixture(scope="module")
def features(clip):
    """CLIP features of toy-world scenes: a set, a disjoint draw of the same world, one colour only, and
    the set's images with their pixels shuffled."""
    return {
        "set": clip(_images(N, 0)),
        "same_world": clip(_images(N, 1)),
        "red_only": clip(_images(N, 2, colour="red")),
        "shuffled": clip(_shuffled(_images(N, 3), seed=4)),
    }


def _kernel_means(x, kernel):
    k = kernel(x, x)
    n = len(x)
    return float(k.diagonal().mean()), float((k.sum() - k.diagonal().sum()) / (n * (n - 1)))


def test_a_set_against_itself_is_zero_up_to_the_unbiased_estimators_known_offset(features):
    x = features["set"]
    assert fid(x, x) == pytest.approx(0.0, abs=1e-6)  # same means and covariances: 0 up to rounding
    # Against itself the pairs are not independent, and the unbiased MMD² is exactly
    # -2/n (mean k(x_i, x_i) - mean k(x_i, x_j), i != j): O(1/n), negative, and at most 2/n (max k - min k).
    rbf = lambda a, b: CMMD_SCALE * torch.exp(-torch.cdist(a, b).square() / (2 * CMMD_SIGMA**2))
    poly = lambda a, b: (a @ b.T / a.shape[1] + 1) ** 3
    for metric, kernel in ((cmmd, rbf), (kid, poly)):
        diagonal, off_diagonal = _kernel_means(x, kernel)
        assert metric(x, x) == pytest.approx(-2 / N * (diagonal - off_diagonal), rel=1e-9)
    assert abs(cmmd(x, x)) <= 2 / N * CMMD_SCALE * (1 - math.exp(-4 / (2 * CMMD_SIGMA**2)))  # unit vectors


def test_same_world_is_small_and_other_images_clearly_larger(features):
    # FID's small-sample bias (64 features from 96 images) keeps a same-world value well above 0;
    # the unbiased KID and CMMD put it under a tenth of the one-colour set's.
    share = {"fid": 0.5, "kid": 0.1, "cmmd": 0.1}
    for name in METRICS:
        results = {key: set_metric(name, features[key], features["set"], seed=1) for key in features}
        same, red, shuffled = results["same_world"], results["red_only"], results["shuffled"]
        assert same["value"] < share[name] * red["value"], name
        assert red["ci_low"] > same["ci_high"], name  # the intervals do not overlap
        assert shuffled["value"] > red["value"], name
        if name != "fid":  # unbiased: a draw of the same world is 0 within its interval
            assert same["ci_low"] < 0 < same["ci_high"], name


def test_cmmd_is_the_unbiased_mmd2_times_1000_by_hand():
    x = torch.tensor([[0.0, 0.0], [3.0, 4.0]])
    y = torch.tensor([[0.0, 0.0], [6.0, 8.0]])
    # k = exp(-d²/200): k(x1, x2) = e^-0.125, k(y1, y2) = e^-0.5; cross terms 1, e^-0.5, e^-0.125, e^-0.125.
    unbiased = math.exp(-0.125) + math.exp(-0.5) - 2 * (1 + math.exp(-0.5) + 2 * math.exp(-0.125)) / 4
    assert cmmd(x, y) == pytest.approx(1000 * unbiased) == pytest.approx(500 * (math.exp(-0.5) - 1))
    biased = (1 - math.exp(-0.125)) / 2  # the authors' code's estimate (diagonals included), for contrast
    assert cmmd(x, y) != pytest.approx(1000 * biased)
    # ... larger by 1000 ((1 - k_x) / m + (1 - k_y) / n), as the module docstring says
    offset = (1 - math.exp(-0.125)) / 2 + (1 - math.exp(-0.5)) / 2
    assert 1000 * biased - cmmd(x, y) == pytest.approx(1000 * offset)

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(3, 4)), rng.normal(size=(5, 4))  # unequal sizes

    def k(u, v):
        return math.exp(-float(np.sum((u - v) ** 2)) / (2 * 10.0**2))

    within_a = sum(k(a[i], a[j]) for i in range(3) for j in range(3) if i != j) / (3 * 2)
    within_b = sum(k(b[i], b[j]) for i in range(5) for j in range(5) if i != j) / (5 * 4)
    cross = sum(k(a[i], b[j]) for i in range(3) for j in range(5)) / 15
    assert cmmd(torch.tensor(a), torch.tensor(b)) == pytest.approx(1000 * (within_a + within_b - 2 * cross), rel=1e-9)


def test_fid_and_kid_agree_with_torchmetrics_and_the_formula():
    from torchmetrics.image.kid import KernelInceptionDistance

    rng = np.random.default_rng(1)
    x = torch.tensor(rng.normal(size=(40, 6)))
    y = torch.tensor(rng.normal(0.5, 1.2, size=(40, 6)))
    cov_x, cov_y = np.cov(x.numpy(), rowvar=False), np.cov(y.numpy(), rowvar=False)
    by_formula = np.sum((x.numpy().mean(0) - y.numpy().mean(0)) ** 2) + np.trace(
        cov_x + cov_y - 2 * scipy.linalg.sqrtm(cov_x @ cov_y).real
    )
    assert fid(x, y) == pytest.approx(by_formula, rel=1e-6)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "KID will save all extracted features"
        reference = KernelInceptionDistance(feature=set_metrics._Given(6), subsets=1, subset_size=40)
    reference.update(y, real=True)
    reference.update(x, real=False)
    assert kid(x, y) == pytest.approx(float(reference.compute()[0]), rel=1e-9)
    # Unequal sizes: the mean over subsets of min(subset_size, n, n_reference) images, seeded.
    assert kid(x[:30], y, seed=3) == kid(x[:30], y, seed=3) != kid(x[:30], y, seed=4)


def test_intervals_bracket_the_value_and_come_from_halves_without_repeats(features, monkeypatch):
    seen = []
    original = set_metrics._COMPUTE["cmmd"]

    def recording(x, y):
        seen.append((x, y))
        return original(x, y)

    monkeypatch.setitem(set_metrics._COMPUTE, "cmmd", recording)
    x, y = features["same_world"][:41], features["set"]
    result = set_metric("cmmd", x, y, subsets=20, seed=5)
    assert result["ci_low"] < result["value"] < result["ci_high"]
    assert (result["n"], result["n_reference"], result["subset_sizes"]) == (41, N, [20, N // 2])
    assert len(seen) == 1 + 20 and seen[0][0] is not None
    for half_x, half_y in seen[1:]:  # every row distinct: no image twice in a subset
        assert len(half_x) == 20 and len(torch.unique(half_x, dim=0)) == 20
        assert len(half_y) == N // 2 and len(torch.unique(half_y, dim=0)) == N // 2
    again = set_metric("cmmd", x, y, subsets=20, seed=5)
    assert again["ci_low"] == result["ci_low"]  # seeded
    wider = set_metric("cmmd", x, y, subsets=20, seed=5, level=0.99)
    assert wider["ci_high"] - wider["ci_low"] > result["ci_high"] - result["ci_low"]
    bare = set_metric("cmmd", x[:2], y[:3], subsets=0)
    assert bare["ci_low"] is None and bare["subset_sizes"] is None and bare["n"] == 2


def test_images_are_featurised_by_the_default_clip():
    images, reference = _images(8, 10), _images(8, 11)
    result = set_metric("cmmd", images, reference, subsets=4)
    assert result["features"] == "clip:toyworld/clip"
    clip = CLIPFeatures()
    assert result["value"] == pytest.approx(cmmd(clip(images), clip(reference)), abs=1e-9)
    assert set(result) == {
        "metric", "value", "ci_low", "ci_high", "level", "n", "n_reference", "subsets", "subset_sizes",
        "estimator", "bias", "features", "lower_is_better",
    }  # fmt: skip
    assert feature_extractor(clip) is clip


def test_the_registry_alone_describes_the_set_metrics():
    from workbench.metrics import METRICS as REGISTRY

    set_names = {n for n, m in REGISTRY.items() if m.kind == "set"}
    assert set(METRICS) == set_names
    for name in set_names:
        assert not REGISTRY[name].higher_is_better and REGISTRY[name].estimator
        assert bias_note(name) == REGISTRY[name].bias
    assert "biased upward" in bias_note("fid")
    assert bias_note("kid").startswith("unbiased") and bias_note("cmmd").startswith("unbiased")
    assert "x 1000" in REGISTRY["cmmd"].estimator
    with pytest.raises(ConfigError, match=r"unknown set metric 'clip_score'; known: fid, kid, cmmd"):
        bias_note("clip_score")


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_inception_without_weights_refuses_naming_the_download(tmp_path, monkeypatch, no_network):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    expected = tmp_path / "hub" / "checkpoints" / INCEPTION_WEIGHTS_URL.rpartition("/")[2]
    with pytest.raises(ConfigError, match="nothing is downloaded") as error:
        InceptionFeatures()
    assert str(expected) in str(error.value) and INCEPTION_WEIGHTS_URL in str(error.value)
    assert error.value.field == "extractor"
    with pytest.raises(ConfigError, match=r"missing\.pth"):
        feature_extractor(f"inception:{tmp_path / 'missing.pth'}")
    with pytest.raises(ConfigError, match=INCEPTION_WEIGHTS_URL):
        set_metric("fid", _images(4, 0), _images(4, 1), extractor="inception")


def test_inception_without_torch_fidelity_refuses_naming_it(tmp_path, no_network):
    from torchmetrics.utilities.imports import _TORCH_FIDELITY_AVAILABLE

    if _TORCH_FIDELITY_AVAILABLE:
        pytest.skip("torch-fidelity is installed")
    weights = tmp_path / "weights.pth"
    weights.write_bytes(b"")
    with pytest.raises(ConfigError, match="pip install torch-fidelity") as error:
        InceptionFeatures(weights)
    assert str(weights) not in str(error.value)


def test_cmmd_refuses_inception_features():
    inception = object.__new__(InceptionFeatures)  # as if its weights were on disk: never called here
    with pytest.raises(ConfigError, match="cmmd needs CLIP image embeddings, got Inception features"):
        set_metric("cmmd", _images(4, 0), _images(4, 1), extractor=inception)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda x: set_metric("fld", x, x), r"unknown set metric 'fld'; known: fid, kid, cmmd"),
        (lambda x: set_metric("fid", x[:3], x), r"at least 4 images, got 3"),
        (lambda x: set_metric("kid", x, x[:1], subsets=0), r"at least 2 reference, got 1"),
        (lambda x: set_metric("cmmd", x, x[:, :32]), r"got 64 for the images and 32 for the reference"),
        (lambda x: set_metric("fid", x[None], x), r"2-D \(images, features\) array, got shape \(1, 12, 64\)"),
        (lambda x: set_metric("fid", x * float("nan"), x), r"images features contain NaN"),
        (lambda x: set_metric("fid", ["a.png"], x), r"PIL images .* got items of type str"),
        (lambda x: set_metric("fid", x, x, subsets=1), r"subsets must be 0 \(no interval\) or an integer >= 2, got 1"),
        (lambda x: set_metric("fid", x, x, level=95), r"level must be between 0 and 1, got 95"),
        (lambda x: set_metric("fid", [], x), r"at least 4 images, got 0"),
        (lambda x: feature_extractor(""), r"extractor must be a CLIP id .* got ''"),
        (lambda x: kid(x, x, subset_size=1), r"subset_size >= 2, got 100 and 1"),
    ],
)
def test_bad_input_is_refused_naming_the_value(call, message):
    x = torch.nn.functional.normalize(torch.randn(12, 64, generator=torch.Generator().manual_seed(0)), dim=-1)
    with pytest.raises(ConfigError, match=message):
        call(x)
