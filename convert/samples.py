"""Images for the parity and int8 gates: the training run's held-out samples, or generated stand-ins.

Sample files are decoded by the serving function's own decoder (`function.inference.images`: JPEG draft mode, EXIF
orientation, alpha on white, 16-bit range), so the gates judge exactly the pixels the function will classify.
That module imports only numpy and Pillow; the dependency points this way only, never from function to convert.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from convert.errors import InvalidInput
from function.inference import images as function_images

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff"}
GENERATED_IMAGES = 32
# Samples are the team's own files, not uploads: no pixel limit, so none is skipped for its size.
NO_PIXEL_LIMIT = sys.maxsize


@dataclass(frozen=True)
class CheckImages:
    """The uint8 [N, H, W, 3] images the gates run on, and where they came from (for the check_images tag).
    `labels` are class indices when the samples lie in one folder per class (as a photo set and the demo's run
    are laid out), else None."""

    pixels: np.ndarray
    origin: str
    labels: np.ndarray | None = None


def check_images(folder: Path | None, size: tuple[int, int], class_names: list[str] = ()) -> CheckImages:
    """The sample images below `folder` if it has any, else generated stand-ins, at (height, width)."""
    files = image_files(folder) if folder else []
    if files:
        return CheckImages(
            load(files, size), f"{len(files)} sample images", labels(folder, files, class_names)
        )
    return CheckImages(generated(GENERATED_IMAGES, size), f"{GENERATED_IMAGES} generated images")


def labels(folder: Path, files: list[Path], class_names: list[str]) -> np.ndarray | None:
    """Each file's class from the folder it lies in (`samples/black_sea_sprat/0033.jpg` is 'Black Sea Sprat'),
    or None unless every file lies in a folder named after a class."""
    index = {_folded(name): i for i, name in enumerate(class_names)}
    found = []
    for path in files:
        parts = path.relative_to(folder).parts
        label = index.get(_folded(parts[0])) if len(parts) == 2 else None
        if label is None:
            return None
        found.append(label)
    return np.array(found)


def _folded(name: str) -> str:
    """Names compared without case, spaces or punctuation: folders are often slugs of class names."""
    return re.sub(r"[^0-9a-z]+", "", name.lower())


def image_files(folder: Path) -> list[Path]:
    """Every image below a folder, in a stable order."""
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)


def load(paths: list[Path], size: tuple[int, int]) -> np.ndarray:
    """Decode and resize to (height, width) with the serving function's decoder: uint8 [N, H, W, 3]."""
    height, width = size
    batch = np.empty((len(paths), height, width, 3), dtype=np.uint8)
    for i, path in enumerate(paths):
        try:
            batch[i] = function_images.decode(path.read_bytes(), size, NO_PIXEL_LIMIT)
        except function_images.ImageRejected as exc:
            raise InvalidInput(f"sample image {path}: {exc}") from exc
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
