"""Train the judge's reader (``toyworld.reader``) on renders only: never on generated images.

    python -m workbench.toyworld.train_reader --out workbench/toyworld/weights/reader [--seed 0]

Each training image is a scene drawn at random, rendered either by the scene renderer (a quarter) or by
``varied_render``, which varies what an independent artist (or a generator) might: the shape's proportions,
rotation and wobble, soft edges, the light's direction and strength, the shadow, the stroke's width, colours
off their palette values (any hue nearer the name's than another's), a plain fill's faint shade, and uneven
backgrounds off their palette values. Most images then go through
``degrade`` at wider limits than the issue's (``TRAINING_LIMITS``). The calibration set (its own seed) sets a
temperature per attribute, so that a reading's probability means what it says, and the held-out figures
written into ``config.json`` come from a third seed. Everything is seeded; torch runs on the CPU.
"""

from __future__ import annotations

import argparse
import colorsys
import functools
import itertools
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFilter

from workbench.toyworld import scenes
from workbench.toyworld.degrade import LIMITS, degrade
from workbench.toyworld.reader import READER_DIR, Reader, ReaderNet, save_reader, to_tensor

__all__ = ["THRESHOLD", "TRAINING_LIMITS", "train_reader", "training_images", "varied_render"]

TRAINING_LIMITS = {"rotation_deg": 8.0, "scale": 0.12, "blur_sigma": 1.4, "drift": 28.0, "noise_sigma": 11.0,
                   "jpeg": (55, 95)}  # fmt: skip
THRESHOLD = 0.8  # a reading whose calibrated probability is below this is unsure
_K = 4  # supersampling


def _outline(shape: str, rng: np.random.Generator) -> np.ndarray:
    """The shape's outline at radius 1 about the origin, with its proportions varied (a closed polygon)."""
    if shape == "circle":
        t = np.linspace(0, 2 * np.pi, 64, endpoint=False)
        return np.stack([np.cos(t), np.sin(t)], axis=1)
    if shape == "square":  # a superellipse: from slightly rounded corners to sharp ones
        t = np.linspace(0, 2 * np.pi, 64, endpoint=False)
        p, s = rng.uniform(5, 16), rng.uniform(0.76, 0.92)
        c, d = np.cos(t), np.sin(t)
        return s * np.stack([np.sign(c) * np.abs(c) ** (2 / p), np.sign(d) * np.abs(d) ** (2 / p)], axis=1)
    if shape == "triangle":
        apex, base, half = rng.uniform(0.9, 1.05), rng.uniform(0.7, 0.9), rng.uniform(0.85, 1.05)
        return np.array([[0, -apex], [half, base], [-half, base]])
    a, b = rng.uniform(0.85, 1.0), rng.uniform(0.26, 0.42)  # cross: arm length, half width
    return np.array([[-b, -a], [b, -a], [b, -b], [a, -b], [a, b], [b, b], [b, a], [-b, a], [-b, b], [-a, b],
                     [-a, -b], [-b, -b]])  # fmt: skip


