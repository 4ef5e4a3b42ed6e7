"""images.decode over hostile bytes: valid small JPEG, PNG, GIF, WebP, TIFF and BMP files made here with Pillow,
then damaged (bytes flipped, cut short, inserted, chunks duplicated, header sizes rewritten). Whatever comes in,
the decoder answers an RGB array at the model's size or one of the project's own image errors, within a bound;
a header claiming more pixels than MAX_IMAGE_PIXELS is refused before a pixel is decoded.

FUZZ_EXAMPLES sets the number of damaged files per test (`task fuzz` runs 500); runs are derandomized and keep no
example database, so a CI failure is the same failure on a laptop."""

from __future__ import annotations

import functools
import io
import os
import struct
import threading
import zlib
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from function.inference import images
from function.settings import Settings
from tests import tiny_onnx

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "200"))
SIZE = (tiny_onnx.SIZE, tiny_onnx.SIZE)  # the model's, as the service calls the decoder
MAX_PIXELS = Settings().max_pixels  # MAX_IMAGE_PIXELS's default
# A damaged file of a few KB decodes in milliseconds; even one claiming MAX_PIXELS does in a few seconds.
BOUND_S = 20.0
OWN_ERRORS = (images.UnsupportedImage, images.CorruptImage, images.ImageTooLarge)
FUZZ = settings(
    max_examples=EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,  # the bound is decode_bounded's, in wall time, not Hypothesis' per-example deadline
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


@functools.cache
def seeds() -> dict[str, tuple[str, bytes]]:
    """Name -> (format, a valid small file): the formats' common variants, noisy so the coders do real work."""
    rng = np.random.default_rng(12)
    noise = Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8))
    alpha = Image.fromarray(rng.integers(0, 256, (24, 32, 4), dtype=np.uint8), "RGBA")
    deep = Image.fromarray(rng.integers(0, 65536, (24, 32), dtype=np.uint16))
    exif = Image.Exif()
    exif[0x0112] = 6
    frames = [noise.convert("P", palette=Image.Palette.ADAPTIVE), noise.rotate(90).convert("P")]
    return {
        "jpeg": ("JPEG", encode(noise, "JPEG", quality=80)),
        "jpeg progressive exif": ("JPEG", encode(noise, "JPEG", progressive=True, exif=exif)),
        "jpeg cmyk": ("JPEG", encode(noise.convert("CMYK"), "JPEG")),
        "png": ("PNG", encode(noise, "PNG")),
        "png rgba": ("PNG", encode(alpha, "PNG")),
        "png 16-bit": ("PNG", encode(deep, "PNG")),
        "png palette": ("PNG", encode(frames[0], "PNG", transparency=0)),
        "gif animated": ("GIF", encode(frames[0], "GIF", save_all=True, append_images=frames[1:])),
        "webp lossy": ("WEBP", encode(noise, "WEBP", quality=70)),
        "webp lossless": ("WEBP", encode(alpha, "WEBP", lossless=True)),
        "webp exif": ("WEBP", encode(noise, "WEBP", exif=exif)),
        "tiff": ("TIFF", encode(noise, "TIFF")),
        "tiff lzw": ("TIFF", encode(alpha, "TIFF", compression="tiff_lzw")),
        "tiff deflate 16-bit": ("TIFF", encode(deep, "TIFF", compression="tiff_adobe_deflate")),
        "bmp": ("BMP", encode(noise, "BMP")),
        "bmp palette": ("BMP", encode(frames[0], "BMP")),
    }


# Where each format keeps its width and height: (offset, byte count, byte order) of each field.
def png_size_fields(data: bytes) -> list[tuple[int, int, str]]:
    return [(16, 4, ">"), (20, 4, ">")]


def gif_size_fields(data: bytes) -> list[tuple[int, int, str]]:
    fields = [(6, 2, "<"), (8, 2, "<")]  # the logical screen
    descriptor = data.find(b"\x2c\x00\x00\x00\x00")  # the first frame's, at (0, 0) as Pillow writes it
    if descriptor > 0:
        fields += [(descriptor + 5, 2, "<"), (descriptor + 7, 2, "<")]
    return fields


def bmp_size_fields(data: bytes) -> list[tuple[int, int, str]]:
    return [(18, 4, "<"), (22, 4, "<")]


def jpeg_size_fields(data: bytes) -> list[tuple[int, int, str]]:
    for marker in (b"\xff\xc0", b"\xff\xc1", b"\xff\xc2"):
        start = data.find(marker)
        if start > 0:
            return [(start + 5, 2, ">"), (start + 7, 2, ">")]
    return []


