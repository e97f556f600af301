"""Decoding photos safely into RGB, and the ImageNet preprocessing, for train and serve.

The content decides, never the file name: the formats photos come in (:data:`FORMATS`) are
accepted, anything else (EPS, PSD, ICO and the rest of Pillow's readers, each more code for a
hostile file to reach) raises :class:`ImageError`. Decompression bombs are refused from
the header alone, JPEGs are decoded at reduced size when the network needs far
fewer pixels (``draft``), EXIF orientation is honoured and every mode (grayscale,
palette, alpha, CMYK, 16-bit) becomes 8-bit RGB.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

# Largest image accepted, in pixels (a 64-megapixel photo; a 20000x20000 "bomb" is 400).
MAX_PIXELS = 64_000_000
ORIENTATION_TAG = 0x0112
# What photos come as (JPEG includes MPO, the two-frame JPEG some phones write); Pillow tries only these.
FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")
FORMAT_NAMES = "JPEG, PNG, WebP, GIF, BMP or TIFF"

# Pillow refuses truncated images by default; keep it so (a truncated file is reported).
ImageFile.LOAD_TRUNCATED_IMAGES = False
Image.MAX_IMAGE_PIXELS = MAX_PIXELS


class ImageError(ValueError):
    """The bytes are not an image this program can use; the message says why."""


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode == "RGB":
        return img
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        # 16/32-bit grayscale: scale to 8 bits instead of clipping to white.
        scale = 1 / 256 if img.mode.startswith("I;16") or img.mode == "I" else 255.0
        img = img.point(lambda v: v * scale).convert("L")
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "La", "RGBa", "PA"):
        rgba = img.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return img.convert("RGB")


@contextlib.contextmanager
def _translated() -> Iterator[None]:
    """Pillow's many failures as one :class:`ImageError` that says why."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(f"not an image format this service can read ({FORMAT_NAMES})") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(f"image refused as a decompression bomb: {exc}") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageError(f"image could not be decoded: {exc}") from None


@contextlib.contextmanager
def opened(source: str | Path | bytes | BinaryIO, min_side: int | None = None) -> Iterator[Image.Image]:
    """The image with its header read and checked (format, pixel count), not decoded yet: its
    ``size`` is what :func:`to_rgb` will decode (JPEGs at the smallest scale whose short side is
    at least ``min_side``), so a caller can budget memory before the pixels exist."""
    stream: str | Path | BinaryIO = io.BytesIO(source) if isinstance(source, bytes) else source
    with _translated(), Image.open(stream, formats=FORMATS) as img:
        width, height = img.size
        if width < 1 or height < 1:
            raise ImageError(f"image has no pixels ({width}x{height})")
        if width * height > MAX_PIXELS:
            raise ImageError(f"image is {width}x{height} pixels, above the limit of "
                             f"{MAX_PIXELS // 1_000_000} megapixels")
        if min_side and img.format == "JPEG":
            img.draft("RGB", (min_side, min_side))
        yield img


def to_rgb(img: Image.Image) -> Image.Image:
    """Decode an :func:`opened` image into 8-bit RGB, EXIF orientation applied."""
    with _translated():
        if img.getexif().get(ORIENTATION_TAG, 1) != 1:
            img = ImageOps.exif_transpose(img)
        img.load()
        return _to_rgb(img)


def decode(source: str | Path | bytes | BinaryIO, min_side: int | None = None) -> Image.Image:
    """Decode ``source`` into an RGB image whose short side is at least ``min_side``
    when the original allows (JPEGs are decoded at the smallest sufficient scale).
    """
    with opened(source, min_side) as img:
        return to_rgb(img)


def check_header(path: Path) -> str | None:
    """Cheap validity check of an image file: None when fine, else the reason."""
    try:
        with Image.open(path, formats=FORMATS) as img:
            width, height = img.size
            img.verify()
    except UnidentifiedImageError:
        return "not an image"
    except Exception as exc:  # noqa: BLE001 - any failure means an unusable file
        return f"corrupt image ({exc})"
    if width * height > MAX_PIXELS:
        return f"too large ({width}x{height})"
    return None