def _wobble(points: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Points along the outline (densified) moved in and out by a few smooth waves: a shape off its template."""
    closed = np.vstack([points, points[:1]])
    dense = np.concatenate([np.linspace(a, b, 8, endpoint=False) for a, b in itertools.pairwise(closed)])
    angle = np.arctan2(dense[:, 1], dense[:, 0])
    radial = np.zeros(len(dense))
    for frequency in rng.integers(2, 9, size=3):
        radial += rng.uniform(0, 0.025) * np.sin(frequency * angle + rng.uniform(0, 2 * np.pi))
    return dense * (1 + radial)[:, None]


_HUES = {name: colorsys.rgb_to_hsv(*(np.array(rgb) / 255.0))[0] for name, rgb in scenes.COLOURS.items()}


def _colour(name: str, rng: np.random.Generator) -> np.ndarray:
    """A colour called ``name``: half the time the palette's, varied in brightness and per channel; else any
    colour whose hue is nearer ``name``'s than any other name's (within 80% of the way to the halfway hue),
    saturated and bright enough to be called a colour at all."""
    if rng.random() < 0.5:
        return np.array(scenes.COLOURS[name]) * rng.uniform(0.85, 1.1) + rng.uniform(-18, 18, 3)
    hue = _HUES[name]
    gaps = [((other - hue + 0.5) % 1.0) - 0.5 for other in _HUES.values() if other != hue]  # signed, in turns
    below, above = max(g for g in gaps if g < 0), min(g for g in gaps if g > 0)
    drawn = (hue + rng.uniform(0.8 * below / 2, 0.8 * above / 2)) % 1.0
    return 255 * np.array(colorsys.hsv_to_rgb(drawn, rng.uniform(0.6, 1.0), rng.uniform(0.7, 1.0)))


def varied_render(scene: scenes.Scene, rng: np.random.Generator) -> Image.Image:
    """``scene`` drawn with its geometry, light, stroke and colours varied about the scene renderer's."""
    size = scenes.IMAGE_SIZE * _K
    colour = _colour(scene.colour, rng)
    background = np.array(scenes.BACKGROUNDS[scene.background], dtype=np.float64) + rng.uniform(-15, 15, 3)
    cx, cy = np.array(scenes.POSITIONS[scene.position]) + rng.uniform(-2, 2, 2)
    r = scenes.SIZES[scene.size] + rng.uniform(-1.2, 1.2)
    angle = np.deg2rad(rng.uniform(-12, 12))
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    points = _wobble(_outline(scene.shape, rng), rng) * rng.uniform(0.9, 1.1, 2) @ rotation.T
    polygon = [tuple(p) for p in (points * r + [cx, cy]) * _K]

    mask = Image.new("L", (size, size), 0)
    if scene.style == "sketch":
        ImageDraw.Draw(mask).polygon(polygon, outline=255, width=max(1, round(rng.uniform(1.1, 2.2) * _K)))
    else:
        ImageDraw.Draw(mask).polygon(polygon, fill=255)
    mask = mask.filter(ImageFilter.GaussianBlur(rng.uniform(0, 0.7) * _K))
    alpha = np.asarray(mask, dtype=np.float64)[..., None] / 255.0

    ys, xs = (np.mgrid[0:size, 0:size].astype(np.float64) + 0.5) / _K
    tilt = rng.uniform(0, 12) * np.array([np.cos(a := rng.uniform(0, 2 * np.pi)), np.sin(a)])
    canvas = background + (((xs - 16) * tilt[0] + (ys - 16) * tilt[1]) / 16)[..., None]
    fill = np.broadcast_to(colour, canvas.shape).astype(np.float64)
    if scene.style == "photo":
        light = np.deg2rad(45 + rng.uniform(-25, 25))  # the direction the light falls: towards the bottom right
        dx, dy = np.cos(light), np.sin(light)
        offset = rng.uniform(1.5, 3.5) * _K
        shadow = mask.transform(mask.size, Image.AFFINE, (1, 0, -offset * dx, 0, 1, -offset * dy))
        shadow = np.asarray(shadow.filter(ImageFilter.GaussianBlur(rng.uniform(1.0, 2.0) * _K)), dtype=np.float64)
        canvas *= 1.0 - rng.uniform(0.35, 0.7) * shadow[..., None] / 255.0
        shading = rng.uniform(0.92, 1.05) - rng.uniform(0.15, 0.3) * ((xs - cx) * dx + (ys - cy) * dy) / r
        fill = fill * np.clip(shading, 0.6, 1.3)[..., None]
    elif scene.style == "plain" and rng.random() < 0.5:  # a flat fill, give or take a shade no eye calls light
        a = rng.uniform(0, 2 * np.pi)
        fill = fill * (1 - rng.uniform(0, 0.06) * ((xs - cx) * np.cos(a) + (ys - cy) * np.sin(a)) / r)[..., None]
    fill = fill + rng.uniform(0, 0.15) * (background - fill)  # washed towards the background
    canvas = np.clip(canvas * (1 - alpha) + fill * alpha, 0, 255)
    image = Image.fromarray(canvas.round().astype(np.uint8))
    return image.resize((scenes.IMAGE_SIZE, scenes.IMAGE_SIZE), Image.Resampling.BOX)


def _training_image(scene: scenes.Scene, rng: np.random.Generator, limits: dict) -> Image.Image:
    image = scenes.render(scene, rng) if rng.random() < 0.25 else varied_render(scene, rng)
    return degrade(image, rng, limits) if rng.random() < 0.85 else image


def _chunk(arguments: tuple[int, int, str]) -> tuple[np.ndarray, np.ndarray]:
    count, seed, kind = arguments
    rng = np.random.default_rng(seed)
    drawn = scenes.sample_scenes(count, seed=seed)
    if kind == "train":
        images = [_training_image(scene, rng, TRAINING_LIMITS) for scene in drawn]
    else:  # held out: the scene renderer's images at the limits, and varied ones at the training limits
        images = [degrade(scenes.render(s, rng), rng, LIMITS) if i % 2 else _training_image(s, rng, TRAINING_LIMITS)
                  for i, s in enumerate(drawn)]  # fmt: skip
    labels = np.array(
        [[scenes.VALUES[a].index(getattr(s, a)) for a in scenes.ATTRIBUTES] for s in drawn], dtype=np.int64
    )
    return np.stack([np.asarray(image, dtype=np.uint8) for image in images]), labels


def training_images(count: int, seed: int, kind: str = "train", workers: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """``count`` images (N x 32 x 32 x 3 uint8) and their labels (N x attributes, indices into ``scenes.VALUES``)."""
    chunks = [(min(2000, count - start), seed * 1_000_003 + start, kind) for start in range(0, count, 2000)]
    with ProcessPoolExecutor(workers) as pool:
        parts = list(pool.map(_chunk, chunks))
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def _logits(net: ReaderNet, pixels: np.ndarray) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        parts = [net(to_tensor(pixels[i : i + 1024])) for i in range(0, len(pixels), 1024)]
    return {name: torch.cat([p[name] for p in parts]) for name in scenes.VALUES}


def _temperature(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The temperature that minimises the negative log-likelihood of ``labels`` (a held-out set)."""
    log_t = torch.zeros(1, requires_grad=True)
    optimiser = torch.optim.LBFGS([log_t], lr=0.1, max_iter=200)

    def loss() -> torch.Tensor:
        optimiser.zero_grad()
        value = torch.nn.functional.cross_entropy(logits / log_t.exp(), labels)
        value.backward()
        return value

    optimiser.step(loss)
    return float(log_t.detach().exp())


def held_out_figures(reader: Reader, pixels: np.ndarray, labels: np.ndarray) -> dict[str, dict[str, float]]:
    """Per attribute on a labelled set: accuracy, the share unsure, and accuracy where sure."""
    readings = reader.read(pixels)
    figures = {}
    for j, name in enumerate(scenes.ATTRIBUTES):
        right = np.array([r[name][0] == scenes.VALUES[name][t] for r, t in zip(readings, labels[:, j], strict=True)])
        sure = np.array([r[name][1] >= reader.threshold for r in readings])
        figures[name] = {"accuracy": round(float(right.mean()), 4), "unsure": round(float(1 - sure.mean()), 4),
                         "accuracy_sure": round(float(right[sure].mean()), 4) if sure.any() else None}  # fmt: skip
    return figures


def train_reader(
    out: str | Path, *, seed: int = 0, images: int = 100_000, epochs: int = 10, width: int = 24,
    held_out: int = 10_000, workers: int = 2, threads: int = 2, log=print,
) -> Reader:  # fmt: skip
    """Train, calibrate and save a reader in ``out`` (``READER_DIR`` to replace the shipped one); returns it. See the
    module's docstring. ``threads``: torch's CPU threads while training, restored after (floats differ with
    them)."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _train(Path(out), seed, images, epochs, width, held_out, workers, log)
    finally:
        torch.set_num_threads(before)


def _train(
    out: Path, seed: int, images: int, epochs: int, width: int, held_out: int, workers: int, log
) -> Reader:  # fmt: skip
    torch.manual_seed(seed)
    started = time.perf_counter()
    pixels, labels = training_images(images, seed, "train", workers)
    calibration = training_images(held_out, seed + 1, "held_out", workers)
    test = training_images(held_out, seed + 2, "held_out", workers)
    log(f"{len(pixels)} training images in {time.perf_counter() - started:.0f} s")
    net = ReaderNet({name: len(values) for name, values in scenes.VALUES.items()}, width=width)
    optimiser = torch.optim.AdamW(net.parameters(), lr=3e-3, weight_decay=1e-4)
    batches = -(-len(pixels) // 256)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=3e-3, total_steps=epochs * batches)
    targets = torch.from_numpy(labels)
    generator = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        net.train()
        total = 0.0
        for batch in torch.randperm(len(pixels), generator=generator).split(256):
            logits = net(to_tensor(pixels[batch.numpy()]))
            loss = sum(torch.nn.functional.cross_entropy(logits[name], targets[batch, j])
                       for j, name in enumerate(scenes.VALUES))  # fmt: skip
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            total += float(loss.detach()) * len(batch)
        log(f"epoch {epoch + 1}/{epochs}: loss {total / len(pixels):.4f} ({time.perf_counter() - started:.0f} s)")
    net.eval()
    logits = _logits(net, calibration[0])
    temperatures = {name: _temperature(logits[name], torch.from_numpy(calibration[1][:, j]))
                    for j, name in enumerate(scenes.VALUES)}  # fmt: skip
    reader = Reader(net, {name: tuple(v) for name, v in scenes.VALUES.items()}, temperatures, THRESHOLD)
    figures = held_out_figures(reader, *test)
    log(f"held out: {figures}")
    card = {"seed": seed, "training_images": images, "epochs": epochs, "held_out_images": held_out,
            "training_limits": TRAINING_LIMITS, "held_out": figures,
            "command": f"python -m workbench.toyworld.train_reader --out DIR --seed {seed} --images {images} "
                       f"--epochs {epochs}", "torch": torch.__version__,
            "seconds": round(time.perf_counter() - started)}  # fmt: skip
    save_reader(reader, out, card)
    return reader


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help=f"the folder to write; {READER_DIR} replaces the shipped reader")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args(argv)
    train_reader(
        args.out, seed=args.seed, images=args.images, epochs=args.epochs, log=functools.partial(print, flush=True)
    )


if __name__ == "__main__":
    main()
