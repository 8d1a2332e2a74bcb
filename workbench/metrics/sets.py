"""Per-set image metrics: how realistic a set of images is against a reference set. All three are lower
is better and need a feature extractor and a reference set.

``fid``   Fréchet distance between Gaussians fitted to the two sets' features (torchmetrics'
          FrechetInceptionDistance, fed our features). Biased upward at small n.
``kid``   unbiased MMD² with the cubic polynomial kernel ``(x·y / d + 1)³`` (torchmetrics' ``poly_mmd``),
          averaged over random equal-size subsets of at most ``subset_size`` images (Bińkowski et al. 2018).
``cmmd``  unbiased MMD² with the Gaussian RBF kernel ``exp(-|x - y|² / 2σ²)``, σ = 10, on unit-length CLIP
          image embeddings, reported × 1000 (Jayasumana et al. 2024, "Rethinking FID"). The paper defines
          the unbiased estimator; the authors' code reports the biased one (× 1000), larger by exactly
          ``1000 ((1 - k̄_x) / m + (1 - k̄_y) / n)`` (k̄ a set's mean kernel value over pairs of distinct
          images), so compare only values of one estimator.

Features come from a FeatureExtractor: CLIPFeatures (the default: the toy world's CLIP, offline; or any CLIP
checkpoint id or folder CLIPScorer loads) or InceptionFeatures (FID's Inception, only where torch-fidelity
and its weights file are on disk: nothing is ever downloaded here).

Intervals (``set_metric``) come from subsets drawn without replacement, never a bootstrap, which repeats
images and biases FID and KID: ``subsets`` times, half of each set is drawn at random (images distinct
within a subset) and the metric computed on the halves; the delete-d jackknife (Shao & Wu 1989) turns
their spread into the variance of the full-set value, ``var = r / d * var(half values)`` with ``r`` images
kept and ``d`` left out of ``n`` (1 for halves), and the interval is ``value ± z * sqrt(var)`` (normal, not
clipped at 0). A shift of the half values, such as FID's small-sample bias, does not move the interval.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from statistics import NormalDist
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pandas as pd
import torch
from PIL import Image

from workbench.errors import ConfigError
from workbench.metrics.clip import DEFAULT_CLIP, CLIPScorer
from workbench.metrics.registry import METRICS, Metric, MetricOptions, set_metric_names

__all__ = [
    "CMMD_SCALE",
    "CMMD_SIGMA",
    "INCEPTION_WEIGHTS_URL",
    "CLIPFeatures",
    "FeatureExtractor",
    "InceptionFeatures",
    "bias_note",
    "cmmd",
    "feature_extractor",
    "features_of",
    "fid",
    "kid",
    "row_features",
    "set_metric",
    "set_metric_notes",
    "set_metric_value",
    "set_metrics_by_model",
]

CMMD_SIGMA = 10.0
CMMD_SCALE = 1000.0
INCEPTION_WEIGHTS_URL = (
    "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth"
)


def _set_metric(name: str) -> Metric:
    """The registry's entry of the per-set metric ``name`` (its description, estimator and bias are there)."""
    if name not in METRICS or METRICS[name].kind != "set":
        known = [n for n, m in METRICS.items() if m.kind == "set"]
        raise ConfigError(f"unknown set metric {name!r}; known: {', '.join(known)}", field="name")
    return METRICS[name]


def bias_note(name: str) -> str:
    """How the metric's estimate behaves at small sample sizes."""
    return _set_metric(name).bias


@runtime_checkable
class FeatureExtractor(Protocol):
    """Turns images into an (images, features) tensor; ``name`` says which features (for reports)."""

    name: str

    def __call__(self, images: Sequence[Image.Image]) -> torch.Tensor: ...


