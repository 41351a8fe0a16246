"""Adversarial objectives for the discriminator and the generator, computed in float32."""

from __future__ import annotations

import torch
import torch.nn.functional as F

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
