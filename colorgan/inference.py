"""Colorize images of any size: keep the image's own full-resolution L, add the generator's ab.

The generator learned colour at its training size, so it always runs at that size:

* ``full`` (default): the model predicts ab on a copy resized to ``size x size`` and the ab is
  upsampled bilinearly to the image's size, the approach of Zhang et al.'s colorization and DDColor.
  Colour varies slowly, so low-resolution ab over full-resolution L loses little, and the cost and
  memory of the network do not grow with the image.
* ``tiles``: the model runs on overlapping ``size x size`` windows of the full-resolution L (batched)
  and the predictions are averaged with a smooth window weight, so no seam shows. Every pixel is
  coloured at the scale the model was trained at, which suits large photos and models trained
  on large crops.

Either way the output is rendered by :func:`colorgan.color.render_uint8`, as evaluation and
validation score it. The full-resolution steps run in strips of :data:`STRIP_PIXELS`, so full mode
holds little more than the input and output images; tiles mode also keeps the full-resolution L
and the blended ab with its weights (16 bytes per pixel).

Every caller (``colorgan-colorize``, a Python script, a web demo) gets the same pixels for the same
image: give :func:`colorize_image` what :func:`colorgan.data.images.decode_image` reads from a file.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from colorgan.color import gray_ab_like, render_uint8, rgb_to_lab_normalized
from colorgan.data.images import split_alpha
from colorgan.errors import ColorganError

MODES = ("full", "tiles")
STRIP_PIXELS = 1 << 18  # pixels per strip of the full-resolution steps: ~1 MB per float32 plane
BATCH_PIXELS = 1 << 18  # default tiles batch: this many pixels of windows (256 windows of 32 x 32)
# The side the model works at. Below, tiles mode runs a window per few pixels (a 2 x 2 window on a 150 MP
# photo: ~50 million calls); above, one full-mode batch of 8 needs gigabytes of activations.
MIN_SIZE, MAX_SIZE = 16, 2048
# Tiles: the work grows as 1 / (1 - overlap)^2 (16 windows per pixel at 0.75, 10,000 at 0.99) for no gain.
MAX_OVERLAP = 0.75

AbRows = Callable[[int, int], torch.Tensor]  # (r0, r1) -> normalised ab of rows r0:r1 at full resolution
InputImage = Image.Image | np.ndarray


class NonFiniteOutputError(ColorganError, ValueError):
    """The generator predicted NaN or Inf for an image, which would render as made-up (black or gray) colours.

    ``index`` is the image's position in the list given to :func:`colorize_images`.
    """

    def __init__(self, index: int) -> None:
        self.index = index
        super().__init__(
            "the generator predicted NaN or Inf colours for it (an overflow in its precision, or damaged weights), "
            "so nothing was written; try --device cpu, or another checkpoint"
        )


def _check_finite(ab: torch.Tensor, first: int) -> None:
    """Raise :class:`NonFiniteOutputError` for the first image of ``ab`` (from index ``first``) that is not finite."""
    finite = torch.isfinite(ab).flatten(1).all(1)
    if not bool(finite.all()):
        raise NonFiniteOutputError(first + int((~finite).nonzero()[0, 0]))


class GrayBaseline(nn.Module):
    """The colorizer every model must beat: it keeps L and predicts ab = 0, rendering the photo in gray."""

    def forward(self, L: torch.Tensor) -> torch.Tensor:
        return gray_ab_like(L)


def default_batch_size(size: int, mode: str) -> int:
    """8 images in full mode; in tiles mode enough windows for ~256K pixels, at least 8.

    Small windows need large batches: each call of a network has a fixed cost, which dominates
    at 32 x 32 (a 2048 x 1536 photo has ~5,500 such windows).
    """
    return 8 if mode == "full" else max(8, BATCH_PIXELS // (size * size))


def batched(items: Iterable, n: int) -> Iterator[list]:
    """Lists of ``n`` items (the last one shorter), read lazily: frames of a film as well as images."""
    it = iter(items)
    while batch := list(itertools.islice(it, n)):
        yield batch


def _strips(height: int, width: int) -> Iterator[tuple[int, int]]:
    step = max(1, STRIP_PIXELS // max(1, width))
    return ((r0, min(height, r0 + step)) for r0 in range(0, height, step))


def rgb_tensor(rgb: Image.Image) -> torch.Tensor:
    """8-bit RGB PIL image -> (1, 3, H, W) uint8 tensor on the CPU."""
    return torch.from_numpy(np.asarray(rgb, dtype=np.uint8).copy()).permute(2, 0, 1).unsqueeze(0)


def _lightness(rgb: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Normalised L of a (1, 3, H, W) uint8 image at full resolution, converted strip by strip."""
    strips = _strips(*rgb.shape[-2:])
    return torch.cat([rgb_to_lab_normalized(rgb[..., r0:r1, :].to(device))[0] for r0, r1 in strips], dim=-2)


