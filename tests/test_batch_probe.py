"""batch_size="auto": a short probe of batch sizes per plan and device, its choice used, recorded and reused."""

import json
import math

import numpy as np
import pytest
from PIL import Image

import workbench as wb
from workbench import batch_probe
from workbench.batch_probe import BatchProbe, forget_probes, known_probe, probe_batch_size
from workbench.errors import ConfigError
from workbench.plan import resolve

PROMPTS = ["a red circle", "a blue square", "a green triangle", "a yellow cross", "a purple circle", "an orange square"]


@pytest.fixture(autouse=True)
def fresh_probes():
    forget_probes()
    yield
    forget_probes()


def scripted(monkeypatch, seconds: dict, peaks: dict | None = None, budget: float | None = None) -> list[int]:
    """The probe's measurements as given per size (None: out of memory), and the memory budget; the sizes
    it measured."""
    measured = []

    def measure(plan, jobs, run_device, device, cache):
        measured.append(len(jobs))
        value = seconds[len(jobs)]
        if isinstance(value, list):  # one value per measurement of that size
            value = value[measured.count(len(jobs)) - 1]
        if isinstance(value, Exception):
            raise value
        return None if value is None else (value, (peaks or {}).get(len(jobs), 100.0))

    monkeypatch.setattr(batch_probe, "_measure", measure)
    monkeypatch.setattr(batch_probe, "memory_budget_mb", lambda device: budget)
    return measured


PLAN = resolve("toyworld/sd-small", "a red circle", wb.GenerationConfig(steps=20, batch_size="auto"))
JOBS = [(prompt, seed) for prompt in PROMPTS for seed in range(8)]  # 48


def test_the_probe_doubles_until_a_batch_gains_under_five_percent_and_takes_the_last_that_gained(monkeypatch):
    measured = scripted(monkeypatch, {1: 1.0, 2: 0.6, 4: 0.5, 8: 0.49, 16: 0.3})
    probe = probe_batch_size(PLAN, JOBS, device="cpu", run_device=None)
    assert measured == [1, 2, 4, 8] and probe.sizes == (1, 2, 4, 8) and probe.chosen == 4  # 8: 2% is noise
    assert probe.stopped == "8 gained under 5% in time per image" and probe.seconds_per_image[-1] == 0.49
    assert probe_batch_size(PLAN, JOBS, device="cpu", run_device=None) is probe and measured == [1, 2, 4, 8]
    arm = resolve("toyworld/sd-small", "a blue square", wb.GenerationConfig(steps=20, negative_prompt="blurry"))
    assert probe_batch_size(arm, JOBS, device="cpu", run_device=None) is probe  # A/B arms' negatives: one probe
    fewer = resolve("toyworld/sd-small", "a red circle", wb.GenerationConfig(steps=4))
    assert probe_batch_size(fewer, JOBS, device="cpu", run_device=None) is not probe  # another step count


def test_the_probe_stops_before_the_memory_budget_out_of_memory_or_the_plans_images(monkeypatch):
    scripted(monkeypatch, dict.fromkeys([1, 2, 4, 8], 0.5))
    probe = probe_batch_size(PLAN, JOBS, device="cpu", run_device=None)
    assert probe.stopped == "2 gained under 5% in time per image" and probe.chosen == 1  # flat: ties go small
    forget_probes()
    measured = scripted(monkeypatch, {1: 1.0, 2: 0.5, 4: [0.9, 0.3], 8: [0.35, 0.29]})  # 4: a busy moment
    probe = probe_batch_size(PLAN, JOBS, device="cpu", run_device=None)
    assert measured == [1, 2, 4, 4, 8, 8] and probe.seconds_per_image == (1.0, 0.5, 0.3, 0.29) and probe.chosen == 4
    forget_probes()
    steep = {1: 1.0, 2: 0.5, 4: 0.25, 8: 0.125}
    measured = scripted(monkeypatch, steep, peaks={1: 100, 2: 150, 4: 250}, budget=400)
    probe = probe_batch_size(PLAN, JOBS, device="cpu", run_device=None)
    assert measured == [1, 2, 4] and probe.chosen == 4 and probe.budget_mb == 400
    assert probe.stopped == "8 would pass the memory budget (400 MiB)"  # 250 + 4 x 50 > 400
    forget_probes()
    scripted(monkeypatch, {**steep, 4: None})
    probe = probe_batch_size(PLAN, JOBS, device="cpu", run_device=None)
    assert probe.sizes == (1, 2) and probe.chosen == 2 and probe.stopped == "4 ran out of memory"
    forget_probes()
    scripted(monkeypatch, steep)
    probe = probe_batch_size(PLAN, JOBS[:5], device="cpu", run_device=None)
    assert probe.sizes == (1, 2, 4) and probe.stopped == "every size up to the plan's 5 image(s)" and probe.capped
    assert probe_batch_size(PLAN, JOBS[:7], device="cpu", run_device=None) is probe  # no room for 8 yet
    assert probe_batch_size(PLAN, JOBS[:8], device="cpu", run_device=None).sizes == (1, 2, 4, 8)  # probed again


