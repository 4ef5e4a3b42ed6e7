"""Images for the parity and int8 gates: the training run's held-out samples, or generated stand-ins."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


def image_files(folder: Path) -> list[Path]:
    """Every image below a folder, in a stable order."""
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)


def load(paths: list[Path], size: tuple[int, int]) -> np.ndarray:
    """Decode to RGB and resize to (height, width) the way the serving function does: uint8 [N, H, W, 3]."""
    height, width = size
    batch = np.empty((len(paths), height, width, 3), dtype=np.uint8)
    for i, path in enumerate(paths):
        with Image.open(path) as image:
            rgb = ImageOps.exif_transpose(image).convert("RGB")
            batch[i] = np.asarray(rgb.resize((width, height), Image.Resampling.BILINEAR))
    return batch


def generated(count: int, size: tuple[int, int], seed: int = 0) -> np.ndarray:
    """Stand-in images when a run has no samples: smooth colour fields with noise, not just white noise,
    so that the model's activations cover a realistic range."""
    height, width = size
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    batch = np.empty((count, height, width, 3), dtype=np.uint8)
    for i in range(count):
        fx, fy = rng.uniform(0.5, 6.0, 2) * (2 * np.pi)
        phase = rng.uniform(0, 2 * np.pi, 3)
        base = rng.uniform(40, 215, 3)
        channels = [base[c] + 60 * np.sin(fx * xs / width + fy * ys / height + phase[c]) for c in range(3)]
        image = np.stack(channels, axis=-1) + rng.normal(0, 12, (height, width, 3))
        batch[i] = np.clip(image, 0, 255).astype(np.uint8)
    return batch


def split(images: np.ndarray, every: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint calibration and evaluation sets for int8: every `every`-th image calibrates, the rest judge."""
    mask = np.zeros(len(images), dtype=bool)
    mask[::every] = True
    return images[mask], images[~mask]
