"""The reconstruction terms G can be trained with (model.recon_loss): finite gradients where the
CIEDE2000 formula divides by zero, and steps that lower the colour difference the evaluation reports."""

from __future__ import annotations

import torch

from colorgan.evaluate.metrics import ciede2000
from colorgan.train.losses import RECON_LOSSES, ciede2000_loss


def _lab(L: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
    return torch.cat([(L + 1) * 50, ab * 110], dim=1)


def test_ciede2000_loss_has_finite_gradients_on_gray_truth_and_on_a_perfect_prediction():
    L = torch.rand(3, 1, 8, 8) * 2 - 1
    truth = (torch.rand(3, 2, 8, 8) - 0.5) * 0.6
    truth[0] = 0.0  # a gray image: zero chroma, hue undefined
    for start in (truth.clone(), torch.zeros_like(truth), (torch.rand_like(truth) - 0.5) * 0.6):
        fake = start.requires_grad_()
        ciede2000_loss(fake, truth, L).backward()
        assert torch.isfinite(fake.grad).all()
    # the metric itself (eps = 0) gives NaN gradients at exactly these points: why the loss smooths it
    fake = torch.zeros_like(truth).requires_grad_()
    ciede2000(_lab(L, truth), _lab(L, fake)).mean().backward()
    assert not torch.isfinite(fake.grad).all()


def test_gradient_steps_on_the_ciede2000_loss_lower_the_reported_colour_difference():
    torch.manual_seed(0)
    L = torch.rand(2, 1, 8, 8) * 2 - 1
    truth = (torch.rand(2, 2, 8, 8) - 0.5) * 0.6
    fake = ((torch.rand_like(truth) - 0.5) * 0.02).requires_grad_()  # near gray, as a fresh network's output
    optimizer = torch.optim.Adam([fake], lr=0.01)
    before = ciede2000(_lab(L, truth), _lab(L, fake.detach())).mean().item()
    for _ in range(100):
        optimizer.zero_grad()
        ciede2000_loss(fake, truth, L).backward()
        optimizer.step()
    after = ciede2000(_lab(L, truth), _lab(L, fake.detach())).mean().item()
    assert after < 0.2 * before


def test_every_reconstruction_term_is_zero_on_the_truth_and_positive_elsewhere():
    L = torch.rand(2, 1, 8, 8) * 2 - 1
    truth = (torch.rand(2, 2, 8, 8) - 0.5) * 0.6
    for name, loss in RECON_LOSSES.items():
        assert loss(truth, truth, L).item() < 1e-4, name
        assert loss(truth + 0.1, truth, L).item() > 1e-3, name
