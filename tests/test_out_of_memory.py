"""Running out of memory mid-study: a batch is halved until it fits, no image lost or made twice, and the rows
say which sizes ran."""

import numpy as np
import torch
from PIL import Image

import workbench as wb
from workbench.device_memory import is_out_of_memory
from workbench.latency import latency_summary
from workbench.local_pipeline import LocalPipeline

PROMPTS = ["a red circle", "a blue square", "a green triangle", "a yellow cross", "a purple circle", "an orange square"]


class RunsOut:
    """The toy pipeline as a backend that runs out of memory on a call of more than ``fits`` images, or on any
    call holding the prompt ``poison``; ``calls``: (images, steps, ran) per call."""

    def __init__(self, fits: int, poison: str | None = None, error: str = "CUDA out of memory. Tried to allocate 2 GiB",
                 kind=torch.OutOfMemoryError):  # fmt: skip
        self.inner = LocalPipeline(wb.load("toyworld/sd-small"))
        self.workbench_model_id = self.inner.workbench_model_id
        self.fits, self.poison, self.error, self.kind, self.calls = fits, poison, error, kind, []

    def accelerated(self, config):
        return self.inner.accelerated(config)

    def make_images(self, jobs, config, **kwargs):
        ran = len(jobs) <= self.fits and self.poison not in [prompt for prompt, _ in jobs]
        self.calls.append((len(jobs), config.steps, ran))
        if not ran:
            raise self.kind(self.error)
        return self.inner.make_images(jobs, config, **kwargs)


def pixels(run, rows) -> dict:
    return {(r.prompt_id, r.seed): np.asarray(Image.open(run / r.image_path)) for r in rows.itertuples()}


def test_a_batch_that_runs_out_of_memory_is_halved_until_it_fits_losing_nothing(tmp_path):
    backend = RunsOut(fits=2)
    config = wb.GenerationConfig(steps=4, batch_size=8)
    rows = wb.ModelEvaluator(PROMPTS, [backend], [0, 1], config, output_dir=tmp_path / "oom").run()
    assert len(rows) == 12 and (rows["status"] == "ok").all() and not rows.duplicated(["prompt_id", "seed"]).any()
    made = [images for images, steps, ran in backend.calls if ran and steps == 4]
    assert sum(made) == 12 and set(made) == {2}  # each image made once, at the size that fits
    warmed = [images for images, steps, ran in backend.calls if ran and steps == 2]
    assert warmed == [2]  # the split shape warmed up once, untimed
    first, second = rows[rows["batch_id"] == 0], rows[rows["batch_id"] == 1]
    assert (first["batch_splits"] == 2).all() and (second["batch_splits"] == 2).all()  # 8 -> 4 -> 2; then 2 at once
    assert (rows["batch_asked"] == 8).all() and (rows["batch_images"] == 2).all()
    assert [images for images, steps, ran in backend.calls if not ran] == [8, 4]  # the plan's later batch not tried
    (note,) = latency_summary(rows)["timing_note"]
    assert "6 of its calls were smaller than asked, to fit in memory: it ran at batch sizes 2 (asked for 8)" in note
    # The same images, pixel for pixel, as a run that never ran out, at the size that was used.
    same = wb.ModelEvaluator(PROMPTS, [RunsOut(fits=99)], [0, 1], config.replace(batch_size=2),
                             output_dir=tmp_path / "fits").run()  # fmt: skip
    ours, theirs = pixels(tmp_path / "oom", rows), pixels(tmp_path / "fits", same)
    assert ours.keys() == theirs.keys() and all(np.array_equal(ours[k], theirs[k]) for k in ours)
    settings = ["model_id", "prompt_id", "seed", "status", "steps", "guidance", "token_count"]
    assert rows[settings].equals(same[settings])