def _render(rgb: Image.Image, alpha: Image.Image | None, ab_rows: AbRows, device: torch.device) -> Image.Image:
    """Full-resolution L of ``rgb`` + ab (fetched strip by strip), with ``alpha`` re-attached."""
    pixels = rgb_tensor(rgb)
    H, W = pixels.shape[-2:]
    out = np.empty((H, W, 3), dtype=np.uint8)
    for r0, r1 in _strips(H, W):
        L = rgb_to_lab_normalized(pixels[..., r0:r1, :].to(device))[0]
        out[r0:r1] = render_uint8(L, ab_rows(r0, r1))[0].permute(1, 2, 0).cpu().numpy()
    image = Image.fromarray(out)
    if alpha is not None:
        image.putalpha(alpha)
    return image


def _bilinear_rows(ab_small: torch.Tensor, H: int, W: int) -> AbRows:
    """Rows r0:r1 of ``F.interpolate(ab_small, (H, W), mode="bilinear")`` without the whole result.

    ``grid_sample`` at the output pixel centres with border padding is exactly that resize
    (align_corners=False), so only one strip of full-resolution ab exists at a time.
    """
    device = ab_small.device
    xs = (torch.arange(W, device=device, dtype=torch.float32) + 0.5) / W * 2 - 1

    def rows(r0: int, r1: int) -> torch.Tensor:
        ys = (torch.arange(r0, r1, device=device, dtype=torch.float32) + 0.5) / H * 2 - 1
        grid = torch.stack(torch.meshgrid(ys, xs, indexing="ij")[::-1], dim=-1).unsqueeze(0)
        return F.grid_sample(ab_small, grid, mode="bilinear", padding_mode="border", align_corners=False)

    return rows


def window_starts(length: int, window: int, stride: int) -> list[int]:
    """Evenly spread window origins covering ``0..length``, neighbours at most ``stride`` apart."""
    if length <= window:
        return [0]
    n = math.ceil((length - window) / stride) + 1
    return [round(i * (length - window) / (n - 1)) for i in range(n)]


def window_weight(length: int, ramp: int, device: torch.device) -> torch.Tensor:
    """1-D blending weight: a raised-cosine ramp over ``ramp`` pixels at both ends, 1 in between.

    Never zero, so a pixel that only one window covers (the image's border) keeps its prediction.
    """
    i = torch.arange(length, device=device, dtype=torch.float32)
    edge = torch.minimum(i + 0.5, length - i - 0.5) / max(1, ramp)
    return torch.sin(edge.clamp(max=1.0) * (math.pi / 2)) ** 2