def test_a_failing_probe_ends_without_stopping_the_study_and_is_not_kept(monkeypatch):
    assert_fails = RuntimeError("device-side assert triggered")
    scripted(monkeypatch, {1: 1.0, 2: [1.5, assert_fails]})  # slower at 2, and failing when measured again
    probe = probe_batch_size(PLAN, JOBS, device="cpu", run_device=None)
    assert probe.sizes == (1,) and probe.chosen == 1 and probe.stopped.startswith("2 failed (RuntimeError")
    forget_probes()
    scripted(monkeypatch, {1: assert_fails})
    probe = probe_batch_size(PLAN, JOBS, device="cpu", run_device=None)
    assert probe.sizes == () and probe.chosen == 1 and known_probe(probe.key) is None  # tried again next time
    unreported = BatchProbe("k", "m", "cpu", (1,), (0.5,), (math.nan,), None, 1, "every size", 0.1, 1, False)
    written = json.dumps(unreported.to_dict(), allow_nan=False)  # a backend that reports no peak: stored as null
    assert math.isnan(BatchProbe.from_dict(json.loads(written)).peak_mb[0])


def test_auto_runs_at_the_size_probed_records_it_and_makes_the_same_images_as_that_size(tmp_path):
    config = wb.GenerationConfig(steps=4, batch_size="auto")
    rows = wb.ModelEvaluator(PROMPTS, ["toyworld/sd-small"], [0, 1], config, output_dir=tmp_path / "auto").run()
    (probe,) = json.loads((tmp_path / "auto" / "batch_sizes.json").read_text()).values()
    assert probe["sizes"][:2] == [1, 2] and len(probe["seconds_per_image"]) == len(probe["sizes"])
    chosen = probe["chosen"]
    assert chosen in probe["sizes"] and (rows["batch_size"] == chosen).all() and (rows["batch_asked"] == chosen).all()
    fixed = wb.ModelEvaluator(PROMPTS, ["toyworld/sd-small"], [0, 1], config.replace(batch_size=chosen),
                              output_dir=tmp_path / "fixed").run()  # fmt: skip
    for ours, theirs in zip(rows.itertuples(), fixed.itertuples(), strict=True):
        a, b = (
            np.asarray(Image.open(tmp_path / run / row.image_path)) for run, row in (("auto", ours), ("fixed", theirs))
        )
        assert np.array_equal(a, b)
    assert rows["settings_hash"].nunique() == 1 and rows["settings_hash"].iloc[0] != fixed["settings_hash"].iloc[0]
    assert wb.RunFolder(tmp_path / "auto").manifest_facts()["batch_sizes"] == [probe]


def test_a_resumed_run_batches_as_its_first_part_did(tmp_path, monkeypatch):
    config = wb.GenerationConfig(steps=2, batch_size="auto")
    wb.ModelEvaluator(PROMPTS[:3], ["toyworld/sd-small"], [0], config, output_dir=tmp_path).run()
    (recorded,) = wb.RunFolder(tmp_path).batch_probes().values()
    forget_probes()

    def no_probe(*args, **kwargs):
        raise AssertionError("a resumed run probed again")

    monkeypatch.setattr("workbench.engine.probe_batch_size", no_probe)
    rows = wb.ModelEvaluator(PROMPTS, ["toyworld/sd-small"], [0, 1], config, output_dir=tmp_path).run()
    assert len(rows) == 12 and (rows["batch_size"] == recorded.chosen).all()


