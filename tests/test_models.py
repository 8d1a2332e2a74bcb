import gc
import weakref

import pytest
import torch

from workbench import models
from workbench.errors import ConfigError, UnknownModelError
from workbench.models import PipelineCache, load, pick_device, pick_dtype


def test_a_local_folder_loads_through_from_pretrained(tiny_model_dir):
    pipe = load(str(tiny_model_dir), device="cpu", cache=None)
    assert type(pipe).__name__ == "StableDiffusionPipeline"
    assert models.model_id_of(pipe) == str(tiny_model_dir)
    assert pipe.dtype == torch.float32 and pipe.device.type == "cpu"


def test_dtype_can_be_asked_for(tiny_model_dir):
    pipe = load(str(tiny_model_dir), device="cpu", dtype="bf16", cache=None)
    assert pipe.unet.dtype == torch.bfloat16


def test_device_and_dtype_choices():
    assert pick_device().type in {"cuda", "mps", "cpu"}
    assert pick_dtype(None, torch.device("cpu")) == torch.float32
    assert pick_dtype(None, torch.device("cuda")) == torch.float16
    with pytest.raises(ConfigError, match=r"'tpu:7'.*available"):
        pick_device("tpu:7")
    with pytest.raises(ConfigError, match="'fp8'"):
        pick_dtype("fp8", torch.device("cpu"))


def test_unknown_hub_id_offline_fails_at_once_listing_local_models(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UnknownModelError) as error:
        load("nobody/no-such-model-xyz")
    message = str(error.value)
    assert "nobody/no-such-model-xyz" in message and "offline" in message
    assert "arch/sd15" in message and "arch/tiny" in message
    assert "Traceback" not in message


def test_unreachable_hub_counts_as_offline(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(models, "_hub_reachable", lambda: False)
    assert models.is_offline()
    with pytest.raises(UnknownModelError, match="offline"):
        load("nobody/no-such-model-xyz")


@pytest.mark.parametrize("model_id", ["toyworld/no-such-world", "arch/sd99", "not a valid id!", ""])
def test_other_unknown_ids(model_id):
    with pytest.raises(UnknownModelError):
        load(model_id, cache=None)


def test_a_folder_that_is_not_a_pipeline(tmp_path):
    with pytest.raises(UnknownModelError, match=r"model_index\.json"):
        load(str(tmp_path), cache=None)


def test_arch_tiny_loads_by_id():
    pipe = load("arch/tiny", device="cpu", cache=None)
    assert models.model_id_of(pipe) == "arch/tiny"


class _Loader:
    def __init__(self, tiny_model_dir):
        self.folder, self.calls = tiny_model_dir, 0

    def __call__(self):
        self.calls += 1
        return load(str(self.folder), device="cpu", cache=None)


def test_cache_hit_is_the_same_object_and_loads_nothing(tiny_model_dir):
    cache, loader = PipelineCache(max_items=2), _Loader(tiny_model_dir)
    first = cache.get_or_load(("a",), loader)
    assert cache.get_or_load(("a",), loader) is first
    assert loader.calls == 1 and (cache.hits, cache.misses) == (1, 1)


def test_cache_evicts_least_recently_used_by_count_and_frees_it(tiny_model_dir):
    cache, loader = PipelineCache(max_items=2), _Loader(tiny_model_dir)
    a = weakref.ref(cache.get_or_load(("a",), loader))
    cache.get_or_load(("b",), loader)
    cache.get_or_load(("a",), loader)  # a is now the most recently used
    cache.get_or_load(("c",), loader)
    assert cache.keys() == [("a",), ("c",)] and cache.evictions == 1
    cache.clear()
    gc.collect()
    assert a() is None and len(cache) == 0


def test_cache_evicts_by_memory_budget(tiny_model_dir):
    size = models.pipeline_bytes(load(str(tiny_model_dir), device="cpu", cache=None))
    cache, loader = PipelineCache(max_items=10, max_bytes=int(2.5 * size)), _Loader(tiny_model_dir)
    for key in "abcd":
        cache.get_or_load((key,), loader)
    assert cache.keys() == [("c",), ("d",)]
    assert cache.nbytes <= cache.max_bytes


def test_load_uses_the_default_cache(tiny_model_dir):
    models.default_cache.clear()
    first = load(str(tiny_model_dir), device="cpu")
    assert load(str(tiny_model_dir), device="cpu") is first
    assert load(str(tiny_model_dir), device="cpu", dtype="bf16") is not first
    models.default_cache.clear()
