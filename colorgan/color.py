"""The one place that converts between RGB and the normalised Lab the networks see.

pix2pix's normalisation puts both inputs and outputs in [-1, 1]: ``L / 50 - 1`` and ``ab / 110``.
Conversions always run in float32, even inside an autocast region, because the cube-root and
power functions of CIE Lab lose several units of ab in half precision.
"""

from __future__ import annotations

import torch
from kornia.color import lab_to_rgb, rgb_to_lab

L_SCALE = 50.0
AB_SCALE = 110.0


def _float32_no_autocast(device: torch.device) -> torch.autocast:
    return torch.autocast(device_type=device.type, enabled=False)


def rgb_to_lab_normalized(rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, 3, H, W) RGB, uint8 or float in [0, 1] -> (L, ab) float32, each in [-1, 1]."""
    with _float32_no_autocast(rgb.device):
        if rgb.dtype == torch.uint8:
            rgb = rgb.float().div_(255.0)
        lab = rgb_to_lab(rgb.float())
        L = lab[:, :1].div(L_SCALE).sub_(1.0)
        ab = lab[:, 1:].div(AB_SCALE)
    return L, ab


def lab_normalized_to_rgb(L: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
    """Normalised (L, ab) -> float32 RGB in [0, 1]; out-of-gamut colours are clipped into range."""
    with _float32_no_autocast(L.device):
        lab = torch.cat([(L.float() + 1.0) * L_SCALE, ab.float() * AB_SCALE], dim=1)
        return lab_to_rgb(lab, clip=True)


def gray_ab_like(L: torch.Tensor) -> torch.Tensor:
    """The gray baseline: zero chroma with the shape of ab for a given L."""
    return L.new_zeros((L.shape[0], 2, *L.shape[2:]))


def to_uint8(rgb: torch.Tensor) -> torch.Tensor:
    """Float RGB in [0, 1] -> uint8, rounded as an image file would store it."""
    return rgb.clamp(0, 1).mul(255.0).round_().to(torch.uint8)
