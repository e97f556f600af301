
import io

import pytest
from PIL import Image

from dogbreed.data.images import MAX_PIXELS, ImageError, check_header, decode
from tests.helpers import encode, png_bomb


@pytest.mark.parametrize("mode,fmt", [
    ("L", "PNG"), ("1", "PNG"), ("P", "PNG"), ("RGBA", "PNG"), ("LA", "PNG"), ("I;16", "PNG"),
    ("CMYK", "JPEG"), ("RGB", "WEBP"), ("RGB", "BMP"), ("RGB", "GIF"), ("RGB", "TIFF"),
])
def test_every_mode_becomes_rgb(mode, fmt):
    img = Image.new(mode, (40, 30))
    out = decode(encode(img, fmt))
    assert out.mode == "RGB" and out.size == (40, 30)


@pytest.mark.parametrize("fmt", ["ICO", "PPM", "TGA", "SGI", "PCX", "DDS"])
def test_formats_photos_never_come_in_are_refused_before_any_decoder_runs(fmt, tmp_path):
    data = encode(Image.new("RGB", (16, 16), (200, 10, 10)), fmt)
    assert Image.open(io.BytesIO(data)).format == fmt  # Pillow itself would read it
    with pytest.raises(ImageError, match=r"not an image format this service can read \(JPEG, PNG"):
        decode(data)
    (tmp_path / "x.jpg").write_bytes(data)
    assert check_header(tmp_path / "x.jpg") == "not an image"


def test_transparent_pixels_become_white():
    img = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    assert decode(encode(img, "PNG")).getpixel((0, 0)) == (255, 255, 255)


def test_sixteen_bit_grayscale_is_scaled_not_clipped():
    img = Image.new("I;16", (4, 4), 32768)
    value = decode(encode(img, "PNG")).getpixel((0, 0))
    assert value[0] in (127, 128)


def test_exif_orientation_is_honoured():
    img = Image.new("RGB", (60, 20), (0, 0, 255))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    out = decode(encode(img, "JPEG", exif=exif.tobytes()))
    assert out.size == (20, 60)


def test_large_jpeg_is_decoded_at_reduced_size_but_not_below_the_need():
    img = Image.new("RGB", (2000, 1600), (10, 200, 10))
    data = encode(img, "JPEG")
    out = decode(data, min_side=256)
    assert min(out.size) >= 256 and out.size[0] <= 500
    assert decode(data).size == (2000, 1600)


@pytest.mark.parametrize("payload,fragment", [
    (b"", "not an image"),
    (b"hello, this is text", "not an image"),
    (encode(Image.new("RGB", (64, 64)), "JPEG")[:200], "could not be decoded"),
])
def test_garbage_is_an_image_error(payload, fragment):
    with pytest.raises(ImageError, match=fragment):
        decode(payload)


def test_decompression_bomb_is_refused_from_the_header():
    assert MAX_PIXELS < 30000 * 30000
    with pytest.raises(ImageError, match="megapixels|bomb"):
        decode(png_bomb(30000, 30000))


def test_check_header(tmp_path):
    good, text, cut = tmp_path / "a.jpg", tmp_path / "b.jpg", tmp_path / "c.png"
    good.write_bytes(encode(Image.new("RGB", (8, 8)), "JPEG"))
    text.write_text("not an image")
    cut.write_bytes(encode(Image.new("RGB", (64, 64)), "PNG")[:60])
    assert check_header(good) is None
    assert check_header(text) == "not an image"
    assert check_header(cut).startswith("corrupt image")
