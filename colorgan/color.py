"""The one place that converts between RGB and the normalised Lab the networks see.

pix2pix's normalisation puts both inputs and outputs in [-1, 1]: ``L / 50 - 1`` and ``ab / 110``.
Conversions always run in float32, even inside an autocast region, because the cube root and
power functions of CIE Lab lose several units of ab in half precision.

RGB -> Lab uses kornia's constants (sRGB, D65) but a faster path for uint8 input: sRGB -> linear
is a 256-entry table instead of a power per element, the white point is folded into the
RGB -> XYZ matrix, and on the CPU the batch is processed in cache-sized chunks. It matches
``kornia.color.rgb_to_lab`` to 1e-4 Lab units (tested). Lab -> RGB is kornia's.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from kornia.color import lab_to_rgb

L_SCALE = 50.0
AB_SCALE = 110.0

# kornia's sRGB (D65) -> XYZ matrix, each row divided by the D65 white point.
_RGB_TO_XYZ = torch.tensor(
    [[0.412453, 0.357580, 0.180423], [0.212671, 0.715160, 0.072169], [0.019334, 0.119193, 0.950227]],
    dtype=torch.float64,
)
_WHITE_D65 = torch.tensor([0.95047, 1.0, 1.08883], dtype=torch.float64)
_RGB_TO_XYZ_WHITE = (_RGB_TO_XYZ / _WHITE_D65[:, None]).float()
_EPSILON = 0.008856  # (6/29)^3, where CIE Lab switches from the cube root to a line
_CPU_CHUNK_PIXELS = 1 << 18  # ~4 images of 256 x 256: keeps temporaries in cache
_tables: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}
LIGHTNESS_TOLERANCE = 0.25 / L_SCALE  # a quarter of one L* unit, in normalised L
CHROMA_STEPS = 7  # bisection steps when fitting an out-of-gamut colour at its lightness


def _srgb_table(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(256-entry sRGB -> linear table, whitened matrix) on ``device``, made once per device."""
    if device not in _tables:
        linear = _srgb_to_linear(torch.arange(256, dtype=torch.float64) / 255.0).float()
        _tables[device] = (linear.to(device), _RGB_TO_XYZ_WHITE.to(device))
    return _tables[device]


def _srgb_to_linear(rgb: torch.Tensor) -> torch.Tensor:
    return torch.where(rgb > 0.04045, ((rgb + 0.055) / 1.055).pow(2.4), rgb / 12.92)


def _convert(rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    table, matrix = _srgb_table(rgb.device)
    linear = table[rgb.int()] if rgb.dtype == torch.uint8 else _srgb_to_linear(rgb.float())
    t = torch.einsum("ij,bjhw->bihw", matrix, linear)  # XYZ over the white point
    fx, fy, fz = torch.where(t > _EPSILON, t.clamp_min(_EPSILON).pow(1.0 / 3.0), t * 7.787 + 4.0 / 29.0).unbind(1)
    L = (fy * (116.0 / L_SCALE) - (16.0 / L_SCALE + 1.0)).unsqueeze(1)
    return L, torch.stack([(fx - fy) * (500.0 / AB_SCALE), (fy - fz) * (200.0 / AB_SCALE)], dim=1)


_compiled: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = None


def rgb_to_lab_normalized(rgb: torch.Tensor, compiled: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, 3, H, W) RGB, uint8 or float in [0, 1] -> (L, ab) float32, each in [-1, 1].

    ``compiled=True`` fuses the whole conversion with ``torch.compile`` (a one-off compile of
    tens of seconds; several times faster per image afterwards, worth it for long runs).
    """
    global _compiled
    with torch.autocast(device_type=rgb.device.type, enabled=False):
        if compiled:
            if _compiled is None:
                _compiled = torch.compile(_convert, dynamic=True)
            return _compiled(rgb)
        pixels = rgb.shape[-1] * rgb.shape[-2]
        chunk = max(1, _CPU_CHUNK_PIXELS // max(pixels, 1))
        if rgb.device.type != "cpu" or rgb.shape[0] <= chunk:
            return _convert(rgb)
        parts = [_convert(part) for part in rgb.split(chunk)]
        return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


def lab_normalized_to_rgb(L: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
    """Normalised (L, ab) -> float32 RGB in [0, 1]; out-of-gamut colours are clipped into range."""
    with torch.autocast(device_type=L.device.type, enabled=False):
        lab = torch.cat([(L.float() + 1.0) * L_SCALE, ab.float() * AB_SCALE], dim=1)
        return lab_to_rgb(lab, clip=True)


def keep_lightness_rgb(L: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
    """Normalised (L, ab) -> RGB in [0, 1] whose lightness is L even where ab is out of gamut.

    Converting an out-of-gamut Lab colour and clipping the RGB changes the lightness (a saturated
    blue on a light pixel comes out darker). Only pixels that were clipped are checked; for those
    whose L moved by more than a quarter L* unit, the chroma is scaled down (bisection, hue kept)
    until it fits. Gray (ab = 0) always fits, so the search always ends in gamut.
    """
    rgb = lab_normalized_to_rgb(L, ab)
    clipped = ((rgb <= 0.0) | (rgb >= 1.0)).any(dim=1)
    if not bool(clipped.any()):
        return rgb
    b, y, x = clipped.nonzero(as_tuple=True)
    n = b.numel()
    L_px = L[b, 0, y, x].view(1, 1, n, 1)
    ab_px = ab[b, :, y, x].t().reshape(1, 2, n, 1)

    def fits(scale: torch.Tensor) -> torch.Tensor:
        L_back = rgb_to_lab_normalized(lab_normalized_to_rgb(L_px, ab_px * scale))[0]
        return ((L_back - L_px).abs() <= LIGHTNESS_TOLERANCE).view(n)

    lo = torch.ones(n, device=L.device)
    todo = ~fits(lo.view(1, 1, n, 1))
    if bool(todo.any()):
        lo[todo] = 0.0
        hi = torch.ones(n, device=L.device)
        for _ in range(CHROMA_STEPS):
            mid = (lo + hi) / 2
            ok = fits(mid.view(1, 1, n, 1)) | ~todo
            lo = torch.where(ok & todo, mid, lo)
            hi = torch.where(ok, hi, mid)
        fixed = lab_normalized_to_rgb(L_px, ab_px * lo.view(1, 1, n, 1))
        rgb[b, :, y, x] = fixed.reshape(3, n).t()
    return rgb


def render_uint8(L: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
    """The picture a colorizer outputs: normalised (L, ab) -> uint8 RGB, lightness kept.

    The one rendering used wherever pixels are saved or scored (validation, evaluation, sample
    grids, colorize), so a metric always describes the file a user gets.
    """
    return to_uint8(keep_lightness_rgb(L, ab))


def to_uint8(rgb: torch.Tensor) -> torch.Tensor:
    """Float RGB in [0, 1] -> uint8, rounded as an image file would store it."""
    return rgb.clamp(0, 1).mul(255.0).round_().to(torch.uint8)


def gray_ab_like(L: torch.Tensor) -> torch.Tensor:
    """The gray baseline's chroma: ab = 0 with the shape of ab for a given L."""
    return L.new_zeros((L.shape[0], 2, *L.shape[2:]))
