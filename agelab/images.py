"""Image files decoded: a path, bytes or a binary file -> an upright RGB ``uint8`` array.

Every photo agelab reads (training, ``predict``, ``evaluate``, the pages) is decoded here, and an image
that cannot be used raises :class:`ImageError` with a message that names the file.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import IO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# More pixels than this is refused before decoding, as a likely decompression bomb (a 12,000 x 12,000
# image would need 432 MB decoded). 100 Mpx still admits any phone or DSLR photo.
MAX_PIXELS = 100_000_000

ImageSource = str | Path | bytes | bytearray | IO[bytes]


class ImageError(ValueError):
    """An image that cannot be used; the message names it."""


def _describe(source: ImageSource, name: str | None) -> str:
    if name:
        return name
    if isinstance(source, str | Path):
        return str(source)
    return getattr(source, "name", None) or "the image"


def load_image(source: ImageSource, name: str | None = None, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode an image into an ``(H, W, 3)`` RGB ``uint8`` array, upright per its EXIF orientation.

    ``source`` is a path, bytes, or a binary file-like object. Grayscale, RGBA and palette images are
    converted to RGB (transparency over white). Raises :class:`ImageError`, naming the image, for a
    missing, empty, corrupt, truncated or non-image file, and for one of more than ``max_pixels``.
    """
    label = _describe(source, name)
    try:
        if isinstance(source, bytes | bytearray):
            data = bytes(source)
        elif isinstance(source, str | Path):
            data = Path(source).read_bytes()
        else:
            data = source.read()
    except FileNotFoundError:
        raise ImageError(f"{label}: no such file") from None
    except OSError as exc:
        raise ImageError(f"{label}: cannot be read ({exc.strerror or exc})") from None
    if not data:
        raise ImageError(f"{label}: the file is empty (0 bytes)")
    try:
        # Pillow warns about big images at open; the size is checked here, with a clearer message.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
        with img:
            width, height = img.size
            if width * height > max_pixels:
                raise ImageError(_too_large(label, width, height, max_pixels))
            img.load()
            img = ImageOps.exif_transpose(img)
            return _to_rgb(img)
    except ImageError:
        raise
    except Image.DecompressionBombError:
        # Pillow refuses past twice its own limit at open, before our check could say the size.
        header = _header(data)
        size = (header[1], header[2]) if header else (0, 0)
        raise ImageError(_too_large(label, *size, max_pixels)) from None
    except UnidentifiedImageError:
        raise ImageError(f"{label}: not an image Pillow can read (is it a JPEG, PNG or WebP?)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"{label}: corrupt or truncated image ({exc})") from None


def image_format(source: bytes) -> str | None:
    """The format Pillow finds in the bytes (``"JPEG"``, ``"PNG"``, ``"WEBP"``...), or None.

    A huge image still has its format (it was said to be "not an image"): :func:`load_image` then
    refuses it with its size."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(source)) as img:
                return img.format
    except Image.DecompressionBombError:
        header = _header(source)
        return header[0] if header else None
    except Exception:
        return None


def _too_large(label: str, width: int, height: int, max_pixels: int) -> str:
    size = f"{width} x {height} px" if width and height else "larger than Pillow allows"
    return (
        f"{label} is {size}, above the {max_pixels / 1e6:.0f}-megapixel limit, so it is refused as a "
        "possible decompression bomb; resize it (4,000 px on the long side is plenty) and try again"
    )


def _header(data: bytes) -> tuple[str, int, int] | None:
    """``(format, width, height)`` read from the header by Pillow's format plugins, without
    ``Image.open``'s size refusal (nothing is decoded); None when no plugin reads it."""
    Image.init()
    for name in Image.ID:
        factory, accept = Image.OPEN[name]
        try:
            if accept and not accept(data[:16]):
                continue
            with factory(io.BytesIO(data), "") as img:
                return str(img.format), int(img.size[0]), int(img.size[1])
        except Exception:  # noqa: BLE001, S112  a plugin that cannot read it: try the next
            continue
    return None


def _to_rgb(img: Image.Image) -> np.ndarray:
    if img.mode in {"RGBA", "LA", "PA"} or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    elif img.mode in {"I;16", "I;16B", "I;16L", "I"}:
        # 16-bit grayscale: 0-65535 onto 0-255 by the fixed factor 65535 / 255 = 257 (value >> 8), so
        # a 16-bit copy of an 8-bit photo gives back the same pixels. (Scaling by the image's own
        # maximum brightened dark photos, enough to flip the predicted gender.)
        arr = np.asarray(img).astype(np.int64).clip(0, 65535)
        img = Image.fromarray((arr >> 8).astype(np.uint8))
    return np.ascontiguousarray(np.asarray(img.convert("RGB"), dtype=np.uint8))
