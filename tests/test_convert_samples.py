"""The converter's check images are the pixels the function classifies: byte for byte, for the uploads where a
naive decoder differs (JPEG draft mode, alpha, greyscale, EXIF orientation)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from convert import samples
from function.inference import images

SIZE = (224, 224)  # MobileNetV2's: a 640x480 JPEG is decoded at 1/2 scale in draft mode


def photo(width: int = 640, height: int = 480, seed: int = 0) -> np.ndarray:
    """Smooth colour fields with fine noise: the detail where a half-scale decode differs from a full one."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    channels = [128 + 90 * np.sin(xs / (17 + 9 * c) + ys / (23 + 5 * c)) for c in range(3)]
    noisy = np.stack(channels, axis=-1) + rng.normal(0, 25, (height, width, 3))
    return np.clip(noisy, 0, 255).astype(np.uint8)


def jpeg_640x480() -> bytes:
    return encode(Image.fromarray(photo()), "JPEG", quality=90)


def transparent_png() -> bytes:
    rgba = np.dstack([photo(320, 240), np.tile(np.linspace(0, 255, 320, dtype=np.uint8), (240, 1))])
    rgba[:120, :, 3] = 0  # the top half fully transparent: white to the function
    return encode(Image.fromarray(rgba, "RGBA"), "PNG")


def greyscale_jpeg() -> bytes:
    return encode(Image.fromarray(photo()[..., 1], "L"), "JPEG", quality=90)


def sixteen_bit_png() -> bytes:
    deep = (photo(200, 150)[..., 0].astype(np.uint16) * 257).astype(np.uint16)
    return encode(Image.fromarray(deep), "PNG")


def exif_rotated_jpeg() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # shown rotated 90° clockwise
    return encode(Image.fromarray(photo(seed=1)), "JPEG", quality=90, exif=exif)


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("name", "make"),
    [
        ("photo.jpg", jpeg_640x480),
        ("transparent.png", transparent_png),
        ("grey.jpg", greyscale_jpeg),
        ("deep.png", sixteen_bit_png),
        ("rotated.jpg", exif_rotated_jpeg),
    ],
)
def test_sample_pixels_are_the_functions_pixels(tmp_path, name, make):
    data = make()
    (tmp_path / name).write_bytes(data)

    (checked,) = samples.load(samples.image_files(tmp_path), SIZE)

    served = images.decode(data, SIZE, max_pixels=40_000_000)
    assert checked.shape == served.shape == (*SIZE, 3) and checked.dtype == served.dtype == np.uint8
    assert served.std() > 10  # a real picture, not a flat field two decoders could not disagree on
    assert checked.tobytes() == served.tobytes(), np.abs(checked.astype(int) - served).max()
    # Both sides are the function's decoder, so also hold them to what it does that a naive decode does not
    # (draft mode, alpha on white, 16 bits scaled, EXIF applied): were it to become naive, this would fail.
    naive = np.asarray(
        Image.open(io.BytesIO(data)).convert("RGB").resize(SIZE[::-1], Image.Resampling.BILINEAR)
    )
    assert np.abs(checked.astype(int) - naive).mean() > 1, "the check images are what a naive decoder gives"