def test_an_image_that_runs_out_alone_is_an_error_row_and_a_rerun_makes_only_it(tmp_path):
    config = wb.GenerationConfig(steps=2, batch_size=4)
    backend = RunsOut(fits=8, poison=PROMPTS[1])
    rows = wb.ModelEvaluator(PROMPTS, [backend], [0], config, output_dir=tmp_path, warmup=False).run()
    failed = rows[rows["status"] != "ok"]
    assert list(failed["prompt_id"]) == ["p001"] and failed["status"].iloc[0].startswith("error: OutOfMemoryError")
    assert (rows["status"] == "ok").sum() == 5 and failed["batch_splits"].iloc[0] == 2  # 4 -> 2 -> 1
    healed = RunsOut(fits=8)
    again = wb.ModelEvaluator(PROMPTS, [healed], [0], config, output_dir=tmp_path, warmup=False).run()
    assert (again["status"] == "ok").all() and [images for images, _, _ in healed.calls] == [1]


def test_a_failed_cpu_allocation_is_out_of_memory_and_other_errors_are_not(tmp_path):
    cpu = RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate memory: "
                       "you tried to allocate 4294967296 bytes. Error code 12 (Cannot allocate memory)")  # fmt: skip
    assert is_out_of_memory(cpu) and is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory"))
    assert not is_out_of_memory(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))
    config = wb.GenerationConfig(steps=2, batch_size=2)
    allocator = RunsOut(fits=1, error=str(cpu), kind=RuntimeError)  # the CPU's allocator failing: split
    rows = wb.ModelEvaluator(PROMPTS[:2], [allocator], [0], config, output_dir=tmp_path / "a", warmup=False).run()
    assert (rows["status"] == "ok").all() and (rows["batch_splits"] == 1).all()
    other = RunsOut(fits=1, error="mat1 and mat2 shapes cannot be multiplied", kind=RuntimeError)  # not split
    rows = wb.ModelEvaluator(PROMPTS[:2], [other], [0], config, output_dir=tmp_path / "b", warmup=False).run()
    assert rows["status"].str.startswith("error: RuntimeError: mat1").all() and (rows["batch_splits"] == 0).all()


def test_after_running_out_the_rest_of_the_batch_goes_on_at_the_size_that_fitted(tmp_path):
    config = wb.GenerationConfig(steps=2, batch_size=6)  # 6 -> 3 -> 2, then 2, 2: never 2, 1, 2, 1
    rows = wb.ModelEvaluator(PROMPTS, [RunsOut(fits=2)], [0], config, output_dir=tmp_path / "a", warmup=False).run()
    assert (rows["status"] == "ok").all() and (rows["batch_images"] == 2).all() and (rows["batch_splits"] == 2).all()
    alone = wb.ModelEvaluator(PROMPTS, [RunsOut(fits=2)], [0], config.replace(batch_size=2),
                              output_dir=tmp_path / "b", warmup=False).run()  # fmt: skip
    ours, theirs = pixels(tmp_path / "a", rows), pixels(tmp_path / "b", alone)
    assert all(np.array_equal(ours[k], theirs[k]) for k in ours)


class ScoresUpTo:
    """The toy CLIP scorer, running out of memory when given more than ``fits`` images at once."""

    def __init__(self, fits: int):
        self.inner, self.fits = wb.CLIPScorer("toyworld/clip"), fits
        self.metrics, self.model_id = self.inner.metrics, self.inner.model_id

    def score_columns(self, images, prompts):
        if len(images) > self.fits:
            raise torch.OutOfMemoryError("CUDA out of memory (scoring)")
        return self.inner.score_columns(images, prompts)


def test_a_scorer_that_runs_out_of_memory_makes_the_batch_smaller_too(tmp_path):
    config = wb.GenerationConfig(steps=2, batch_size=4)
    rows = wb.ModelEvaluator(PROMPTS[:4], ["toyworld/sd-small"], [0], config, output_dir=tmp_path,
                             scorer=ScoresUpTo(2), warmup=False).run()  # fmt: skip
    assert (rows["status"] == "ok").all() and rows["clip_score"].notna().all() and (rows["batch_images"] == 2).all()
