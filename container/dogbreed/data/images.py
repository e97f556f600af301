"""Decoding photos safely into RGB, and the ImageNet preprocessing, for train and serve.

The content decides, never the file name: anything Pillow can read is accepted,
anything else raises :class:`ImageError`. Decompression bombs are refused from
the header alone, JPEGs are decoded at reduced size when the network needs far
fewer pixels (``draft``), EXIF orientation is honoured and every mode (grayscale,
palette, alpha, CMYK, 16-bit) becomes 8-bit RGB.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import BinaryIO

from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

# Largest image accepted, in pixels (a 64-megapixel photo; a 20000x20000 "bomb" is 400).
MAX_PIXELS = 64_000_000
ORIENTATION_TAG = 0x0112

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


def decode(source: str | Path | bytes | BinaryIO, min_side: int | None = None) -> Image.Image:
    """Decode ``source`` into an RGB image whose short side is at least ``min_side``
    when the original allows (JPEGs are decoded at the smallest sufficient scale).
    """
    stream: str | Path | BinaryIO = io.BytesIO(source) if isinstance(source, bytes) else source
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(stream) as img:
                width, height = img.size
                if width < 1 or height < 1:
                    raise ImageError(f"image has no pixels ({width}x{height})")
                if width * height > MAX_PIXELS:
                    raise ImageError(
                        f"image is {width}x{height} pixels, above the limit of "
                        f"{MAX_PIXELS // 1_000_000} megapixels"
                    )
                if min_side and img.format == "JPEG":
                    img.draft("RGB", (min_side, min_side))
                if img.getexif().get(ORIENTATION_TAG, 1) != 1:
                    img = ImageOps.exif_transpose(img)
                img.load()
                return _to_rgb(img)
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError("not an image format this service can read") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(f"image refused as a decompression bomb: {exc}") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageError(f"image could not be decoded: {exc}") from None


def check_header(path: Path) -> str | None:
    """Cheap validity check of an image file: None when fine, else the reason."""
    try:
        with Image.open(path) as img:
            width, height = img.size
            img.verify()
    except UnidentifiedImageError:
        return "not an image"
    except Exception as exc:  # noqa: BLE001 - any failure means an unusable file
        return f"corrupt image ({exc})"
    if width * height > MAX_PIXELS:
        return f"too large ({width}x{height})"
    return None
