"""The judge's learned reader: a small convolutional network that names each attribute of a toy world image.

It is trained only on renders (``train_reader``: scenes drawn with varied geometry, light and strokes, then
blurred, drifted, noised and compressed), never on generated images, and shares nothing with the toy CLIP.
For each attribute it gives the most likely value and that value's probability, calibrated on held-out
degraded renders (a temperature per attribute); below ``threshold`` the reading is unsure.
"""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

__all__ = ["READER_DIR", "Reader", "ReaderNet", "load_reader", "save_reader", "to_tensor"]

READER_DIR = Path(__file__).parent / "weights" / "reader"
_BATCH = 512


class ReaderNet(nn.Module):
    """Three convolution stages (32 -> 16 -> 8 -> 4 pixels), a shared hidden layer, one head per attribute."""

    def __init__(self, heads: dict[str, int], width: int = 24, hidden: int = 128):
        super().__init__()
        self.width = width

        def stage(inputs: int, outputs: int, convolutions: int) -> list[nn.Module]:
            layers: list[nn.Module] = []
            for i in range(convolutions):
                layers += [nn.Conv2d(inputs if i == 0 else outputs, outputs, 3, padding=1, bias=False),
                           nn.BatchNorm2d(outputs), nn.ReLU()]  # fmt: skip
            return [*layers, nn.MaxPool2d(2)]

        self.features = nn.Sequential(
            *stage(3, width, 2), *stage(width, 2 * width, 2), *stage(2 * width, 2 * width, 1), nn.Flatten(),
            nn.Linear(2 * width * 16, hidden), nn.ReLU(),
        )  # fmt: skip
        self.heads = nn.ModuleDict({name: nn.Linear(hidden, count) for name, count in heads.items()})

    def forward(self, pixels: torch.Tensor) -> dict[str, torch.Tensor]:
        """Logits per attribute for a batch of N x 3 x 32 x 32 images scaled to [-0.5, 0.5]."""
        hidden = self.features(pixels)
        return {name: head(hidden) for name, head in self.heads.items()}


def to_tensor(pixels: np.ndarray) -> torch.Tensor:
    """N x 32 x 32 x 3 uint8-range pixels as the network's input."""
    return torch.from_numpy(np.ascontiguousarray(pixels, dtype=np.float32)).permute(0, 3, 1, 2) / 255.0 - 0.5


@dataclass(frozen=True)
class Reader:
    """A trained ``ReaderNet`` with its attributes' values, calibration temperatures and unsure threshold."""

    net: ReaderNet
    values: dict[str, tuple[str, ...]]
    temperatures: dict[str, float]
    threshold: float

    @torch.no_grad()
    def read(self, pixels: np.ndarray) -> list[dict[str, tuple[str, float]]]:
        """Per image of N x 32 x 32 x 3 pixels: each attribute's most likely value and its probability."""
        readings: list[dict[str, tuple[str, float]]] = [{} for _ in range(len(pixels))]
        for start in range(0, len(pixels), _BATCH):
            logits = self.net(to_tensor(pixels[start : start + _BATCH]))
            for name, values in self.values.items():
                probabilities = torch.softmax(logits[name] / self.temperatures[name], dim=1)
                best, index = probabilities.max(dim=1)
                for reading, p, i in zip(readings[start:], best.tolist(), index.tolist(), strict=False):
                    reading[name] = (values[i], p)
        return readings


def save_reader(reader: Reader, folder: str | Path, card: dict) -> None:
    """The weights (safetensors) and ``config.json``: values, temperatures, threshold, the weights' sha256 and
    ``card``'s training facts."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in reader.net.state_dict().items()}, folder / "model.safetensors")
    digest = hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()
    config = {"values": reader.values, "temperatures": reader.temperatures, "threshold": reader.threshold,
              "net_width": reader.net.width, "sha256": digest, **card}  # fmt: skip
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")


@functools.cache
def load_reader(folder: str | Path = READER_DIR) -> Reader:
    """The reader saved in ``folder`` (by default the one shipped with the package), loaded once per process."""
    from safetensors.torch import load_file

    folder = Path(folder)
    config = json.loads((folder / "config.json").read_text())
    values = {name: tuple(v) for name, v in config["values"].items()}
    net = ReaderNet({name: len(v) for name, v in values.items()}, width=config["net_width"])
    net.load_state_dict(load_file(folder / "model.safetensors"))
    return Reader(net.eval(), values, config["temperatures"], config["threshold"])
