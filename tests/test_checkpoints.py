"""Single-file checkpoints and LoRA adapters, offline, with files the tests make from the toy world."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from workbench.architectures import build_architecture
from workbench.checkpoints import apply_loras, load_single_file, parse_lora_id, parse_single_file_id
from workbench.config import GenerationConfig
from workbench.errors import ConfigError, UnknownModelError
from workbench.generation import generate
from workbench.models import TOYWORLD_DIR, load

CPU, FP32 = torch.device("cpu"), torch.float32
PROMPT = "a photo of a large red circle on the left, on a white background"


def image(pipe) -> np.ndarray:
    (record,) = generate(pipe, PROMPT, GenerationConfig(steps=3), seeds=[0])
    return np.asarray(record.image)


@pytest.fixture(scope="module")
def base_image() -> np.ndarray:
    return image(load("toyworld/sd-small", device="cpu"))


def same_weights(pipe, other) -> bool:
    for name in ("unet", "vae", "text_encoder"):
        mine, theirs = getattr(pipe, name).state_dict(), getattr(other, name).state_dict()
        if mine.keys() != theirs.keys() or not all(torch.equal(mine[k], theirs[k]) for k in mine):
            return False
    return True


# --- writing a pipeline in the original (LDM) single-file layout: the inverse of diffusers' conversion ---

RESNET = [
    ("norm1", "in_layers.0"),
    ("conv1", "in_layers.2"),
    ("norm2", "out_layers.0"),
    ("conv2", "out_layers.3"),
    ("time_emb_proj", "emb_layers.1"),
    ("conv_shortcut", "skip_connection"),
]
UNET_TOP = {
    "time_embedding.linear_1": "time_embed.0",
    "time_embedding.linear_2": "time_embed.2",
    "conv_in": "input_blocks.0.0",
    "conv_norm_out": "out.0",
    "conv_out": "out.2",
}
VAE_ATTENTION = [("group_norm", "norm"), ("to_q", "q"), ("to_k", "k"), ("to_v", "v"), ("to_out.0", "proj_out")]


def ldm_resnet(rest: str) -> str:
    for new, old in RESNET:
        rest = rest.replace(new, old)
    return rest


def ldm_unet_key(key: str, config) -> str:
    """The LDM name of a UNet2DConditionModel parameter (input_blocks / middle_block / output_blocks)."""
    per_block = config["layers_per_block"] + 1
    parts = key.split(".")
    if ".".join(parts[:-1]) in UNET_TOP:
        return f"{UNET_TOP['.'.join(parts[:-1])]}.{parts[-1]}"
    if parts[0] == "mid_block":  # resnet, attention, resnet
        rest = ".".join(parts[3:])
        if parts[1] == "resnets":
            return f"middle_block.{2 * int(parts[2])}.{ldm_resnet(rest)}"
        return f"middle_block.1.{rest}"
    block, part, index, rest = int(parts[1]), parts[2], int(parts[3]), ".".join(parts[4:])
    if parts[0] == "down_blocks":  # input_blocks.0 is conv_in; each block: its layers, then its downsampler
        layer = 1 + block * per_block + (per_block - 1 if part == "downsamplers" else index)
        if part == "downsamplers":
            return f"input_blocks.{layer}.0.op.{rest.removeprefix('conv.')}"
        return f"input_blocks.{layer}.0.{ldm_resnet(rest)}" if part == "resnets" else f"input_blocks.{layer}.1.{rest}"
    layer = block * per_block + (per_block - 1 if part == "upsamplers" else index)
    if part == "upsamplers":  # after the layer's attention, when the block has one
        return f"output_blocks.{layer}.{2 if 'CrossAttn' in config['up_block_types'][block] else 1}.{rest}"
    return f"output_blocks.{layer}.0.{ldm_resnet(rest)}" if part == "resnets" else f"output_blocks.{layer}.1.{rest}"


def ldm_vae_key(key: str, config) -> str:
    """The LDM name of an AutoencoderKL parameter (decoder up blocks are numbered from the bottom)."""
    coder, parts = key.split(".")[0], key.split(".")
    if parts[1] == "conv_norm_out":
        return f"{coder}.norm_out.{parts[2]}"
    if parts[1] == "mid_block":
        rest = ".".join(parts[4:])
        if parts[2] == "resnets":
            return f"{coder}.mid.block_{int(parts[3]) + 1}.{rest.replace('conv_shortcut', 'nin_shortcut')}"
        for new, old in VAE_ATTENTION:
            rest = rest.replace(new, old)
        return f"{coder}.mid.attn_1.{rest}"
    if parts[1] in ("down_blocks", "up_blocks"):
        block, part, rest = int(parts[2]), parts[3], ".".join(parts[5:])
        level = "down" if coder == "encoder" else "up"
        if coder == "decoder":
            block = len(config["up_block_types"]) - 1 - block
        if part == "resnets":
            return f"{coder}.{level}.{block}.block.{parts[4]}.{rest.replace('conv_shortcut', 'nin_shortcut')}"
        return f"{coder}.{level}.{block}.{level}sample.{rest}"
    return key  # conv_in, conv_out, quant_conv, post_quant_conv


def ldm_state_dict(pipe) -> dict[str, torch.Tensor]:
    """``pipe``'s weights under the original Stable Diffusion checkpoint's names."""
    state = {}
    for key, value in pipe.unet.state_dict().items():
        state["model.diffusion_model." + ldm_unet_key(key, pipe.unet.config)] = value
    for key, value in pipe.vae.state_dict().items():
        name = ldm_vae_key(key, pipe.vae.config)
        if ".mid.attn_1." in name and value.ndim == 2:
            value = value[:, :, None, None]  # LDM's VAE attention projections are 1x1 convolutions
        state["first_stage_model." + name] = value
    for key, value in pipe.text_encoder.state_dict().items():
        state["cond_stage_model.transformer.text_model." + key.removeprefix("text_model.")] = value
    return {key: value.detach().contiguous() for key, value in state.items()}


def test_the_writer_inverts_diffusers_conversion():
    """Checked on arch/tiny, whose VAE has mid-block attention and whose UNet mixes block types."""
    from diffusers.loaders.single_file_utils import (
        convert_ldm_clip_checkpoint,
        convert_ldm_unet_checkpoint,
        convert_ldm_vae_checkpoint,
    )

    pipe = build_architecture("tiny")
    state = ldm_state_dict(pipe)
    converted = {
        "unet": convert_ldm_unet_checkpoint(state, pipe.unet.config),
        "vae": convert_ldm_vae_checkpoint(state, pipe.vae.config),
        "text_encoder": {k.removeprefix("text_model."): v for k, v in convert_ldm_clip_checkpoint(state).items()},
    }
    for name, weights in converted.items():
        expected = getattr(pipe, name).state_dict()
        assert weights.keys() == expected.keys(), name
        assert all(torch.equal(weights[k], expected[k]) for k in expected), name


@pytest.fixture(scope="module")
def toy_checkpoint(tmp_path_factory):
    """toyworld/sd-small as one .safetensors file in the original layout."""
    path = tmp_path_factory.mktemp("single-file") / "sd-small.safetensors"
    save_file(ldm_state_dict(load("toyworld/sd-small", device="cpu", cache=None)), path)
    return path


# --- single-file checkpoints ----------------------------------------------------------------------


def test_single_file_ids_are_parsed():
    assert parse_single_file_id("models/x.safetensors") == ("models/x.safetensors", None)
    assert parse_single_file_id("x.CKPT?config=toyworld/sd-small") == ("x.CKPT", "toyworld/sd-small")
    for other in ("toyworld/sd-small", "owner/name", "./folder", "arch/tiny", "toyworld/sd-small+lora:a.safetensors"):
        assert parse_single_file_id(other) is None
    for bad in ("x.safetensors?config=", "x.safetensors?vae=foo", "x.ckpt?"):
        with pytest.raises(ConfigError, match=r"config=CONFIG"):
            parse_single_file_id(bad)


def test_a_single_file_checkpoint_makes_the_folder_pipelines_images(toy_checkpoint, base_image):
    folder_pipe = load("toyworld/sd-small", device="cpu")
    pipe = load(f"{toy_checkpoint}?config=toyworld/sd-small", device="cpu", cache=None)  # the model-id form
    assert pipe.workbench_model_id == f"{toy_checkpoint}?config=toyworld/sd-small"
    assert type(pipe) is type(folder_pipe) and type(pipe.scheduler) is type(folder_pipe.scheduler)
    assert pipe.scheduler.config == folder_pipe.scheduler.config
    assert same_weights(pipe, folder_pipe)
    assert np.array_equal(image(pipe), base_image)


def test_a_ckpt_file_and_a_config_folder_load_too(tmp_path):
    folder_pipe = load("toyworld/sd-small", device="cpu")
    ckpt = tmp_path / "sd-small.ckpt"
    torch.save({"state_dict": ldm_state_dict(folder_pipe)}, ckpt)  # the .ckpt nesting of the original releases
    assert same_weights(load_single_file(str(ckpt), CPU, FP32, config=str(TOYWORLD_DIR / "sd-small")), folder_pipe)


def test_single_file_errors_say_what_to_pass(toy_checkpoint, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ConfigError, match=r"\?config=CONFIG"):  # offline, the SD 1.5 configs are not cached here
        load_single_file(str(toy_checkpoint), CPU, FP32)
    with pytest.raises(ConfigError, match=r"'toyworld/nope' is not a toy world pipeline.*'toyworld/sd-small'"):
        load_single_file(str(toy_checkpoint), CPU, FP32, config="toyworld/nope")
    with pytest.raises(ConfigError, match=r"does not fit.*'toyworld/sd-base'"):
        load_single_file(str(toy_checkpoint), CPU, FP32, config="toyworld/sd-base")
    with pytest.raises(ConfigError, match=r"'\./no/such/folder' is neither a folder here nor a hub id"):
        load_single_file(str(toy_checkpoint), CPU, FP32, config="./no/such/folder")
    with pytest.raises(UnknownModelError, match="no such single-file checkpoint"):
        load_single_file(str(tmp_path / "missing.safetensors"), CPU, FP32, config="toyworld/sd-small")


# --- LoRA adapters ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def toy_lora(tmp_path_factory):
    """A folder with a random (non-zero) LoRA for toyworld/sd-small's UNet, saved the way diffusers saves them."""
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    folder = tmp_path_factory.mktemp("lora") / "adapter"
    unet = UNet2DConditionModel.from_pretrained(TOYWORLD_DIR / "sd-small" / "unet")
    torch.manual_seed(0)
    unet.add_adapter(LoraConfig(r=4, target_modules=["to_q", "to_k", "to_v", "to_out.0"], init_lora_weights=False))
    StableDiffusionPipeline.save_lora_weights(folder, unet_lora_layers=get_peft_model_state_dict(unet))
    return folder


