"""A folder of the files real photo collections hold: odd modes, odd sizes, and broken ones."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

# name -> (width, height) as loaded (upright), for every file that must load
READABLE: dict[str, tuple[int, int]] = {
    "rgb.jpg": (48, 40),
    "gray.png": (48, 40),
    "cmyk.jpg": (48, 40),
    "rgba.png": (48, 40),
    "palette.png": (48, 40),
    "palette_transparent.gif": (48, 40),
    "gray16.png": (48, 40),
    "rgb16.png": (8, 6),
    "animated.gif": (48, 40),
    "exif_rotated.jpg": (20, 40),  # stored 40 x 20 with orientation 6 (rotate 90 degrees clockwise)
    "tiny.png": (3, 2),
    "webp.webp": (48, 40),
    "strip.png": (1, 300),
}
# name -> words the error must contain
UNREADABLE: dict[str, str] = {
    "empty.jpg": "empty file",
    "truncated.jpg": "truncated",
    "truncated.png": "truncated",
    "text.jpg": "not an image",
    "bomb.png": "decompression bomb",
    "too_many_pixels.png": "more than the 150 MP",
}


def _chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def png_bytes(width: int, height: int, bit_depth: int, color_type: int, rows: bytes) -> bytes:
    """A PNG written by hand, so headers can claim any size and any bit depth."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(rows)) + _chunk(b"IEND", b"")


def gradient(width: int = 48, height: int = 40) -> np.ndarray:
    yy, xx = np.mgrid[0:height, 0:width]
    return np.stack([xx * 255 // max(width - 1, 1), yy * 255 // max(height - 1, 1), np.full_like(xx, 90)], -1).astype(
        np.uint8
    )


def write_readable(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rgb = Image.fromarray(gradient())
    rgb.save(folder / "rgb.jpg", quality=95)
    rgb.convert("L").save(folder / "gray.png")
    rgb.convert("CMYK").save(folder / "cmyk.jpg")
    rgba = rgb.convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize(rgb.size))
    rgba.save(folder / "rgba.png")
    rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=16).save(folder / "palette.png")
    rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=16).save(folder / "palette_transparent.gif", transparency=0)
    gray16 = (np.arange(40 * 48, dtype=np.uint32).reshape(40, 48) * 34).astype(np.uint16)
    Image.fromarray(gray16).save(folder / "gray16.png")
    rgb16 = np.zeros((6, 8, 3), ">u2")
    rgb16[..., 0], rgb16[..., 1] = 65535, 32768
    (folder / "rgb16.png").write_bytes(png_bytes(8, 6, 16, 2, b"".join(b"\x00" + row.tobytes() for row in rgb16)))
    frames = [Image.new("RGB", (48, 40), colour) for colour in ((255, 0, 0), (0, 255, 0))]
    frames[0].save(folder / "animated.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(gradient(40, 20)).save(folder / "exif_rotated.jpg", exif=exif)
    Image.fromarray(gradient(3, 2)).save(folder / "tiny.png")
    rgb.save(folder / "webp.webp")
    Image.fromarray(gradient(1, 300)).save(folder / "strip.png")


def write_unreadable(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "empty.jpg").write_bytes(b"")
    buf = folder / "whole.tmp"
    noise = np.random.default_rng(0).integers(0, 256, (40, 48, 3), dtype=np.uint8)  # incompressible
    for fmt in ("jpg", "png"):
        Image.fromarray(noise).save(buf, format="JPEG" if fmt == "jpg" else "PNG")
        data = buf.read_bytes()
        (folder / f"truncated.{fmt}").write_bytes(data[: len(data) // 2])
    buf.unlink()
    (folder / "text.jpg").write_text("these are my holiday notes, not a photo\n")
    # headers claiming huge sizes over a few bytes of data: refused before any decoding
    (folder / "bomb.png").write_bytes(png_bytes(40000, 40000, 8, 2, b"\x00" * 16))
    (folder / "too_many_pixels.png").write_bytes(png_bytes(13000, 12000, 8, 2, b"\x00" * 16))
    (folder / "a_folder.jpg").mkdir()  # not a file: never listed


def write_messy_folder(folder: Path) -> Path:
    write_readable(folder)
    write_unreadable(folder)
    return folder
