"""Sample grids people can read at a glance: one row per image, gray | colorized | truth."""

from __future__ import annotations

import torch
from PIL import Image, ImageDraw

from colorgan.color import to_uint8


def fit_title(draw: ImageDraw.ImageDraw, title: str, width: int) -> str:
    """A column title that fits its column: a checkpoint's ``run/stem`` shortened to ``run``, then cut."""
    for candidate in (title, title.split("/")[0]):
        if draw.textlength(candidate) <= width:
            return candidate
    text = title.split("/")[0]
    while text and draw.textlength(text + "...") > width:
        text = text[:-1]
    return text + "..."


def make_grid(columns: list[tuple[str, torch.Tensor]], min_tile: int = 128, pad: int = 2) -> Image.Image:
    """Columns of (title, N x 3 x H x W RGB in [0, 1]); tiny images are enlarged pixel-exactly."""
    n, _, h, w = columns[0][1].shape
    scale = max(1, -(-min_tile // max(h, w)))
    th, tw = h * scale, w * scale
    header = 16
    grid = Image.new("RGB", (len(columns) * (tw + pad) + pad, header + n * (th + pad) + pad), "white")
    draw = ImageDraw.Draw(grid)
    for c, (title, images) in enumerate(columns):
        x = pad + c * (tw + pad)
        draw.text((x + 2, 2), fit_title(draw, title, tw - 4), fill="black")
        for r in range(n):
            hwc = to_uint8(images[r].detach().cpu()).permute(1, 2, 0).numpy()
            tile = Image.fromarray(hwc).resize((tw, th), Image.Resampling.NEAREST)
            grid.paste(tile, (x, header + pad + r * (th + pad)))
    return grid