def webp_size_fields(data: bytes) -> list[tuple[int, int, str]]:
    fields = []
    if (vp8x := data.find(b"VP8X")) > 0:  # the canvas, 24 bits each (minus one)
        fields += [(vp8x + 12, 3, "<"), (vp8x + 15, 3, "<")]
    if (keyframe := data.find(b"\x9d\x01\x2a")) > 0:  # lossy: 14 bits each, 2 bits of scale
        fields += [(keyframe + 3, 2, "<"), (keyframe + 5, 2, "<")]
    if (vp8l := data.find(b"VP8L")) > 0:  # lossless: 14 + 14 bits after the signature byte
        fields += [(vp8l + 9, 4, "<")]
    return fields


def tiff_size_fields(data: bytes) -> list[tuple[int, int, str]]:
    order = "<" if data[:2] == b"II" else ">"
    (ifd,) = struct.unpack_from(order + "I", data, 4)
    (count,) = struct.unpack_from(order + "H", data, ifd)
    fields = []
    for entry in range(ifd + 2, ifd + 2 + 12 * count, 12):
        tag, kind = struct.unpack_from(order + "HH", data, entry)
        if tag in (256, 257):  # ImageWidth, ImageLength: SHORT or LONG, kept in the entry itself
            fields.append((entry + 8, 2 if kind == 3 else 4, order))
    return fields


SIZE_FIELDS: dict[str, Callable[[bytes], list[tuple[int, int, str]]]] = {
    "PNG": png_size_fields,
    "GIF": gif_size_fields,
    "BMP": bmp_size_fields,
    "JPEG": jpeg_size_fields,
    "WEBP": webp_size_fields,
    "TIFF": tiff_size_fields,
}


def write_field(data: bytes, fmt: str, field: tuple[int, int, str], value: int) -> bytes:
    offset, width, order = field
    raw = (value % (1 << (8 * width))).to_bytes(width, "little" if order == "<" else "big")
    data = data[:offset] + raw + data[offset + width :]
    return fix_png_crcs(data) if fmt == "PNG" else data


def png_chunks(data: bytes) -> list[tuple[int, int]]:
    """(start, end) of each chunk of a PNG, length, type, data and CRC; stops at the first that does not fit."""
    chunks, at = [], 8
    while at + 12 <= len(data):
        (length,) = struct.unpack_from(">I", data, at)
        end = at + 12 + length
        if end > len(data):
            break
        chunks.append((at, end))
        at = end
    return chunks


def fix_png_crcs(data: bytes) -> bytes:
    """Every chunk's CRC made right again, so that a rewritten field gets past the CRC check to the decoder."""
    out = bytearray(data)
    for start, end in png_chunks(data):
        out[end - 4 : end] = struct.pack(">I", zlib.crc32(out[start + 4 : end - 4]))
    return bytes(out)


# The mutations: each draws what it needs and returns the damaged bytes.
def flip(draw, fmt: str, data: bytes) -> bytes:
    at = draw(st.integers(0, len(data) - 1))
    return data[:at] + bytes([data[at] ^ draw(st.integers(1, 255))]) + data[at + 1 :]


def truncate(draw, fmt: str, data: bytes) -> bytes:
    return data[: draw(st.integers(0, len(data) - 1))]


def insert(draw, fmt: str, data: bytes) -> bytes:
    at = draw(st.integers(0, len(data)))
    return data[:at] + draw(st.binary(min_size=1, max_size=64)) + data[at:]


def duplicate(draw, fmt: str, data: bytes) -> bytes:
    """A slice repeated elsewhere; for PNG, a whole chunk (its CRC still right) repeated up to a hundred times."""
    chunks = png_chunks(data) if fmt == "PNG" else []
    if chunks and draw(st.booleans()):
        start, end = draw(st.sampled_from(chunks))
        times = draw(st.sampled_from([1, 2, 100]))
        return data[:end] + data[start:end] * times + data[end:]
    start = draw(st.integers(0, len(data) - 1))
    end = draw(st.integers(start + 1, min(len(data), start + 512)))
    at = draw(st.integers(0, len(data)))
    return data[:at] + data[start:end] + data[at:]


SIZE_VALUES = st.sampled_from([0, 1, 2, 255, 256, 0x7FFF, 0x8000, 0xFFFF, 0x10000, 0x7FFFFFFF, 0xFFFFFFFF])


def corrupt_header(draw, fmt: str, data: bytes) -> bytes:
    """A width or height in the header rewritten: zero, one, huge, negative when signed, or any value."""
    try:  # earlier mutations may have damaged the structure the fields are found by
        fields = [field for field in SIZE_FIELDS[fmt](data) if field[0] + field[1] <= len(data)]
    except struct.error:
        fields = []
    if not fields:
        return flip(draw, fmt, data)
    field = draw(st.sampled_from(fields))
    return write_field(data, fmt, field, draw(SIZE_VALUES | st.integers(0, 2**32 - 1)))