def _predict_tiles(
    model: Callable[[torch.Tensor], torch.Tensor], L: torch.Tensor, size: int, overlap: float, batch_size: int
) -> torch.Tensor:
    """ab at full resolution from overlapping ``size x size`` windows, blended by weight."""
    H, W = L.shape[-2:]
    th, tw = min(size, H), min(size, W)
    ramp = max(1, round(size * overlap))
    stride = max(1, size - ramp)
    weight = window_weight(th, ramp, L.device)[:, None] * window_weight(tw, ramp, L.device)[None, :]
    acc = torch.zeros((1, 2, H, W), device=L.device)
    total = torch.zeros((1, 1, H, W), device=L.device)
    origins = [(y, x) for y in window_starts(H, th, stride) for x in window_starts(W, tw, stride)]
    for chunk in batched(origins, batch_size):
        batch = torch.cat([L[..., y : y + th, x : x + tw] for y, x in chunk])
        for (y, x), ab in zip(chunk, model(batch)):
            acc[0, :, y : y + th, x : x + tw] += ab * weight
            total[0, 0, y : y + th, x : x + tw] += weight
    return acc.div_(total)


@torch.inference_mode()
def colorize_images(
    generator: nn.Module,
    images: Sequence[InputImage],
    size: int,
    mode: str = "full",
    *,
    batch_size: int | None = None,
    overlap: float = 0.25,
) -> list[Image.Image]:
    """Colorize several images (PIL images or H x W [x C] arrays, any mode and size) with ``generator``.

    The generator runs on its own device and in its own dtype, at ``size`` (its training size);
    ``batch_size`` counts images (full) or windows (tiles), ``overlap`` is a fraction of ``size``.
    Outputs are 8-bit RGB of the input's size, RGBA when the input has alpha (kept as it is).
    A prediction that is not finite raises :class:`NonFiniteOutputError` (never a black image).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if not MIN_SIZE <= size <= MAX_SIZE:
        raise ValueError(f"size must be in {MIN_SIZE}..{MAX_SIZE} pixels, got {size}")
    batch_size = default_batch_size(size, mode) if batch_size is None else batch_size
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if not 0.0 <= overlap <= MAX_OVERLAP:
        raise ValueError(f"overlap is a fraction of the window in [0, {MAX_OVERLAP}], got {overlap}")
    param = next(generator.parameters(), None)
    device, dtype = (param.device, param.dtype) if param is not None else (torch.device("cpu"), torch.float32)

    def model(L: torch.Tensor) -> torch.Tensor:
        return generator(L.to(dtype)).float()

    def full() -> Iterator[tuple[Image.Image, Image.Image | None, AbRows]]:
        for first, chunk in zip(itertools.count(0, batch_size), batched(images, batch_size)):
            split = [split_alpha(image) for image in chunk]
            small = torch.cat([rgb_tensor(rgb.resize((size, size), Image.Resampling.BILINEAR)) for rgb, _ in split])
            ab_small = model(rgb_to_lab_normalized(small.to(device))[0])
            _check_finite(ab_small, first)
            for j, (rgb, alpha) in enumerate(split):
                yield rgb, alpha, _bilinear_rows(ab_small[j : j + 1], rgb.height, rgb.width)

    def tiles() -> Iterator[tuple[Image.Image, Image.Image | None, AbRows]]:
        for i, image in enumerate(images):
            rgb, alpha = split_alpha(image)
            ab = _predict_tiles(model, _lightness(rgb_tensor(rgb), device), size, overlap, batch_size)
            _check_finite(ab, i)
            yield rgb, alpha, lambda r0, r1, ab=ab: ab[..., r0:r1, :]

    return [_render(rgb, alpha, ab_rows, device) for rgb, alpha, ab_rows in (full() if mode == "full" else tiles())]


def colorize_image(
    generator: nn.Module,
    image: InputImage,
    size: int,
    mode: str = "full",
    *,
    batch_size: int | None = None,
    overlap: float = 0.25,
) -> Image.Image:
    """Colorize one image (gray, RGB, RGBA, palette, 16-bit; any size): see :func:`colorize_images`.

    The image is used as given; for a file, pass ``decode_image(path).image``
    (:func:`colorgan.data.images.decode_image`), which applies the EXIF orientation as
    ``colorgan-colorize`` does, and the result has the pixels that command writes.
    """
    return colorize_images(generator, [image], size, mode, batch_size=batch_size, overlap=overlap)[0]
