"""The metric registry: every quality metric by name, what it needs, which way is better, and how to build it.

Two kinds. A per-image metric scores one image against its prompt (its value is a column of the rows); its
``ImageScorer`` fills the columns of one or more metrics at once (the composition judge fills
``composition`` and ``composition_all``). A per-set metric compares a model's set of images with a
reference set (its value, with an interval, goes into the summary: ``workbench.metrics.sets``).

Scorers are built from names and plain-data ``MetricOptions``, so a worker process can build its own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, runtime_checkable

from PIL import Image

from workbench.errors import ConfigError
from workbench.metrics.clip import DEFAULT_CLIP
from workbench.metrics.geneval import GENEVAL_CLIP, GENEVAL_DETECTOR

__all__ = [
    "BUILT_IN",
    "METRICS",
    "ImageScorer",
    "Metric",
    "MetricOptions",
    "check_metrics",
    "image_metric_names",
    "image_scorers",
    "metric",
    "metric_bounds",
    "rebuildable",
    "register_metric",
    "scorer_options",
    "set_metric_names",
]

NEEDS_REFERENCE = "a reference set: reference_images (a folder of images), or prompts with a known answer (toy world)"
NEEDS_TRUTH = "prompts with a known answer (toy world prompts); other prompts get no value and a reason"


@dataclass(frozen=True)
class MetricOptions:
    """Which weights and reference the metrics use (plain data: workers build their scorers from it).

    ``clip_model`` scores ``clip_score`` and embeds images for ``cmmd``; ``preference_model`` is the
    PickScore checkpoint (offline: the toy CLIP, where PickScore is a rescaled CLIP score);
    ``preference_processor`` its image/text processor when the checkpoint has none (PickScore_v1 uses
    laion/CLIP-ViT-H-14-laion2B-s32B-b79K's); ``features`` the extractor of ``fid`` and ``kid`` (a CLIP id
    or folder, or "inception[:weights file]"); ``reference_images`` a folder of reference images (None: for
    toy world prompts, the scene renderer's own images of the same prompts and seeds); ``subsets`` the
    half-samples behind a per-set metric's interval; ``geneval_detector`` and ``geneval_clip`` the Mask2Former
    (COCO instance) and CLIP of ``geneval``."""

    clip_model: str = DEFAULT_CLIP
    preference_model: str = DEFAULT_CLIP
    preference_processor: str | None = None
    features: str = DEFAULT_CLIP
    reference_images: str | None = None
    subsets: int = 50
    geneval_detector: str = GENEVAL_DETECTOR
    geneval_clip: str = GENEVAL_CLIP


@runtime_checkable
class ImageScorer(Protocol):
    """Scores images against their prompts: ``metrics`` are the metric columns it fills; ``score_columns``
    returns those and any companion columns (the checkpoint's id, why an image has no value), one value
    per image, None where an image cannot be scored."""

    metrics: tuple[str, ...]

    def score_columns(self, images: Sequence[Image.Image], prompts: Sequence[str]) -> dict[str, list[Any]]: ...


@dataclass(frozen=True)
class Metric:
    """A registered metric. ``kind`` is "image" (a value per image) or "set" (a value per set of images);
    ``build`` makes an image metric's scorer from ``(MetricOptions, device)``; metrics with the same
    ``scorer`` name share one scorer. Its provenance (``workbench.metrics.provenance``): ``version``, bumped
    whenever its values change for the same images; ``weights``, the ``MetricOptions`` field naming its
    checkpoint (None: no weights); ``preprocessing``, what is done to images and prompts before scoring. A
    per-set metric also says how it is estimated (``estimator``) and how that behaves at small n (``bias``).
    ``bounds``: the range (low, high) of a per-image metric whose every value lies in it and whose changes
    can span it (a share: composition), so that paired differences get ``stats.bounded_ci``; None where no
    such range is known (a CLIP score's formal 0 to 100 is far wider than any change seen, and would bound
    nothing)."""

    name: str
    kind: str
    description: str
    higher_is_better: bool
    needs: tuple[str, ...]
    scorer: str | None = None
    build: Callable[[MetricOptions, str | None], ImageScorer] | None = field(default=None, compare=False)
    unit: str | None = None
    note: Callable[[MetricOptions], str | None] | None = field(default=None, compare=False)
    version: str = "1"
    weights: str | None = None
    preprocessing: str | None = None
    estimator: str | None = None
    bias: str | None = None
    bounds: tuple[float, float] | None = None

    def note_for(self, options: MetricOptions) -> str | None:
        """What a reader of the report should know about this metric with ``options`` (an offline stand-in)."""
        return self.note(options) if self.note is not None else None


def _clip(options: MetricOptions, device: str | None) -> ImageScorer:
    from workbench.metrics.clip import CLIPScorer

    return CLIPScorer(options.clip_model, device=device)


def _composition(options: MetricOptions, device: str | None) -> ImageScorer:
    from workbench.metrics.composition import CompositionScorer

    return CompositionScorer()


def _geneval(options: MetricOptions, device: str | None) -> ImageScorer:
    from workbench.metrics.geneval_detectors import geneval_scorer

    return geneval_scorer(options.geneval_detector, options.geneval_clip, device)


def _geneval_note(options: MetricOptions) -> str:
    if options.geneval_detector == "toyworld":
        return "the toy world's detector (objects from the pixels) and palette colours, on toy GenEval prompts"
    return (
        f"objects by transformers' Mask2Former ({options.geneval_detector}), not mmdet's, colours by "
        f"{options.geneval_clip}: scores may differ from the paper's (by how much is not measured here)"
    )


def _pickscore(options: MetricOptions, device: str | None) -> ImageScorer:
    from workbench.metrics.preference import PickScorer

    return PickScorer(options.preference_model, device=device, processor_id=options.preference_processor)


def _pickscore_note(options: MetricOptions) -> str | None:
    if not options.preference_model.startswith("toyworld/"):
        return None
    return (
        f"{options.preference_model} stands in for a PickScore checkpoint (offline): it was never trained on "
        "human preferences, so this is only a rescaled CLIP score (logit_scale x cosine)"
    )


METRICS: dict[str, Metric] = {}
_CLIP_PREPROCESSING = "the checkpoint's image processor (resize, centre crop); prompts cut at its text window"
_JUDGED = "the image resized to 32x32 pixels; the prompt parsed as a toy world caption"
_JUDGE_VERSION = "2"  # 1: pixel rules; 2: the learned reader, with unsure attributes
_MMD_BIAS = (
    "unbiased at any n for independent sets (slightly negative when they match); against a reference paired image "
    "for image (the toy world's ground truth of the same prompts) it tends to read below zero, by the pairs' likeness: "
    "compare values against one reference only"
)
_FEATURES_PREPROCESSING = "the extractor's own (Inception: 299x299 bilinear; CLIP: its image processor)"


def register_metric(entry: Metric) -> Metric:
    """Add (or replace) a per-image metric: it needs ``build`` and ``scorer``. A metric registered at run
    time is known to this process only: worker processes and Ray actors cannot build it (use one worker).
    The per-set metrics are fixed (``workbench.metrics.sets``)."""
    if entry.kind != "image":
        raise ConfigError(
            f"only per-image metrics can be registered, got kind {entry.kind!r}; the per-set metrics are "
            f"{', '.join(n for n, m in METRICS.items() if m.kind == 'set')}",
            "kind",
        )
    if entry.build is None or entry.scorer is None:
        raise ConfigError(f"image metric {entry.name!r} needs a scorer name and a build function", "build")
    METRICS[entry.name] = entry
    return entry


for _entry in (
    Metric(
        "clip_score", "image", "100 x max(cos(CLIP image, CLIP prompt), 0), torchmetrics' definition", True,
        ("a CLIP checkpoint (clip_model)",), "clip", _clip, "CLIP points", weights="clip_model",
        preprocessing=_CLIP_PREPROCESSING,
    ),
    Metric(
        "composition", "image",
        "GenEval-style: the share of the prompt's attributes the judge is sure of that it reads right", True,
        (NEEDS_TRUTH,), "composition", _composition, "share of attributes",
        lambda options: "judged by a small reader trained on renders only, sharing no weights with any CLIP",
        version=_JUDGE_VERSION, preprocessing=_JUDGED, bounds=(0.0, 1.0),
    ),
    Metric(
        "composition_all", "image",
        "GenEval-style: 1 when the judge reads every attribute of the prompt right (none when it is unsure of one)",
        True, (NEEDS_TRUTH,), "composition", _composition, "share of images", version=_JUDGE_VERSION,
        preprocessing=_JUDGED, bounds=(0.0, 1.0),
    ),
    Metric(
        "geneval", "image", "GenEval: 1 when the detected objects meet every clause of the prompt's GenEval metadata "
        "(objects, counts, colours, positions)", True,
        ("a Mask2Former COCO instance checkpoint (geneval_detector) and a CLIP (geneval_clip)",), "geneval",
        _geneval, "share of images",
        _geneval_note, weights="geneval_detector",
        preprocessing="the detector's and CLIP's own processors; each object over #999 outside its mask, cropped",
        bounds=(0.0, 1.0),
    ),
    Metric(
        "pickscore", "image", "PickScore: logit_scale x cos(image, prompt) of a preference-tuned CLIP", True,
        ("a PickScore checkpoint (preference_model, e.g. yuvalkirstain/PickScore_v1)",), "pickscore",
        _pickscore, "PickScore points", _pickscore_note, weights="preference_model",
        preprocessing=_CLIP_PREPROCESSING,
    ),
    Metric(
        "fid", "set", "Fréchet distance between the features of the model's images and the reference set's",
        False, (NEEDS_REFERENCE, "a feature extractor (features)"), weights="features",
        preprocessing=_FEATURES_PREPROCESSING,
        estimator="plug-in Fréchet distance of the sample means and covariances (torchmetrics)",
        bias="biased upward at small n (the covariance estimates' noise adds to it): compare only at equal n",
    ),
    Metric(
        "kid", "set", "kernel inception distance: unbiased MMD², cubic polynomial kernel, on the features", False,
        (NEEDS_REFERENCE, "a feature extractor (features)"), weights="features",
        preprocessing=_FEATURES_PREPROCESSING,
        estimator="unbiased MMD², polynomial kernel (x.y/d + 1)^3, mean over equal-size subsets (torchmetrics)",
        bias=_MMD_BIAS,
    ),
    Metric(
        "cmmd", "set", "CMMD: unbiased MMD² x 1000, Gaussian RBF kernel (sigma 10), on CLIP image embeddings",
        False, (NEEDS_REFERENCE, "a CLIP checkpoint (clip_model)"), weights="clip_model",
        preprocessing=_CLIP_PREPROCESSING,
        estimator="unbiased MMD² x 1000, Gaussian RBF kernel, sigma 10, unit-length CLIP embeddings",
        bias=_MMD_BIAS,
    ),
):  # fmt: skip
    METRICS[_entry.name] = _entry

BUILT_IN = frozenset(METRICS)  # what every process knows (workers build scorers from these names)


def metric(name: str) -> Metric:
    """The registered metric ``name``; an unknown name is refused with the known ones."""
    if not isinstance(name, str) or name not in METRICS:
        raise ConfigError(f"unknown metric {name!r}; known: {', '.join(METRICS)}", "metrics")
    return METRICS[name]


def _names(names: Sequence[str]) -> list[str]:
    if isinstance(names, str) or not isinstance(names, Sequence):
        raise ConfigError(f"metrics must be a list of metric names, got {names!r}; known: {', '.join(METRICS)}")
    for name in names:
        metric(name)
    if len(set(names)) < len(names):
        raise ConfigError(f"metrics must not repeat, got {list(names)}", "metrics")
    return list(names)


def metric_bounds(names: Iterable[str]) -> dict[str, tuple[float, float]]:
    """The ranges (``Metric.bounds``) of the registered metrics among ``names`` that have one; other names
    (unregistered columns such as latency_s) are left out."""
    return {name: METRICS[name].bounds for name in names if name in METRICS and METRICS[name].bounds is not None}


def image_metric_names(names: Sequence[str]) -> list[str]:
    """The per-image metrics among ``names`` (checked), in order."""
    return [n for n in _names(names) if METRICS[n].kind == "image"]


def set_metric_names(names: Sequence[str]) -> list[str]:
    """The per-set metrics among ``names`` (checked), in order."""
    return [n for n in _names(names) if METRICS[n].kind == "set"]


def check_metrics(
    names: Sequence[str], prompts: Sequence[str] = (), *, reference_images: str | None = None
) -> list[str]:
    """Refuse, naming what is missing, an unknown name, or a per-set metric without a reference set: with no
    ``reference_images`` folder, every prompt must have a known answer (a toy world prompt). Returns the
    names. Cheap (no weights are loaded): studies call it before their kernel starts."""
    from pathlib import Path

    from workbench.toyworld.captions import parse_prompt

    names = _names(names)
    wanted = set_metric_names(names)
    if not wanted:
        return names
    if reference_images is not None:
        from workbench.metrics.reference import IMAGE_SUFFIXES

        folder = Path(reference_images).expanduser()
        if not folder.is_dir():
            raise ConfigError(f"reference_images {reference_images!r} is not a folder of images", "reference_images")
        if not any(p.suffix.lower() in IMAGE_SUFFIXES for p in folder.iterdir()):
            raise ConfigError(
                f"reference_images {reference_images!r} holds no images ({', '.join(IMAGE_SUFFIXES)})",
                "reference_images",
            )
        return names
    reasons = [(p, parse_prompt(p).reason) for p in prompts]
    without = [(p, reason) for p, reason in reasons if reason is not None]
    if without:
        prompt, reason = without[0]
        verb = "needs" if len(wanted) == 1 else "need"
        raise ConfigError(
            f"{', '.join(wanted)} {verb} a reference set: {len(without)} of {len(prompts)} prompts have no known "
            f"answer (e.g. {prompt!r}: {reason}); give reference_images, a folder of reference images",
            "reference_images",
        )
    return names


def image_scorers(
    names: Sequence[str], options: MetricOptions | None = None, *, device: str | None = None,
    given: Sequence[ImageScorer] = (),
) -> list[ImageScorer]:  # fmt: skip
    """One scorer per scorer name the per-image metrics among ``names`` need (built from ``options`` on
    ``device``), using a ``given`` scorer instead where one fills a metric already."""
    options = options or MetricOptions()
    scorers = list(given)
    covered = {m for scorer in scorers for m in scorer.metrics}
    built: set[str] = set()
    for name in image_metric_names(names):
        entry = METRICS[name]
        if name in covered or entry.scorer in built:
            continue
        scorers.append(entry.build(options, device))
        built.add(entry.scorer)
    return scorers


def scorer_options(options: MetricOptions, scorers: Sequence[ImageScorer]) -> MetricOptions:
    """``options`` with each given scorer's checkpoint (its ``model_id``) as the weights option of the metrics it
    fills, so that workers build the same scorer and the run's provenance names the weights in use."""
    changes = {
        METRICS[name].weights: scorer.model_id
        for scorer in scorers
        for name in scorer.metrics
        if name in METRICS and METRICS[name].weights is not None and getattr(scorer, "model_id", None)
    }
    return replace(options, **changes)


def rebuildable(scorer: ImageScorer) -> bool:
    """Whether a worker builds the same scorer from metric names and ``scorer_options``: it fills built-in metrics
    only, each with weights, and names its checkpoint (``model_id``)."""
    return bool(getattr(scorer, "model_id", None)) and all(
        name in BUILT_IN and METRICS[name].weights is not None for name in scorer.metrics
    )
