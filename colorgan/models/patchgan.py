"""The conditional PatchGAN discriminator of pix2pix."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils import parametrizations

from colorgan.models.layers import NORMS, cat_channels, init_pix2pix_weights


def patchgan_receptive_field(n_layers: int) -> int:
    """Side of the input patch that one output logit sees (70 for n_layers=3, 34 for 2)."""
    kernels_strides = [(4, 2)] * n_layers + [(4, 1), (4, 1)]
    field = 1
    for kernel, stride in reversed(kernels_strides):
        field = (field - 1) * stride + kernel
    return field


class PatchDiscriminator(nn.Module):
    """Judges concat(L, ab) patch by patch: one real/fake logit per overlapping patch.

    Receptive field per logit: 70 x 70 pixels with ``n_layers=3`` (pix2pix's default for
    256 x 256), 34 x 34 with ``n_layers=2`` (used for 32 x 32 CIFAR), 16 x 16 with 1; see
    :func:`patchgan_receptive_field`. Conditioning on L lets it punish colours that do not fit
    the structure, not just implausible colours. ``spectral_norm`` normalises every convolution by
    its largest singular value (usually with ``norm=none`` and ``gan_mode=hinge``, as in SAGAN).
    """

    def __init__(
        self, in_channels: int = 3, ndf: int = 64, n_layers: int = 3, norm: str = "batch", spectral_norm: bool = False
    ) -> None:
        super().__init__()
        use_bias = norm != "batch"
        layers: list[nn.Module] = [nn.Conv2d(in_channels, ndf, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True)]
        channels = ndf
        for n in range(1, n_layers + 1):
            out = ndf * min(2**n, 8)
            stride = 2 if n < n_layers else 1
            layers += [
                nn.Conv2d(channels, out, 4, stride, 1, bias=use_bias),
                NORMS[norm](out),
                nn.LeakyReLU(0.2, inplace=True),
            ]
            channels = out
        layers.append(nn.Conv2d(channels, 1, 4, 1, 1))
        self.model = nn.Sequential(*layers)
        init_pix2pix_weights(self)
        if spectral_norm:  # Miyato et al. 2018: D stays 1-Lipschitz, so its gradients to G stay informative
            for layer in self.model:
                if isinstance(layer, nn.Conv2d):
                    parametrizations.spectral_norm(layer)

    def forward(self, L: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
        return self.model(cat_channels(L, ab))
