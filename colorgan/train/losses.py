"""Adversarial objectives for the discriminator and the generator, computed in float32."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from colorgan.color import AB_SCALE, L_SCALE
from colorgan.evaluate.metrics import ciede2000

GAN_MODES = ("vanilla", "lsgan", "hinge")


class GANLoss:
    """pix2pix's objectives: ``vanilla`` (BCE on logits), ``lsgan`` (least squares), ``hinge``."""

    def __init__(self, mode: str = "vanilla") -> None:
        if mode not in GAN_MODES:
            raise ValueError(f"model.gan_mode must be one of {GAN_MODES}, got {mode!r}")
        self.mode = mode

    def _target_loss(self, logits: torch.Tensor, real: bool) -> torch.Tensor:
        logits = logits.float()
        target = torch.full_like(logits, 1.0 if real else 0.0)
        if self.mode == "vanilla":
            return F.binary_cross_entropy_with_logits(logits, target)
        return F.mse_loss(logits, target)

    def discriminator(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(loss, loss on real, loss on fake); the mean of the two terms, as pix2pix's ``* 0.5``.

        The factor does not slow D down, whatever pix2pix's comment says: Adam's update is invariant
        to a constant scale of the loss (up to its eps), so it only puts the logged value on the
        scale of one term. D's pace is set by ``model.lr_d`` (and the D/G step ratio).
        """
        if self.mode == "hinge":
            real = F.relu(1.0 - real_logits.float()).mean()
            fake = F.relu(1.0 + fake_logits.float()).mean()
        else:
            real = self._target_loss(real_logits, True)
            fake = self._target_loss(fake_logits, False)
        return 0.5 * (real + fake), real, fake

    def generator(self, fake_logits: torch.Tensor) -> torch.Tensor:
        if self.mode == "hinge":
            return -fake_logits.float().mean()
        return self._target_loss(fake_logits, True)


def l1_loss(fake_ab: torch.Tensor, true_ab: torch.Tensor, L: torch.Tensor) -> torch.Tensor:
    """pix2pix's L1: the median colour (sharper, more saturated)."""
    return F.l1_loss(fake_ab.float(), true_ab.float())


def l2_loss(fake_ab: torch.Tensor, true_ab: torch.Tensor, L: torch.Tensor) -> torch.Tensor:
    """The squared error: the mean colour, what PSNR rewards (more desaturated)."""
    return F.mse_loss(fake_ab.float(), true_ab.float())


def ciede2000_loss(fake_ab: torch.Tensor, true_ab: torch.Tensor, L: torch.Tensor) -> torch.Tensor:
    """The mean CIEDE2000 difference, the perceptual colour metric the evaluation reports.

    Unlike L1 in ab it weighs a chroma error less on a saturated colour than on a near-neutral one and
    a hue error by the chroma it turns, so the model learns to hold back colour where it is unsure. In
    ab's normalised units (delta E / 110) so ``lambda_l1`` weighs it as it weighs L1.
    """
    lightness = (L.float() + 1.0) * L_SCALE
    true_lab = torch.cat([lightness, true_ab.float() * AB_SCALE], dim=1)
    fake_lab = torch.cat([lightness, fake_ab.float() * AB_SCALE], dim=1)
    return ciede2000(true_lab, fake_lab, eps=1e-6).mean().float() / AB_SCALE


# The reconstruction term weighted by lambda_l1 (model.recon_loss), each f(fake ab, true ab, L)
RECON_LOSSES = {"l1": l1_loss, "l2": l2_loss, "ciede2000": ciede2000_loss}


class ColorBinLoss(nn.Module):
    """Zhang et al.'s multinomial loss: soft-encoded ab targets, weighted by rebalanced colour rarity.

    Each true ab is spread over its ``neighbours`` nearest bins with a Gaussian of ``sigma`` Lab units
    (looked up in a table over a 1-unit ab grid, made once, instead of a distance to every bin per
    pixel). Each pixel is weighted by ``1 / ((1 - rebalance) * prior + rebalance / Q)`` of its nearest
    bin, with ``prior`` the training set's bin frequencies smoothed by the same Gaussian and the
    weights scaled to mean 1 under it: rare, saturated colours count more, so the model does not
    settle on brown. ``rebalance=1`` is no rebalancing; the paper's 0.5 is the default. The prior is
    counted from the training data at the start of fit (``counts``, saved in checkpoints). Targets are
    area-averaged to the logits' size when the generator predicts below full resolution.
    """

    def __init__(self, bins: torch.Tensor, sigma: float = 5.0, neighbours: int = 5, rebalance: float = 0.5) -> None:
        super().__init__()
        if not 0.0 <= rebalance <= 1.0:
            raise ValueError(f"model.rebalance must be in [0, 1], got {rebalance}")
        self.register_buffer("bins", bins.float().clone(), persistent=False)  # (Q, 2) normalised ab
        self.register_buffer("counts", torch.zeros(len(bins)))
        self.sigma = sigma / AB_SCALE
        self.rebalance = rebalance
        grid = torch.arange(-AB_SCALE, AB_SCALE + 1) / AB_SCALE  # 1 Lab unit apart
        points = torch.stack(torch.meshgrid(grid, grid, indexing="ij"), dim=-1).reshape(-1, 2)
        distance, nearest = torch.cdist(points, self.bins).topk(min(neighbours, len(bins)), dim=1, largest=False)
        self.register_buffer("table_bins", nearest, persistent=False)
        self.register_buffer("table_weights", torch.softmax(-distance.square() / (2 * self.sigma**2), dim=1), False)
        self.grid_side = len(grid)

    @property
    def has_prior(self) -> bool:
        return bool(self.counts.sum() > 0)

    def _encode(self, ab: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(nearest bins, their Gaussian weights) of each pixel of (B, 2, H, W) ab, each (B*H*W, K)."""
        cell = (ab.float() * AB_SCALE).round().clamp(-AB_SCALE, AB_SCALE) + AB_SCALE
        index = (cell[:, 0] * self.grid_side + cell[:, 1]).long().reshape(-1)
        return self.table_bins[index], self.table_weights[index]

    @torch.no_grad()
    def count(self, ab: torch.Tensor) -> None:
        """Add a batch of true ab (B, 2, H, W) to the bin frequencies."""
        nearest = self._encode(ab)[0][:, 0]
        self.counts += torch.bincount(nearest, minlength=len(self.bins)).to(self.counts)

    def class_weights(self) -> torch.Tensor:
        prior = self.counts / self.counts.sum().clamp_min(1)
        kernel = torch.exp(-torch.cdist(self.bins, self.bins).square() / (2 * self.sigma**2))
        smoothed = kernel @ prior
        smoothed = smoothed / smoothed.sum()
        weights = 1.0 / ((1 - self.rebalance) * smoothed + self.rebalance / len(self.bins))
        return weights / (smoothed * weights).sum()

    def forward(self, logits: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
        if ab.shape[-2:] != logits.shape[-2:]:
            ab = F.adaptive_avg_pool2d(ab.float(), logits.shape[-2:])
        nearest, soft = self._encode(ab)
        log_probs = torch.log_softmax(logits.float(), dim=1).permute(0, 2, 3, 1).reshape(-1, len(self.bins))
        cross_entropy = -(soft * log_probs.gather(1, nearest)).sum(dim=1)
        if self.rebalance >= 1.0:
            return cross_entropy.mean()
        return (self.class_weights()[nearest[:, 0]] * cross_entropy).mean()
