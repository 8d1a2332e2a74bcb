"""The toy world's GenEval: multi-object scenes, their prompts and metadata, the toy detector under GenEval's rules."""

import json
import re

import numpy as np
import pytest
from PIL import Image

from workbench.errors import ConfigError
from workbench.metrics.geneval import Detection, evaluate
from workbench.metrics.geneval_detectors import ToyDetector, palette_colours
from workbench.prompts import PROMPT_DIR, load_prompts
from workbench.toyworld import multi
from workbench.toyworld.degrade import degrade


@pytest.fixture(scope="module")
def detector():
    return ToyDetector()


@pytest.fixture(scope="module")
def entries():
    return multi.toy_geneval_prompts(20, seed=0)


def judged(detector, scene, entry, rng=None):
    image = multi.render_multi(scene, rng)
    return evaluate(detector([image])[0], entry, lambda found, name: palette_colours(image, found, name))


def test_the_shipped_toy_set_is_the_generators_and_has_every_tag(entries):
    shipped = [json.loads(line) for line in (PROMPT_DIR / "toyworld-geneval.jsonl").read_text().splitlines()]
    assert shipped == [{k: e[k] for k in ("tag", "include", "exclude", "prompt")} for e in entries]
    table = load_prompts("toyworld-geneval")
    assert set(table["category"]) == set(multi.TAGS) and table["prompt"].is_unique
    assert "a photo of an orange" in " ".join(table["prompt"])  # GenEval's article


def test_renders_of_the_right_scene_pass_clean_and_mostly_degraded(detector, entries):
    rng = np.random.default_rng(0)
    clean = [judged(detector, e["scene"], e, rng) for e in entries]
    assert sum(r.correct for r in clean) / len(clean) >= 0.99, [r.reason for r in clean if not r.correct]
    degraded = []
    for e in entries:
        image = degrade(multi.render_multi(e["scene"], rng), rng)
        found = detector([image])[0]
        degraded.append(evaluate(found, e, lambda f, n, image=image: palette_colours(image, f, n)).correct)
    assert np.mean(degraded) >= 0.85


def test_a_scene_altered_fails_with_the_reason_geneval_gives(detector, entries):
    rng, outcomes, kinds = np.random.default_rng(1), [], set()
    for e in entries:
        for kind, scene, reason in multi.alterations(e, rng):
            result = judged(detector, scene, e)
            outcomes.append(not result.correct and re.fullmatch(reason, result.reason.split("\n")[0]) is not None)
            kinds.add(kind)
            if not outcomes[-1]:
                print(e["prompt"], kind, repr(result.reason), reason)
    assert kinds == {"removed", "shape changed", "colour changed", "one too few", "one too many", "first removed",
                     "second removed", "colours swapped", "relation reversed"}  # fmt: skip
    assert np.mean(outcomes) >= 0.99 and len(outcomes) > 200


def test_the_toy_detector_reads_counts_and_confidences_from_pixels(detector, entries):
    counting = next(e for e in entries if e["tag"] == "counting")
    found = detector([multi.render_multi(counting["scene"])])[0]
    assert len(found) == len(counting["scene"].things) and all(d.score > 0.9 for d in found)
    speck = multi.render_multi(multi.MultiScene(()))
    pixels = np.asarray(speck).copy()
    pixels[10:12, 10:13] = (215, 35, 35)  # six red pixels: far under the smallest object
    (dot,) = detector([Image.fromarray(pixels)])[0]
    assert dot.score < 0.2
    with pytest.raises(ConfigError, match="reads an object's pixels through its mask"):
        palette_colours(speck, [Detection("circle", 1.0, (0.0, 0.0, 4.0, 4.0))], "circle")


def test_a_study_scores_toy_geneval_offline_end_to_end(tmp_path):
    from workbench import GenerationConfig, MetricOptions, ModelEvaluator

    prompts = load_prompts("toyworld-geneval", n=8, seed=0)
    evaluator = ModelEvaluator(prompts, ["toyworld/sd-small"], [0, 1], GenerationConfig(steps=4),
                               output_dir=tmp_path / "run", metrics=["geneval"],
                               metric_options=MetricOptions(geneval_detector="toyworld"), warmup=False)  # fmt: skip
    rows = evaluator.run()
    assert rows["geneval"].notna().all() and set(rows["geneval"]) <= {0.0, 1.0}
    study = evaluator.report()
    assert "overall" in set(study.geneval["tag"]) and study.geneval["ci_low"].le(study.geneval["score"]).all()