MUTATIONS = [flip, truncate, insert, duplicate, corrupt_header]


@st.composite
def damaged_images(draw) -> tuple[str, bytes]:
    name = draw(st.sampled_from(sorted(seeds())))
    fmt, data = seeds()[name]
    applied = []
    for _ in range(draw(st.integers(1, 4))):
        mutation = draw(st.sampled_from(MUTATIONS))
        data = mutation(draw, fmt, data) or b"\x00"
        applied.append(mutation.__name__)
    return f"{name}: {', '.join(applied)}", data


def decode_bounded(data: bytes, max_pixels: int = MAX_PIXELS) -> np.ndarray | BaseException:
    """images.decode as the service calls it, on a thread of its own: its array, or what it raised. Fails the
    test if it has not finished within BOUND_S."""
    outcome: list = []

    def run() -> None:
        try:
            outcome.append(images.decode(data, SIZE, max_pixels))
        except BaseException as exc:  # what escapes is the finding
            outcome.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(BOUND_S)
    assert outcome, f"decoding {len(data)} bytes took more than {BOUND_S} s"
    return outcome[0]


def assert_decoded_or_refused(outcome: np.ndarray | BaseException) -> None:
    if isinstance(outcome, BaseException):
        assert type(outcome) in OWN_ERRORS, f"{type(outcome).__name__} escaped: {outcome!r}"
        assert str(outcome) and "Traceback" not in str(outcome) and "/" not in str(outcome).split("(")[0]
    else:
        assert outcome.shape == (*SIZE, 3) and outcome.dtype == np.uint8


@pytest.mark.parametrize("name", sorted(seeds()))
def test_every_seed_decodes(name):
    """The mutations start from files the decoder reads, so what breaks is the damage."""
    assert isinstance(decode_bounded(seeds()[name][1]), np.ndarray)


@FUZZ
@given(damaged_images())
def test_damaged_images_raise_only_the_projects_image_errors(damaged):
    name, data = damaged
    outcome = decode_bounded(data)
    assert_decoded_or_refused(outcome)
    if images.claimed_format(data) == images.claimed_format(seeds()[name.split(":")[0]][1]):
        # Still starts as its format does: damaged, not a foreign format (422, not 415)
        assert not isinstance(outcome, images.UnsupportedImage), outcome


@FUZZ
@given(st.binary(max_size=2048))
def test_arbitrary_bytes_raise_only_the_projects_image_errors(data):
    assert_decoded_or_refused(decode_bounded(data))


@pytest.fixture
def decoded(monkeypatch) -> list:
    """Records every image the decoder goes on to convert: a bomb must be refused before that."""
    calls: list = []
    convert = images._to_rgb
    monkeypatch.setattr(
        images, "_to_rgb", lambda image, size: calls.append(image.size) or convert(image, size)
    )
    return calls


def claimed_size(fmt: str, field: tuple[int, int, str]) -> int:
    """16000 pixels a side, as the field says it: WebP lossless packs width and height (minus one) in one field."""
    if fmt == "WEBP" and field[1] == 4:
        return 15999 | 15999 << 14 | 1 << 28  # and the alpha bit
    return 15999 if fmt == "WEBP" and field[1] == 3 else 16000


@pytest.mark.parametrize("name", sorted(seeds()))
def test_a_header_claiming_a_bomb_is_refused_by_the_pixel_limit_before_decoding(name, decoded):
    """Every size field of the header says 16000: a file of a few KB that claims 256 megapixels."""
    fmt, data = seeds()[name]
    fields = SIZE_FIELDS[fmt](data)
    assert fields, f"no size field found in {name}"
    for field in fields:
        data = write_field(data, fmt, field, claimed_size(fmt, field))
    outcome = decode_bounded(data)
    assert isinstance(outcome, images.ImageTooLarge), f"{name}: {getattr(outcome, 'shape', outcome)!r}"
    assert not decoded


@pytest.mark.parametrize("fmt", ["PNG", "GIF", "TIFF", "WEBP"])
def test_a_real_decompression_bomb_is_refused_by_the_pixel_limit(fmt, decoded):
    """Valid files whose pixels compress to almost nothing: decoded, each would hold more than MAX_IMAGE_PIXELS."""
    side = 2048
    bomb = encode(
        Image.new("L" if fmt != "WEBP" else "RGB", (side, side)),
        fmt,
        **{"WEBP": {"lossless": True}, "TIFF": {"compression": "tiff_adobe_deflate"}}.get(fmt, {}),
    )
    assert len(bomb) < side * side // 50
    outcome = decode_bounded(bomb, max_pixels=side * side - 1)
    assert isinstance(outcome, images.ImageTooLarge) and "more than the limit" in str(outcome)
    assert not decoded
