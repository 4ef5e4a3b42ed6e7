"""Uploaded bytes -> orientation-fixed RGB uint8 array at the model's size, or a domain error saying why not."""

from __future__ import annotations

import io
import threading
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

Image.MAX_IMAGE_PIXELS = None  # the pixel limit is ours (ImageTooLarge), checked before decoding

FORMATS = "JPEG, PNG, WebP, GIF, BMP, TIFF, HEIC/HEIF or AVIF"

# ISO BMFF major brands of HEIF images and sequences (HEVC-coded: iPhone photos are `heic`; `mif1`/`msf1` are the
# generic ones). The same list pillow-heif accepts; AVIF (`avif`/`avis`) is Pillow's own plugin and needs nothing.
HEIF_BRANDS = frozenset(
    {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs", b"mif1", b"msf1"}
)
# How each format's files start, to tell a damaged header from a foreign format (BMP: and its DIB header's size).
MAGIC = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)
BMP_HEADER_SIZES = frozenset({12, 40, 52, 56, 64, 108, 124})
_heif_lock = threading.Lock()
_heif_registered = False


class ImageRejected(ValueError):
    """The upload is not an image this function can classify (the client's fault)."""


class UnsupportedImage(ImageRejected):
    """Not an image at all, or a format Pillow cannot read."""


class CorruptImage(ImageRejected):
    """Recognised as an image, but truncated or damaged."""


class ImageTooLarge(ImageRejected):
    """More pixels than the configured limit (a decompression bomb, or just too big)."""


def decode(data: bytes, size: tuple[int, int], max_pixels: int) -> np.ndarray:
    """RGB uint8 [H, W, 3] at `size` = (height, width): EXIF orientation applied (HEIF: its rotation and mirror
    boxes), first frame of animations, alpha composited on white, 16-bit and CMYK converted, JPEGs decoded at
    reduced scale when large. HEIC/HEIF needs pillow-heif, imported on the first HEIF file."""
    if not data:
        raise UnsupportedImage("the file is empty")
    heif = looks_like_heif(data)
    if heif:
        _register_heif()
    with warnings.catch_warnings():  # Pillow warns on odd EXIF, in the header and after: the pixels matter
        warnings.simplefilter("ignore")
        image = _open(data, heif)
        width, height = image.size
        if width * height > max_pixels:
            raise ImageTooLarge(
                f"the image has {width}x{height} pixels, more than the limit of {max_pixels:,}"
            )
        try:
            rgb = _to_rgb(image, size).resize((size[1], size[0]), Image.Resampling.BILINEAR)
        except Exception as exc:  # whatever Pillow raises on damaged pixel data: a bad upload, never a 500
            raise CorruptImage(f"the {image.format or 'image'} file is truncated or corrupt") from exc
    return np.asarray(rgb)


def _open(data: bytes, heif: bool) -> Image.Image:
    """The image's header read (no pixels yet). A file that starts like a format Pillow reads but whose header
    it refuses (a width of 0, say) is damaged, not of a foreign format."""
    try:
        return Image.open(io.BytesIO(data))
    except UnidentifiedImageError as exc:
        claimed = "HEIF" if heif else claimed_format(data)
        if claimed is not None:
            raise CorruptImage(
                f"the {claimed} file is truncated or corrupt (its header cannot be read)"
            ) from exc
        raise UnsupportedImage(f"the file is not an image this service can read ({FORMATS})") from exc
    except Exception as exc:  # Pillow raises many types on damaged headers; all of them mean a bad upload
        raise CorruptImage("the image's header is truncated or corrupt") from exc


def claimed_format(data: bytes) -> str | None:
    """The format a file's first bytes say it is, if one this service reads (HEIF aside)."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    if data[:2] == b"BM" and len(data) >= 18 and int.from_bytes(data[14:18], "little") in BMP_HEADER_SIZES:
        return "BMP"
    return next((name for magic, name in MAGIC if data.startswith(magic)), None)


def warm_up(size: tuple[int, int]) -> np.ndarray:
    """Decode a small JPEG once: Pillow imports its plugins and sets up libjpeg on first use (about 20 ms),
    which would otherwise land on the first request after a cold start."""
    buffer = io.BytesIO()
    Image.new("RGB", (size[1] * 2, size[0] * 2), (90, 140, 200)).save(buffer, "JPEG")
    return decode(buffer.getvalue(), size, max_pixels=size[0] * size[1] * 4)


def looks_like_heif(data: bytes) -> bool:
    """An ISO BMFF file (`ftyp` box first) whose major brand is a HEIF one."""
    return data[4:8] == b"ftyp" and data[8:12] in HEIF_BRANDS


def _register_heif() -> None:
    """Register pillow-heif's Pillow plugin on the first HEIF upload, not at import: importing it and libheif
    would otherwise be paid by every cold start, for a format few uploads use."""
    global _heif_registered
    if _heif_registered:
        return
    with _heif_lock:
        if _heif_registered:
            return
        try:
            import pillow_heif
        except ImportError as exc:
            raise UnsupportedImage(
                "HEIC/HEIF images need the pillow-heif package, which is not installed"
            ) from exc
        # No embedded depth maps or auxiliary images: only the primary image is classified.
        pillow_heif.register_heif_opener(depth_images=False, aux_images=False)
        _heif_registered = True


def _to_rgb(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    if image.format in ("JPEG", "HEIF"):
        # Let libjpeg decode at 1/2, 1/4 or 1/8 scale, still at least the model's size: a 12 MP photo
        # costs a fraction of a full decode. For HEIF, pillow-heif decodes the file's embedded thumbnail
        # instead, if it has one at least the model's size that is a scaled copy of the image.
        image.draft("RGB", (size[1], size[0]))
    image.seek(0)
    image = ImageOps.exif_transpose(image)
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        image = _sixteen_bit_to_l(image)
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _sixteen_bit_to_l(image: Image.Image) -> Image.Image:
    """Pillow's own conversion clips 16-bit values at 255; scale the full range down instead."""
    pixels = np.asarray(image, dtype=np.float64)
    top = 65535.0 if pixels.max() > 255 else 255.0
    return Image.fromarray(np.clip(pixels * (255.0 / top), 0, 255).astype(np.uint8), mode="L")