class CLIPFeatures:
    """Unit-length projected CLIP image embeddings (what CMMD uses), from any CLIP that CLIPScorer loads."""

    def __init__(self, model_id: str = DEFAULT_CLIP, device: str | None = None, batch_size: int = 32):
        self.scorer = CLIPScorer(model_id, device=device, batch_size=batch_size)
        self.name = f"clip:{model_id}"

    def __call__(self, images: Sequence[Image.Image]) -> torch.Tensor:
        return self.scorer.image_embeddings(images).detach().cpu().double()


class InceptionFeatures:
    """FID's Inception-v3 pool features (2048), via torchmetrics and torch-fidelity, from weights on disk.

    ``weights`` is the weights file; by default torch hub's cache, where torch-fidelity keeps it. Without
    the file (or torch-fidelity) this refuses, naming what to get: it never downloads."""

    name = "inception-v3"

    def __init__(self, weights: str | Path | None = None, device: str | None = None, batch_size: int = 32):
        from torchmetrics.utilities.imports import _TORCH_FIDELITY_AVAILABLE

        from workbench.models import pick_device

        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size!r}", field="batch_size")
        default = Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_WEIGHTS_URL.rpartition("/")[2]
        path = Path(weights).expanduser() if weights is not None else default
        missing = []
        if not path.is_file():
            missing.append(f"the weights file {path} (download {INCEPTION_WEIGHTS_URL} there, or pass its path)")
        if not _TORCH_FIDELITY_AVAILABLE:
            missing.append("the torch-fidelity package (pip install torch-fidelity)")
        if missing:
            raise ConfigError(
                "Inception features need " + " and ".join(missing) + "; nothing is downloaded here. "
                "Offline, use CLIP features (the default, 'toyworld/clip').",
                field="extractor",
            )
        from torchmetrics.image.fid import NoTrainInceptionV3

        self.device = pick_device(device)
        self.batch_size = batch_size
        self.model = NoTrainInceptionV3(
            name="inception-v3-compat", features_list=["2048"], feature_extractor_weights_path=str(path)
        ).to(self.device)

    @torch.no_grad()
    def __call__(self, images: Sequence[Image.Image]) -> torch.Tensor:
        sizes = {image.size for image in images}
        if len(sizes) > 1:
            raise ConfigError(f"Inception features need images of one size, got sizes {sorted(sizes)}")
        chunks = []
        for start in range(0, len(images), self.batch_size):
            batch = np.stack([np.asarray(image.convert("RGB")) for image in images[start : start + self.batch_size]])
            pixels = torch.from_numpy(batch).permute(0, 3, 1, 2).to(self.device)
            chunks.append(self.model(pixels).cpu().double())
        return torch.cat(chunks)


def feature_extractor(spec: str | FeatureExtractor = DEFAULT_CLIP) -> FeatureExtractor:
    """An extractor from ``spec``: ``"inception"`` or ``"inception:<weights file>"``, a CLIP id or folder,
    or an extractor (returned as is)."""
    if isinstance(spec, FeatureExtractor):
        return spec
    if not isinstance(spec, str) or not spec.strip():
        raise ConfigError(
            f"extractor must be a CLIP id or folder, 'inception', 'inception:<weights file>' or a "
            f"FeatureExtractor, got {spec!r}",
            field="extractor",
        )
    if spec == "inception" or spec.startswith("inception:"):
        return InceptionFeatures(spec.partition(":")[2] or None)
    return CLIPFeatures(spec)


def _as_features(data, which: str, extractor: Callable[[], FeatureExtractor]) -> torch.Tensor:
    """``data`` as an (images, features) float64 tensor: features given as an array, or images to extract."""
    if isinstance(data, torch.Tensor | np.ndarray):
        features = torch.as_tensor(data).detach().cpu().double()
        if features.ndim != 2:
            raise ConfigError(
                f"{which} features must be a 2-D (images, features) array, got shape {tuple(features.shape)}",
                field=which,
            )
    else:
        images = list(data)
        bad = [type(item).__name__ for item in images if not isinstance(item, Image.Image)]
        if bad:
            raise ConfigError(
                f"{which} must be PIL images or an (images, features) array, got items of type {bad[0]}", field=which
            )
        features = extractor()(images).detach().cpu().double() if images else torch.empty(0, 0)
    if not torch.isfinite(features).all():
        raise ConfigError(f"{which} features contain NaN or infinite values", field=which)
    return features