def test_auto_is_the_engines_and_a_bad_batch_size_is_refused():
    with pytest.raises(ConfigError, match="batch_size must be an integer >= 1 or 'auto', got 'big'"):
        wb.GenerationConfig(batch_size="big")
    pipe = wb.load("toyworld/sd-small")
    with pytest.raises(ConfigError, match="batch_size 'auto' is chosen by the evaluation engine's probe"):
        wb.generate(pipe, "a red circle", wb.GenerationConfig(batch_size="auto"))
    with pytest.raises(ConfigError, match="times every variant at one batch size"):
        wb.benchmark_acceleration(pipe, ["a red circle"], [0], [], config=wb.GenerationConfig(batch_size="auto"))


def test_worker_processes_batch_at_the_size_probed_in_the_driver(tmp_path):
    config = wb.GenerationConfig(steps=2, batch_size="auto")
    rows = wb.ModelEvaluator(PROMPTS[:4], ["toyworld/sd-small"], [0], config, output_dir=tmp_path, workers=2).run()
    (probe,) = wb.RunFolder(tmp_path).batch_probes().values()
    assert len(rows) == 4 and (rows["status"] == "ok").all() and (rows["batch_size"] == probe.chosen).all()
    assert probe.device == "cpu" and set(rows["worker"]) <= {"worker0:cpu", "worker1:cpu"}


def test_the_studies_take_auto_or_a_number_and_default_to_auto():
    from workbench.study_parameters import check_parameters, notebook_parameters

    for study in ("01_model_evaluation", "02_routing", "03_prompt_optimization", "04_ab_test"):
        assert notebook_parameters(study)["batch_size"]["default"] == '"auto"'
        check_parameters(study, {"batch_size": "auto"})
        check_parameters(study, {"batch_size": 8})
        with pytest.raises(ConfigError, match=r"parameter 'batch_size' must be int \| Literal\[\"auto\"\].*'big'"):
            check_parameters(study, {"batch_size": "big"})


def test_the_real_probe_stops_where_the_device_runs_out_and_a_failing_plan_still_makes_error_rows(tmp_path):
    from test_out_of_memory import RunsOut

    backend = RunsOut(fits=1)
    config = wb.GenerationConfig(steps=4, batch_size="auto")
    rows = wb.ModelEvaluator(PROMPTS, [backend], [0, 1], config, output_dir=tmp_path / "oom").run()
    (probe,) = wb.RunFolder(tmp_path / "oom").batch_probes().values()
    assert probe.sizes == (1,) and probe.stopped == "2 ran out of memory" and probe.chosen == 1
    assert (rows["status"] == "ok").all() and (rows["batch_splits"] == 0).all()  # the study never ran out
    assert probe.seconds_per_image[0] > 0 and not probe.capped
    made = [steps for images, steps, ran in backend.calls if ran]
    assert made == [1, 2] + [4] * 12  # the probe's calls at 1 were the study's warm-up: none of its own
    forget_probes()  # the same model, settings and device: the first probe would hold
    broken = RunsOut(fits=99, error="device-side assert triggered", kind=RuntimeError, poison=PROMPTS[0])
    rows = wb.ModelEvaluator(PROMPTS, [broken], [0], config, output_dir=tmp_path / "broken").run()
    assert wb.RunFolder(tmp_path / "broken").batch_probes() == {}  # nothing measured: not kept for a resume
    assert (rows["batch_size"] == 1).all()
    assert rows.loc[rows["prompt_id"] == "p000", "status"].str.contains("device-side assert").all()
    assert (rows.loc[rows["prompt_id"] != "p000", "status"] == "ok").all()  # the study went on


def test_routed_prompts_are_probed_per_route(tmp_path):
    router = wb.Router("toyworld", "keyword")
    prompts = ["a watercolor of a red circle", "an oil painting of a blue square", "a photo of a green triangle"]
    rows = wb.ModelEvaluator(prompts, [router], [0, 1], wb.GenerationConfig(steps=2, batch_size="auto"),
                             output_dir=tmp_path / "routed").run()  # fmt: skip
    probes = wb.RunFolder(tmp_path / "routed").batch_probes()
    assert (rows["status"] == "ok").all() and len(probes) == rows["routed_model_id"].nunique()
    for route, group in rows.groupby("routed_model_id"):
        (probe,) = (p for p in probes.values() if p.model_id == route)
        assert (group["batch_size"] == probe.chosen).all()
