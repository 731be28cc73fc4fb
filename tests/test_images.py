"""agelab.images: real files decoded to upright RGB uint8, and broken files refused by name."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageFile

from agelab.images import MAX_PIXELS, ImageError, load_image
from tests.predict_helpers import real_faces


@pytest.fixture
def real_jpeg(utkface_dir) -> bytes:
    return real_faces(utkface_dir, 1, step=1)[0].read_bytes()


def test_loads_a_real_jpeg_as_rgb_uint8(real_jpeg):
    image = load_image(real_jpeg)
    assert image.shape == (200, 200, 3) and image.dtype == np.uint8


def test_exif_orientation_is_applied(real_jpeg):
    src = Image.open(io.BytesIO(real_jpeg)).convert("RGB").resize((200, 100))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    buffer = io.BytesIO()
    src.save(buffer, "JPEG", exif=exif.tobytes())
    assert load_image(buffer.getvalue()).shape == (200, 100, 3)


def test_png_with_alpha_grayscale_and_palette_become_rgb(real_jpeg, tmp_path):
    face = Image.open(io.BytesIO(real_jpeg))
    rgba = face.convert("RGBA")
    rgba.putalpha(0)  # fully transparent: composited over white
    rgba.save(tmp_path / "alpha.png")
    face.convert("L").save(tmp_path / "gray.png")
    face.convert("P").save(tmp_path / "palette.png")
    alpha = load_image(tmp_path / "alpha.png")
    assert alpha.shape == (200, 200, 3) and (alpha == 255).all()
    gray = load_image(tmp_path / "gray.png")
    assert gray.shape == (200, 200, 3) and (gray[..., 0] == gray[..., 2]).all()
    assert load_image(tmp_path / "palette.png").shape == (200, 200, 3)


def test_broken_files_raise_an_error_naming_the_file(real_jpeg, tmp_path):
    (tmp_path / "zero.jpg").write_bytes(b"")
    (tmp_path / "notes.jpg").write_text("this is a text file, not a photo\n")
    (tmp_path / "truncated.jpg").write_bytes(real_jpeg[: len(real_jpeg) // 3])
    corrupt = bytearray(real_jpeg)
    corrupt[200:2000] = b"\x00" * 1800
    corrupt[2:4] = b"\xff\xff"
    (tmp_path / "corrupt.jpg").write_bytes(bytes(corrupt))
    for name, pattern in [
        ("zero.jpg", "empty"),
        ("notes.jpg", "not an image"),
        ("truncated.jpg", "truncated"),
        ("corrupt.jpg", "corrupt|not an image"),
        ("missing.jpg", "no such file"),
    ]:
        with pytest.raises(ImageError, match=pattern) as info:
            load_image(tmp_path / name)
        assert name in str(info.value)
    with pytest.raises(ImageError, match="upload.png"):
        load_image(b"GIF89a garbage", name="upload.png")


def test_a_12000_pixel_square_image_is_refused_before_decoding(tmp_path, monkeypatch):
    path = tmp_path / "huge.png"
    Image.new("L", (12_000, 12_000), 128).save(path, optimize=False)
    assert path.stat().st_size < 2_000_000
    assert 12_000 * 12_000 > MAX_PIXELS
    # Every decode goes through ImageFile.load; the refusal must come from the header alone.
    decoded: list[tuple[int, int]] = []
    real_load = ImageFile.ImageFile.load
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda img: decoded.append(img.size) or real_load(img))
    with pytest.raises(ImageError, match="12000 x 12000.*decompression bomb") as info:
        load_image(path)
    assert "huge.png" in str(info.value)
    assert decoded == []
    small = io.BytesIO()
    Image.new("L", (30, 20), 128).save(small, "PNG")
    assert load_image(small.getvalue()).shape == (20, 30, 3)
    assert set(decoded) == {(30, 20)}  # the spy does see a decode


def png_header(width: int, height: int) -> bytes:
    """A real PNG's opening (signature, IHDR, an empty IDAT, IEND) saying ``width`` x ``height``: what
    Pillow reads before it decodes, without the gigabytes of pixels."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    )


def test_a_20000_pixel_png_is_refused_with_its_size_in_words():
    from agelab.images import image_format

    data = png_header(20_000, 20_000)
    # Past twice Pillow's own limit its open raises; the format is still found, and the refusal says why.
    assert image_format(data) == "PNG"
    with pytest.raises(ImageError) as info:
        load_image(data, name="poster.png")
    message = str(info.value)
    assert message.startswith("poster.png is 20000 x 20000 px, above the 100-megapixel limit")
    assert "resize it" in message and "not an image" not in message
