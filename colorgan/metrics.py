"""Per-image colorization metrics, following the protocols of the colorization papers.

Images are compared as the files a user would save: RGB quantised to uint8. Every function
returns one value per image so that means, per-class breakdowns and confidence intervals
are all computed from the same numbers.
"""

from __future__ import annotations

import torch
from torchmetrics.functional.image import structural_similarity_index_measure

PSNR_CAP_DB = 100.0  # an exact match would be infinite; cap it so means stay finite


def psnr_uint8(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """PSNR in dB of each image pair, both uint8 (B, 3, H, W), peak 255."""
    mse = (pred.float() - target.float()).pow(2).flatten(1).mean(dim=1)
    return (10.0 * torch.log10(255.0**2 / mse.clamp_min(1e-12))).clamp_max(PSNR_CAP_DB)


def ssim_uint8(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """SSIM of each image pair (Gaussian 11 x 11, sigma 1.5, on RGB in [0, 1])."""
    return structural_similarity_index_measure(
        pred.float() / 255.0, target.float() / 255.0, data_range=1.0, reduction="none"
    )


def colorfulness(rgb_uint8: torch.Tensor) -> torch.Tensor:
    """Hasler and Suesstrunk (2003) colourfulness of each image, on the 0-255 scale.

    ``sigma_rgyb + 0.3 * mu_rgyb`` with ``rg = R - G`` and ``yb = (R + G) / 2 - B``;
    0 for a gray image, about 20-60 for ordinary photos.
    """
    r, g, b = rgb_uint8.float().unbind(dim=1)
    rg = (r - g).flatten(1)
    yb = (0.5 * (r + g) - b).flatten(1)
    std = torch.sqrt(rg.var(dim=1, unbiased=False) + yb.var(dim=1, unbiased=False))
    mean = torch.sqrt(rg.mean(dim=1).pow(2) + yb.mean(dim=1).pow(2))
    return std + 0.3 * mean


def l1_ab(pred_ab: torch.Tensor, true_ab: torch.Tensor) -> torch.Tensor:
    """Mean absolute ab error per image, in the normalised units the loss uses (ab / 110)."""
    return (pred_ab.float() - true_ab.float()).abs().flatten(1).mean(dim=1)