def test_lora_ids_are_parsed(toy_lora):
    adapter, weights = str(toy_lora), str(toy_lora / "pytorch_lora_weights.safetensors")
    assert parse_lora_id("toyworld/sd-small") is None
    assert parse_lora_id(f"toyworld/sd-base+lora:{adapter}@0.8") == ("toyworld/sd-base", [(adapter, 0.8)])
    assert parse_lora_id(f"x.safetensors?config=toyworld/sd-small+lora:{adapter}+lora:{weights}@-1e-1") == (
        "x.safetensors?config=toyworld/sd-small",
        [(adapter, 1.0), (weights, -0.1)],
    )
    bad = {
        f"+lora:{adapter}": "no base model",
        "toyworld/sd-small+lora:": "empty path",
        "toyworld/sd-small+lora:@0.5": "empty path",
        "toyworld/sd-small+lora:/no/such/adapter": r"'/no/such/adapter'.*neither a file nor a folder",
        f"toyworld/sd-small+lora:{adapter}@strong": "'strong'.*not a number",
        f"toyworld/sd-small+lora:{adapter}@nan": "'nan'.*not a number",
    }
    for model_id, message in bad.items():
        with pytest.raises(ConfigError, match=message) as error:
            parse_lora_id(model_id)
        assert "BASE+lora:PATH[@SCALE]" in str(error.value)


def test_a_lora_changes_images_by_its_scale_and_leaves_the_cached_base_alone(toy_lora, base_image):
    base = load("toyworld/sd-small", device="cpu")
    before = {k: v.clone() for k, v in base.unet.state_dict().items()}

    def with_lora(scale: float):  # the model-id form, through the model cache
        return load(f"toyworld/sd-small+lora:{toy_lora}@{scale}", device="cpu")

    fused = with_lora(1.0)
    assert fused.unet.state_dict().keys() == before.keys()  # fused, no LoRA layers left
    assert not np.array_equal(image(fused), base_image)
    assert with_lora(1.0) is fused  # the same id is the same cached pipeline
    assert np.array_equal(image(load(f"toyworld/sd-small+lora:{toy_lora}@1.0", device="cpu", cache=None)), image(fused))
    assert np.array_equal(image(with_lora(0)), base_image)

    assert load("toyworld/sd-small", device="cpu") is base
    assert all(torch.equal(v, before[k]) for k, v in base.unet.state_dict().items())


def test_a_lora_for_another_architecture_is_refused(toy_lora):
    pipe = build_architecture("tiny")
    with pytest.raises(ConfigError, match=str(toy_lora)):
        apply_loras(pipe, [(str(toy_lora), 1.0)])
