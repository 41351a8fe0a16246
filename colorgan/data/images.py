"""Reading real-world image files into 8-bit RGB, whatever their mode, size or orientation."""

from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import ExifTags, Image, UnidentifiedImageError

from colorgan.errors import ColorganError
from colorgan.files import is_temp_file

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif")

# Photos up to ~250 MP are legitimate; PIL's default bomb guard (89 MP) would reject a
# 12000 x 9000 scan. PIL refuses a header beyond twice this (500 MP) before decoding anything.
Image.MAX_IMAGE_PIXELS = 250_000_000

# The most pixels decoded at once. A bigger JPEG is decoded at a reduced draft scale (1/2 to
# 1/8), so only formats without a draft mode (PNG, TIFF, WebP, BMP) are refused beyond it:
# a 12000 x 9000 PNG (108 MP, ~324 MB as RGB) is decoded whole; larger ones are refused.
MAX_DECODED_PIXELS = 150_000_000
JPEG_FORMATS = ("JPEG", "MPO")  # MPO: the JPEG with extra frames that many cameras write

_TRANSPOSE_FOR_ORIENTATION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


class BadImageError(ColorganError, ValueError):
    """A file that cannot be decoded as an image; carries the path for the message."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"cannot read image {self.path}: {reason}")


def find_images(root: str | Path) -> list[Path]:
    """All image files under ``root`` (recursive), sorted so splits are reproducible.

    Files colorgan is still writing (or a kill left half-written, ``.NAME.PID.tmp.png``) are not images.
    """
    files = Path(root).rglob("*")
    return sorted(p for p in files if p.suffix.lower() in IMAGE_EXTENSIONS and not is_temp_file(p) and p.is_file())


def _to_8bit(im: Image.Image) -> Image.Image:
    """Any PIL mode -> ``L``, ``RGB`` or ``RGBA`` (8 bits), one byte per channel.

    16-bit images are rescaled (0..65535 -> 0..255), not clipped, through a lookup table so a
    huge scan needs no float copy. Grayscale stays one channel until after downscaling.
    """
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(im)
        if arr.dtype.kind == "u" and arr.dtype.itemsize == 2:
            arr = arr.astype(np.uint16, copy=False)
        elif arr.size and arr.max() > 255:  # 32-bit "I" holding 16-bit data
            arr = np.clip(arr, 0, 65535).astype(np.uint16)
        else:  # 32-bit "I" holding 8-bit data
            arr = (np.clip(arr, 0, 255) * 257).astype(np.uint16)
        lut = ((np.arange(65536, dtype=np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
        return Image.fromarray(lut[arr], mode="L")
    if im.mode == "F":
        arr = np.asarray(im, dtype=np.float32)
        scale = 1.0 if np.nanmax(arr, initial=0.0) <= 1.0 else 255.0
        arr = np.clip(np.nan_to_num(arr) / scale * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(arr, mode="L")
    if im.mode in ("L", "RGB", "RGBA"):
        return im
    if im.mode == "1":
        return im.convert("L")
    if im.mode == "P":
        return im.convert("RGBA" if "transparency" in im.info else "RGB")
    if im.mode in ("LA", "PA", "RGBa", "La"):
        return im.convert("RGBA")
    return im.convert("RGB")  # CMYK, YCbCr, HSV, ...


def _orientation(im: Image.Image) -> int:
    """The EXIF orientation tag (1 = upright); a damaged EXIF block does not make the photo unreadable."""
    try:
        return int(im.getexif().get(ExifTags.Base.Orientation, 1))
    except Exception:
        return 1


def _describe(err: BaseException) -> str:
    """The failure in the user's terms: what is wrong with the file, then the decoder's words."""
    text = str(err).splitlines()[0] if str(err) else type(err).__name__
    if isinstance(err, UnidentifiedImageError):
        return "not an image, or a format PIL cannot read (cannot identify image file)"
    if isinstance(err, PermissionError):
        return "permission denied"
    if isinstance(err, Image.DecompressionBombError):
        return f"refused as a likely decompression bomb ({text})"
    if "truncated" in text.lower() or isinstance(err, (EOFError, SyntaxError)):
        return f"truncated or corrupt file ({type(err).__name__}: {text})"
    return f"{type(err).__name__}: {text}"


class DecodedImage(NamedTuple):
    """An image file decoded to 8 bits (``L``, ``RGB`` or ``RGBA``, alpha still attached) and its JPEG scale."""

    image: Image.Image
    scale: int  # a JPEG decoded at 1/scale of its stored size (1: full size; always 1 for other formats)


def _jpeg_scale(width: int, height: int, max_side: int | None) -> int:
    """How much to shrink a JPEG while decoding it: 1, 2, 4 or 8, the factors of PIL's ``draft``.

    Enough to stay under :data:`MAX_DECODED_PIXELS`; with ``max_side``, as much as still leaves
    both sides at least ``max_side`` (what ``draft`` itself picks for that size).
    """
    scales = (1, 2, 4, 8)
    fits = next((s for s in scales if math.ceil(width / s) * math.ceil(height / s) <= MAX_DECODED_PIXELS), 8)
    wanted = 1 if max_side is None else max(s for s in scales if s == 1 or s <= min(width, height) // max_side)
    return max(fits, wanted)


def _too_many_pixels(im: Image.Image, scale: int) -> str:
    cap = f"{MAX_DECODED_PIXELS / 1e6:g} MP"
    if im.format in JPEG_FORMATS:
        return f"{im.width} x {im.height} pixels even at 1/{scale} scale is more than the {cap} decoded at once"
    return (
        f"{im.width} x {im.height} pixels is more than the {cap} decoded at once; downscale it, "
        "or save it as JPEG (decoded at 1/2 to 1/8 scale when too big)"
    )


def decode_image(path: str | Path, max_side: int | None = None) -> DecodedImage:
    """Decode ``path`` to 8 bits per channel, upright per EXIF, first frame of animations.

    Memory stays bounded for huge photos (:data:`MAX_DECODED_PIXELS`); with ``max_side``, a JPEG is
    decoded at the draft scale that allows, and anything still larger is shrunk by an integer factor
    straight after decoding. Every failure becomes :class:`BadImageError` naming the file.
    """
    path = Path(path)
    scale = 1
    try:
        if path.stat().st_size == 0:
            raise BadImageError(path, "empty file (0 bytes)")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                im.seek(0)  # first frame of GIF/APNG/multi-page TIFF/MPO, before the draft sets its size
                if im.format in JPEG_FORMATS:
                    scale = _jpeg_scale(im.width, im.height, max_side)
                    if scale > 1:
                        im.draft("RGB", (max(1, im.width // scale), max(1, im.height // scale)))
                if im.width * im.height > MAX_DECODED_PIXELS:
                    raise BadImageError(path, _too_many_pixels(im, scale))
                im.load()
                orientation = _orientation(im)
                img = _to_8bit(im)
                if max_side is not None and max(img.size) >= 2 * max_side:
                    img = img.reduce(max(img.size) // max_side)  # block average: cheap, drops the big copy
                if img is im:
                    img = im.copy()  # closing the file frees the decoded pixels of ``im``
    except BadImageError:
        raise
    except FileNotFoundError as err:
        raise BadImageError(path, "no such file") from err
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as err:
        raise BadImageError(path, _describe(err)) from err
    if img.width == 0 or img.height == 0:
        raise BadImageError(path, "image has zero width or height")
    if orientation in _TRANSPOSE_FOR_ORIENTATION:
        img = img.transpose(_TRANSPOSE_FOR_ORIENTATION[orientation])
    if max_side is not None and max(img.size) > max_side:
        img.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
    return DecodedImage(img, scale)


def load_image(path: str | Path, max_side: int | None = None) -> tuple[Image.Image, Image.Image | None]:
    """:func:`decode_image` as (8-bit RGB, alpha or None)."""
    return split_alpha(decode_image(path, max_side).image)


def split_alpha(image: Image.Image | np.ndarray) -> tuple[Image.Image, Image.Image | None]:
    """Any in-memory image -> (8-bit RGB, alpha or None): the one place transparency is decided.

    Alpha is kept, never composited: training ignores it, and a colorized image gets it back
    unchanged (RGB pixels under alpha 0 are colorized like the rest). 16-bit and float data are
    rescaled, not clipped. An array is read as ``Image.fromarray`` does (H x W gray, H x W x 3 RGB,
    H x W x 4 RGBA).
    """
    img = _to_8bit(Image.fromarray(image) if isinstance(image, np.ndarray) else image)
    alpha = img.getchannel("A") if img.mode == "RGBA" else None
    return (img if img.mode == "RGB" else img.convert("RGB")), alpha


def load_rgb(path: str | Path, max_side: int | None = None) -> Image.Image:
    """:func:`load_image` without the alpha channel."""
    return load_image(path, max_side)[0]
