"""images.decode: every common mode to RGB, orientation, first frame, limits, and clear refusals."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from function import images

SIZE = (16, 16)


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def decode(data: bytes, max_pixels: int = 40_000_000) -> np.ndarray:
    return images.decode(data, SIZE, max_pixels)


@pytest.mark.parametrize(
    ("mode", "fmt", "colour"),
    [
        ("RGB", "JPEG", (200, 30, 30)),
        ("RGB", "PNG", (200, 30, 30)),
        ("RGB", "WEBP", (200, 30, 30)),
        ("RGB", "BMP", (200, 30, 30)),
        ("RGB", "TIFF", (200, 30, 30)),
        ("L", "PNG", 120),
        ("CMYK", "JPEG", (0, 200, 200, 0)),  # cyan+yellow ink off a red-free paper -> red
        ("P", "GIF", None),
    ],
)
def test_modes_and_formats_become_rgb(mode, fmt, colour):
    if mode == "P":
        image = Image.new("RGB", (40, 30), (200, 30, 30)).convert("P", palette=Image.Palette.ADAPTIVE)
    else:
        image = Image.new(mode, (40, 30), colour)
    pixels = decode(encode(image, fmt))
    assert pixels.shape == (16, 16, 3) and pixels.dtype == np.uint8
    if mode == "L":
        assert np.abs(pixels.astype(int) - 120).max() <= 2
    else:
        r, g, b = pixels.reshape(-1, 3).mean(axis=0)
        assert r > 150 and g < 80 and b < 80, (r, g, b)


def test_sixteen_bit_greyscale_keeps_its_range():
    deep = Image.fromarray(np.full((20, 20), 50000, dtype=np.uint16))
    pixels = decode(encode(deep, "PNG"))
    assert abs(int(pixels.mean()) - round(50000 / 65535 * 255)) <= 2


def test_transparency_is_composited_on_white():
    clear = Image.new("RGBA", (20, 20), (255, 0, 0, 0))
    assert decode(encode(clear, "PNG")).min() >= 250


def test_exif_orientation_is_applied():
    image = Image.new("RGB", (40, 20), (0, 0, 0))
    image.paste((255, 255, 255), (20, 0, 40, 20))  # right half white
    exif = Image.Exif()
    exif[0x0112] = 6  # displayed rotated 90° clockwise: the right half ends up at the bottom
    pixels = decode(encode(image, "JPEG", exif=exif))
    assert pixels[:6].mean() < 40 and pixels[10:].mean() > 215


def test_animated_gif_uses_the_first_frame():
    frames = [Image.new("RGB", (20, 20), c) for c in ((255, 0, 0), (0, 0, 255))]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:])
    r, g, b = decode(data).reshape(-1, 3).mean(axis=0)
    assert r > 200 and b < 50


def test_large_jpeg_is_decoded_in_draft_mode():
    photo = Image.new("RGB", (4000, 3000), (10, 120, 200))
    pixels = decode(encode(photo, "JPEG"))
    assert pixels.shape == (16, 16, 3) and abs(int(pixels[..., 2].mean()) - 200) <= 3


def test_too_many_pixels_is_refused_before_decoding():
    with pytest.raises(images.ImageTooLarge, match="more than the limit"):
        decode(encode(Image.new("L", (1000, 1000)), "PNG"), max_pixels=999_999)


@pytest.mark.parametrize(
    ("data", "error", "message"),
    [
        (b"", images.UnsupportedImage, "empty"),
        (b"hello, I am text", images.UnsupportedImage, "not an image"),
        (b"%PDF-1.4 not a photo", images.UnsupportedImage, "not an image"),
    ],
)
def test_non_images_are_refused_with_a_reason(data, error, message):
    with pytest.raises(error, match=message):
        decode(data)


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_truncated_images_are_corrupt(fmt):
    noisy = Image.fromarray(np.random.default_rng(0).integers(0, 255, (200, 200, 3), dtype=np.uint8))
    data = encode(noisy, fmt)
    with pytest.raises(images.CorruptImage, match="truncated or corrupt"):
        decode(data[: len(data) // 2])
