"""Checks that need a CUDA GPU; skipped elsewhere."""

import pytest
import torch

from workbench.config import GenerationConfig
from workbench.generation import generate
from workbench.models import load

pytestmark = pytest.mark.gpu


def test_cuda_generation_measures_allocator_peak_and_matches_cpu_noise(tiny_model_dir):
    pipe = load(str(tiny_model_dir), device="cuda", cache=None)
    assert pipe.unet.dtype == torch.float16
    a, b = generate(pipe, "a red circle", GenerationConfig(steps=3), [0, 0])
    assert a.mem_kind == "cuda_allocated" and a.peak_mem_mb > 0
    assert a.image.tobytes() == b.image.tobytes()
