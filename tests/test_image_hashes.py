"""Every image the workbench makes stays bit-identical across refactors: a fixed set of prompt, seed, model,
settings and acceleration cases, hashed once and checked on every run (one CPU thread, fixed batches).

After a change that is meant to change images, record the hashes again with
``python tests/test_image_hashes.py`` and say why in the commit. CPU kernels round differently (AVX-512 with AMX
against AVX2), so hashes are kept per kind of CPU (``cpu_kind``), each recorded by running the code on such a
CPU; a CPU with no record of its own is checked against "default", the first record.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import workbench as wb

HASHES = Path(__file__).parent / "data" / "image_hashes.json"
TOY = ("a photo of a large red circle on the left, on a white background", "a sketch of a small green triangle")
FAST = wb.GenerationConfig(steps=4, guidance=5.0)

# name -> (model id, prompts, seeds, generation config, acceleration or None)
CASES = {
    "sd-small": ("toyworld/sd-small", TOY, [0, 1], FAST, None),
    "sd-small-batched": ("toyworld/sd-small", TOY, [0, 1], FAST.replace(batch_size=2), None),
    "sd-base-euler-negative": (
        "toyworld/sd-base",
        TOY[:1],
        [3],
        FAST.replace(guidance=7.0, scheduler="euler", negative_prompt="a blue square"),
        None,
    ),
    "sd-small-deepcache": ("toyworld/sd-small", TOY[:1], [0], FAST.replace(steps=6), {"deepcache_interval": 3}),
    "sd-small-tome": ("toyworld/sd-small", TOY[:1], [0], FAST, {"tome_ratio": 0.5}),
    "sd-small-channels-last-eager": (
        "toyworld/sd-small",
        TOY[:1],
        [0],
        FAST,
        {"channels_last": True, "attention_backend": "eager"},
    ),
    "sd-small-bfloat16": ("toyworld/sd-small", TOY[:1], [0], FAST, {"dtype": "bfloat16"}),
    "arch-tiny": ("arch/tiny", ("a red circle",), [0, 5], FAST.replace(steps=2), None),
}


def _digest(image) -> str:
    pixels = np.asarray(image)
    return hashlib.sha256(str(pixels.shape).encode() + pixels.tobytes()).hexdigest()[:20]


def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    return threads


def case_hashes(name: str) -> list[str]:
    model_id, prompts, seeds, config, acceleration = CASES[name]
    pipe = wb.load(model_id, device="cpu")
    with wb.accelerate(pipe, wb.AccelerationConfig(**acceleration) if acceleration else None):
        records = wb.generate(pipe, list(prompts), config, seeds)
    return [_digest(r.image) for r in records]


def routed_hashes() -> list[str]:
    router = wb.Router("toyworld", "keyword", device="cpu")
    return [_digest(r.image) for r in router.generate(list(TOY), seeds=[2])]


def all_hashes() -> dict[str, list[str]]:
    threads = _one_thread()
    try:
        return {**{name: case_hashes(name) for name in CASES}, "routed": routed_hashes()}
    finally:
        torch.set_num_threads(threads)


def cpu_kind() -> str:
    """The CPU kernels torch runs here: its capability, and whether the CPU has AMX tiles."""
    try:
        amx = "amx_tile" in Path("/proc/cpuinfo").read_text()
    except OSError:
        amx = False
    return torch.backends.cpu.get_cpu_capability() + ("+amx" if amx else "")


@pytest.fixture(scope="module")
def recorded() -> dict[str, list[str]]:
    kinds = json.loads(HASHES.read_text())
    return kinds.get(cpu_kind(), kinds["default"])


@pytest.fixture
def one_thread():
    threads = _one_thread()
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("name", sorted(CASES))
def test_images_are_bit_identical_to_the_recorded_ones(name, recorded, one_thread):
    assert case_hashes(name) == recorded[name]


def test_routed_images_are_bit_identical_to_the_recorded_ones(recorded, one_thread):
    assert routed_hashes() == recorded["routed"]


def test_an_ab_arm_and_an_acceleration_variant_are_the_images_generate_makes(one_thread):
    """Through the engine (batches across prompts, a warm-up, rounds), the A/B tester's arms and the acceleration
    benchmark's variants make bit for bit the images a plain generate call makes for the same settings and
    batches (one image each: on some CPUs a batch's size changes an image's rounding)."""
    pipe = wb.load("toyworld/sd-small", device="cpu")
    config = FAST.replace(batch_size=1)
    tester = wb.PromptABTester(pipe, wb.CLIPScorer("toyworld/clip"), config=config)
    result = tester.run(list(TOY), {"plain": "{prompt}", "photo": "a photo of {prompt}"}, seeds=[0, 1])
    for row in result.rows.itertuples():
        (expected,) = wb.generate(pipe, row.prompt, config, row.seed)
        assert _digest(result.images[(row.arm, row.prompt_id, row.seed)]) == _digest(expected.image), row

    deepcache = wb.AccelerationConfig(deepcache_interval=3)
    slow = FAST.replace(steps=6)
    benchmark = wb.benchmark_acceleration(pipe, list(TOY), [0], [deepcache], config=slow, rounds=1)
    with wb.accelerate(pipe, deepcache):
        expected = wb.generate(pipe, list(TOY), slow, [0])
    made = {key: image for key, image in benchmark.images.items() if key[0] == deepcache.label()}
    assert sorted(made) == sorted((deepcache.label(), r.prompt, r.seed) for r in expected)
    for record in expected:
        assert _digest(made[(deepcache.label(), record.prompt, record.seed)]) == _digest(record.image)


if __name__ == "__main__":
    kinds = json.loads(HASHES.read_text()) if HASHES.is_file() else {}
    kinds[cpu_kind() if kinds else "default"] = all_hashes()
    HASHES.write_text(json.dumps(kinds, indent=2, sort_keys=True) + "\n")
    print(f"recorded {HASHES} for {cpu_kind()}")