def _check_pair(x: torch.Tensor, y: torch.Tensor, minimum: int, name: str) -> None:
    if x.ndim != 2 or y.ndim != 2:
        raise ConfigError(f"{name} needs 2-D feature arrays, got shapes {tuple(x.shape)} and {tuple(y.shape)}")
    for which, count in (("images", len(x)), ("reference", len(y))):
        if count < minimum:
            raise ConfigError(f"{name} needs at least {minimum} {which}, got {count}", field=which)
    if x.shape[1] != y.shape[1]:
        raise ConfigError(
            f"{name} needs features of one size, got {x.shape[1]} for the images and {y.shape[1]} for the "
            "reference (use one extractor for both)",
            field="reference",
        )


class _Given(torch.nn.Module):
    """The identity, as torchmetrics' feature network: the features are computed before."""

    def __init__(self, num_features: int):
        super().__init__()
        self.num_features = num_features

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features


def fid(x: torch.Tensor, y: torch.Tensor) -> float:
    """FID between two (images, features) sets, torchmetrics' computation (float64)."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    x, y = torch.as_tensor(x).double(), torch.as_tensor(y).double()
    _check_pair(x, y, 2, "fid")
    metric = FrechetInceptionDistance(feature=_Given(x.shape[1]))
    metric.update(y, real=True)
    metric.update(x, real=False)
    return float(metric.compute())


def kid(x: torch.Tensor, y: torch.Tensor, *, subsets: int = 100, subset_size: int = 1000, seed: int = 0) -> float:
    """KID between two (images, features) sets: torchmetrics' unbiased polynomial-kernel MMD², averaged over
    ``subsets`` random pairs of subsets of ``min(subset_size, len(x), len(y))`` distinct images (computed
    once when that is both whole sets)."""
    from torchmetrics.image.kid import poly_mmd

    x, y = torch.as_tensor(x).double(), torch.as_tensor(y).double()
    _check_pair(x, y, 2, "kid")
    if subsets < 1 or subset_size < 2:
        raise ConfigError(f"kid needs subsets >= 1 and subset_size >= 2, got {subsets} and {subset_size}")
    m = min(subset_size, len(x), len(y))
    if m == len(x) == len(y):
        return float(poly_mmd(x, y))
    rng = np.random.default_rng(seed)
    values = [poly_mmd(x[rng.permutation(len(x))[:m]], y[rng.permutation(len(y))[:m]]) for _ in range(subsets)]
    return float(torch.stack(values).mean())


def cmmd(x: torch.Tensor, y: torch.Tensor) -> float:
    """CMMD between two sets of unit-length CLIP embeddings: the unbiased MMD² estimator ::

        sum_{i != j} k(x_i, x_j) / m(m-1) + sum_{i != j} k(y_i, y_j) / n(n-1) - 2 sum_{i,j} k(x_i, y_j) / mn

    with ``k(a, b) = exp(-|a - b|² / 2σ²)``, σ = CMMD_SIGMA, times CMMD_SCALE (1000)."""
    x, y = torch.as_tensor(x).double(), torch.as_tensor(y).double()
    _check_pair(x, y, 2, "cmmd")
    gamma = 1.0 / (2 * CMMD_SIGMA**2)

    def kernel(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.exp(-gamma * torch.cdist(a, b).square())

    m, n = len(x), len(y)
    k_xx, k_yy = kernel(x, x), kernel(y, y)
    within_x = (k_xx.sum() - k_xx.diagonal().sum()) / (m * (m - 1))
    within_y = (k_yy.sum() - k_yy.diagonal().sum()) / (n * (n - 1))
    return float(CMMD_SCALE * (within_x + within_y - 2 * kernel(x, y).mean()))


_COMPUTE = {"fid": fid, "kid": kid, "cmmd": cmmd}


def set_metric_value(name: str, x: torch.Tensor, y: torch.Tensor) -> float:
    """``name`` ("fid", "kid" or "cmmd") of the features ``x`` against ``y``, without an interval."""
    return _COMPUTE[_set_metric(name).name](x, y)


def set_metric(
    name: str,
    images,
    reference,
    *,
    extractor: str | FeatureExtractor | None = None,
    subsets: int = 50,
    level: float = 0.95,
    seed: int = 0,
    paired: bool = False,
) -> dict:
    """``name`` ("fid", "kid" or "cmmd") of ``images`` against ``reference``, with an interval.

    Each of ``images`` and ``reference`` is a sequence of PIL images (featurised by ``extractor``: default
    the toy world's CLIP) or an (images, features) array from one extractor. The interval is the
    half-sampling jackknife of the module docstring over ``subsets`` draws (``subsets=0``: none), at
    ``level``; ``paired``: the i-th reference image belongs to the i-th image (its ground truth), and each
    half keeps the pairs together. Returns ``metric``, ``value``, ``ci_low``, ``ci_high``, ``level``, ``n``,
    ``n_reference``, ``subsets``, ``subset_sizes``, ``estimator``, ``bias``, ``features`` and
    ``lower_is_better``."""
    spec = _set_metric(name)
    if not isinstance(subsets, int) or subsets < 0 or subsets == 1:
        raise ConfigError(f"subsets must be 0 (no interval) or an integer >= 2, got {subsets!r}", field="subsets")
    if not 0 < level < 1:
        raise ConfigError(f"level must be between 0 and 1, got {level!r}", field="level")
    chosen: list[FeatureExtractor] = []

    def get_extractor() -> FeatureExtractor:
        if not chosen:
            chosen.append(feature_extractor(DEFAULT_CLIP if extractor is None else extractor))
            if name == "cmmd" and isinstance(chosen[0], InceptionFeatures):
                raise ConfigError("cmmd needs CLIP image embeddings, got Inception features", field="extractor")
        return chosen[0]

    x = _as_features(images, "images", get_extractor)
    y = _as_features(reference, "reference", get_extractor)
    _check_pair(x, y, 4 if subsets else 2, name)
    if paired and len(x) != len(y):
        raise ConfigError(
            f"paired sets need as many reference images as images, got {len(y)} and {len(x)}", "reference"
        )
    compute = _COMPUTE[name]
    value = compute(x, y)
    result = {
        "metric": name,
        "value": value,
        "ci_low": None,
        "ci_high": None,
        "level": level,
        "n": len(x),
        "n_reference": len(y),
        "subsets": subsets,
        "subset_sizes": None,
        "estimator": spec.estimator,
        "bias": spec.bias,
        "features": chosen[0].name if chosen else "given",
        "lower_is_better": True,
    }
    if subsets:
        rng = np.random.default_rng(seed)
        kept_x, kept_y = len(x) // 2, len(y) // 2
        halves = []
        for _ in range(subsets):
            keep_x = rng.choice(len(x), kept_x, replace=False)
            keep_y = keep_x if paired else rng.choice(len(y), kept_y, replace=False)
            halves.append(compute(x[keep_x], y[keep_y]))
        kept = (kept_x / len(x) + kept_y / len(y)) / 2
        half_width = NormalDist().inv_cdf((1 + level) / 2) * float(np.sqrt(kept / (1 - kept) * np.var(halves, ddof=1)))
        result.update(ci_low=value - half_width, ci_high=value + half_width, subset_sizes=[kept_x, kept_y])
    return result


def set_metrics_by_model(
    rows: pd.DataFrame,
    images_root: str | Path,
    names: Sequence[str],
    options: MetricOptions | None = None,
    *,
    seed: int = 0,
) -> pd.DataFrame:
    """Each per-set metric among ``names`` for each model of ``rows`` (its images with status ok, read from
    ``images_root``/image_path) against the reference set: ``options.reference_images`` (a folder, the same
    for every model) or, for toy world prompts, the ground truth of the model's own prompts and seeds.
    Columns per metric: ``<name>``, ``<name>_ci_low``, ``<name>_ci_high``, ``<name>_n``, and ``<name>_note``
    where a model could not be measured (too few images). Features are extracted once per image."""
    from workbench.metrics.reference import folder_images

    options = options or MetricOptions()
    names = set_metric_names(names)
    ok = rows[(rows["status"] == "ok") & rows["image_path"].notna()] if len(rows) else rows
    if not names or ok.empty:
        return pd.DataFrame({"model_id": list(dict.fromkeys(rows.get("model_id", [])))})
    truth = options.reference_images is None  # then each row's reference is its own ground truth
    reference = None if truth else folder_images(options.reference_images)
    features = {}
    for spec in dict.fromkeys(features_of(name, options) for name in names):
        extract = feature_extractor(spec)
        x, y = row_features(ok, images_root, extract, truth=truth)
        features[spec] = (x, y if truth else extract(reference).double())
    out = []
    for model_id in dict.fromkeys(ok["model_id"]):
        mine = torch.from_numpy(np.flatnonzero(ok["model_id"].to_numpy() == model_id))
        row: dict[str, Any] = {"model_id": model_id}
        for name in names:
            x, y = features[features_of(name, options)]
            try:
                value = set_metric(
                    name, x[mine], y[mine] if truth else y, subsets=options.subsets, seed=seed, paired=truth
                )
            except ConfigError as error:
                row |= {name: float("nan"), f"{name}_n": len(mine), f"{name}_note": str(error)}
                continue
            row |= {
                name: value["value"], f"{name}_ci_low": value["ci_low"], f"{name}_ci_high": value["ci_high"],
                f"{name}_n": value["n"],
            }  # fmt: skip
        out.append(row)
    return pd.DataFrame(out)


def row_features(
    rows: pd.DataFrame, images_root: str | Path, extract: FeatureExtractor, *, truth: bool = True
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Features of each row's image (read from ``images_root``/image_path) and, with ``truth``, of each row's
    toy world ground truth (its prompt and seed), row for row; features of one image are extracted once."""
    from workbench.metrics.reference import ground_truth_image

    x = extract([_open(Path(images_root) / path) for path in rows["image_path"]]).double()
    if not truth:
        return x, None
    units = list(zip(rows["prompt"], rows["seed"].astype(int), strict=True))
    index = {unit: i for i, unit in enumerate(dict.fromkeys(units))}
    y = extract([ground_truth_image(prompt, seed) for prompt, seed in index]).double()
    return x, y[[index[unit] for unit in units]]


def set_metric_notes(names: Sequence[str], options: MetricOptions | None = None) -> dict[str, dict[str, Any]]:
    """What each per-set metric among ``names`` reports, for a summary: estimator, small-sample bias,
    features, reference set and interval."""
    options = options or MetricOptions()
    return {
        name: {
            "estimator": METRICS[name].estimator,
            "bias": METRICS[name].bias,
            "features": features_of(name, options),
            "reference": options.reference_images or "the toy world's ground truth for the same prompts and seeds",
            "interval": f"95% half-sampling jackknife over {options.subsets} subsets drawn without replacement"
            + ("; each image kept with its ground truth" if options.reference_images is None else ""),
        }
        for name in set_metric_names(names)
    }


def features_of(name: str, options: MetricOptions) -> str:
    """The extractor a per-set metric uses: the checkpoint its registry entry names (CMMD the CLIP, FID and KID
    ``options.features``)."""
    return getattr(options, _set_metric(name).weights)


def _open(path: Path) -> Image.Image:
    if not path.is_file():
        raise ConfigError(f"the image {path} of a result row is missing", "images_root")
    with Image.open(path) as image:
        return image.convert("RGB")
