"""images.decode: every common mode to RGB, orientation, first frame, limits, and clear refusals."""

from __future__ import annotations

import io
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image, features

from function.inference import images

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


# HEIC/HEIF (iPhone photos): pillow-heif, registered with Pillow on the first HEIF file only.
def heic(image: Image.Image, **options) -> bytes:
    pillow_heif = pytest.importorskip("pillow_heif")
    pillow_heif.register_heif_opener()  # the test writes HEIF; the decoder registers on its own
    return encode(image, "HEIF", quality=90, **options)


def test_heic_decodes_to_the_same_colour_as_the_jpeg():
    photo = Image.new("RGB", (64, 48), (200, 30, 30))
    data = heic(photo)
    assert images.looks_like_heif(data) and not images.looks_like_heif(encode(photo, "JPEG"))
    from_heic, from_jpeg = decode(data), decode(encode(photo, "JPEG"))
    assert from_heic.shape == (16, 16, 3) and from_heic.dtype == np.uint8
    assert np.abs(from_heic.astype(int) - from_jpeg.astype(int)).mean() < 4


def test_heic_rotation_is_applied():
    # As an iPhone writes it: the EXIF orientation becomes the file's rotation box (irot), which the decoder
    # applies; the EXIF tag itself is reset, so it is not applied twice.
    image = Image.new("RGB", (40, 20), (0, 0, 0))
    image.paste((255, 255, 255), (20, 0, 40, 20))  # right half white
    exif = Image.Exif()
    exif[0x0112] = 6
    pixels = decode(heic(image, exif=exif.tobytes()))
    assert pixels[:6].mean() < 40 and pixels[10:].mean() > 215


def test_heic_embedded_thumbnail_serves_a_small_model():
    photo = Image.new("RGB", (2000, 1500), (10, 120, 200))
    pixels = decode(heic(photo, thumbnails=[320]))
    assert abs(int(pixels[..., 2].mean()) - 200) <= 4 and int(pixels[..., 0].mean()) < 30


def test_heic_over_the_pixel_limit_is_refused_before_decoding():
    with pytest.raises(images.ImageTooLarge, match="more than the limit"):
        decode(heic(Image.new("RGB", (1000, 1000))), max_pixels=999_999)


@pytest.mark.parametrize("cut", ["half", "header only", "garbage after ftyp"])
def test_corrupt_heic_is_corrupt_not_unsupported(cut):
    noisy = Image.fromarray(np.random.default_rng(0).integers(0, 255, (200, 200, 3), dtype=np.uint8))
    data = heic(noisy)
    damaged = {
        "half": data[: len(data) // 2],
        "header only": data[:40],
        "garbage after ftyp": data[:28] + bytes(500),
    }[cut]
    with pytest.raises(images.CorruptImage, match="HEIF file is truncated or corrupt"):
        decode(damaged)


def test_heic_without_pillow_heif_is_unsupported_with_a_reason(monkeypatch):
    data = heic(Image.new("RGB", (20, 20), (200, 30, 30)))
    monkeypatch.setattr(images, "_heif_registered", False)
    monkeypatch.setitem(sys.modules, "pillow_heif", None)  # as if not installed
    with pytest.raises(images.UnsupportedImage, match="pillow-heif"):
        decode(data)


def test_avif_decodes_with_pillow_alone():
    if not features.check("avif"):
        pytest.skip("this Pillow has no AVIF support")
    r, g, b = decode(encode(Image.new("RGB", (40, 30), (200, 30, 30)), "AVIF")).reshape(-1, 3).mean(axis=0)
    assert r > 150 and g < 80 and b < 80, (r, g, b)


def test_pillow_heif_is_imported_on_the_first_heif_file_not_at_start():
    data = heic(Image.new("RGB", (16, 16), (0, 0, 255)))
    script = """
import sys
import function.app, function.inference.images as images
images.warm_up((8, 8))
before = "pillow_heif" in sys.modules
images.decode(sys.stdin.buffer.read(), (8, 8), 10_000)
print(before, "pillow_heif" in sys.modules)
"""
    done = subprocess.run([sys.executable, "-c", script], input=data, capture_output=True, check=True)
    assert done.stdout.split() == [b"False", b"True"], done.stderr


@pytest.fixture(scope="module")
def tiny_app(tmp_path_factory):
    from litestar.testing import TestClient

    from function.app import create_app
    from function.settings import Settings
    from tests import tiny_onnx
    from tests.readiness import wait_healthy

    model = tiny_onnx.build(tmp_path_factory.mktemp("model") / "tiny.onnx")
    with TestClient(create_app(Settings.from_env({"MODEL_URI": str(model)}))) as client:
        wait_healthy(client)
        yield client


@pytest.mark.parametrize(("colour", "expected"), [((200, 30, 30), "red"), ((20, 30, 220), "blue")])
def test_an_uploaded_heic_is_classified(tiny_app, colour, expected):
    data = heic(Image.new("RGB", (64, 48), colour))
    response = tiny_app.post("/predict", files={"file": ("IMG_0001.HEIC", data, "image/heic")})
    assert response.status_code == 200, response.text
    assert response.json()["class"] == expected


def test_an_uploaded_corrupt_heic_is_422(tiny_app):
    data = heic(Image.new("RGB", (64, 48), (200, 30, 30)))
    response = tiny_app.post("/predict", files={"file": ("IMG_0002.HEIC", data[:60], "image/heic")})
    assert response.status_code == 422, response.text
    assert "HEIF" in response.json()["detail"]
