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


def test_the_server_puts_one_worker_on_each_gpu():
    from fastapi.testclient import TestClient

    from workbench.serve.app import create_app
    from workbench.serve.settings import ServeSettings, default_devices

    devices = default_devices()
    with TestClient(create_app(ServeSettings(devices=tuple(devices), classifier="keyword"))) as client:
        assert [w["worker"] for w in client.get("/healthz").json()["workers"]] == [
            f"{i}:{d}" for i, d in enumerate(devices)
        ]
        body = {"prompt": "a red circle", "model": "toyworld/sd-base", "steps": 4, "response_format": "json"}
        record = client.post("/v1/generate", json=body).json()["images"][0]["record"]
        assert record["device"].startswith("cuda") and record["mem_kind"] == "cuda_allocated"
