"""The pix2pix U-Net generator: L in, ab out, skip connections at every level."""

from __future__ import annotations

import math

import torch
from torch import nn

from colorgan.models.layers import (
    NORMS,
    NoiseChannels,
    cat_channels,
    crop_center,
    init_pix2pix_weights,
    pad_to_multiple,
)


class UNetGenerator(nn.Module):
    """pix2pix's ``UnetGenerator``, written as explicit encoder/decoder lists.

    The depth follows from ``image_size`` (down to a 1 x 1 bottleneck, at most 8 levels as in
    ``unet_256``), so 32 x 32 CIFAR images get 5 levels. Dropout in the ``dropout_blocks`` decoder
    blocks just above the bottleneck is the model's only noise, as in the paper. Inputs of any size
    are padded to a multiple of ``2**depth`` and the output is cropped back. ``out_channels``: 2 is ab
    through tanh; more is one raw logit per colour bin at half size (``head=classification``).
    """

    def __init__(
        self,
        image_size: int = 256,
        ngf: int = 64,
        norm: str = "batch",
        dropout: float = 0.5,
        dropout_blocks: int = 3,
        depth: int | None = None,
        noise_channels: int = 0,
        noise: str = "pixel",
        out_channels: int = 2,
    ) -> None:
        super().__init__()
        self.depth = depth if depth is not None else max(1, min(8, int(math.log2(image_size))))
        self.noise_channels = noise_channels
        self.noise = NoiseChannels(noise_channels, noise)
        use_bias = norm != "batch"
        channels = [min(ngf * 2**i, ngf * 8) for i in range(self.depth)]

        encoders: list[nn.Module] = [nn.Conv2d(1 + noise_channels, channels[0], 4, 2, 1, bias=use_bias)]
        # ab: a transposed conv back to full size, through tanh. Bin logits: a 1 x 1 conv at half size, as
        # Zhang et al. predict below full resolution (chroma is smooth), at a quarter of the cost
        outermost_in = channels[0] * (2 if self.depth > 1 else 1)
        self.output_stride = 1 if out_channels == 2 else 2
        decoders: list[nn.Module] = [
            nn.Sequential(nn.ReLU(inplace=True), nn.ConvTranspose2d(outermost_in, 2, 4, 2, 1), nn.Tanh())
            if out_channels == 2
            else nn.Sequential(nn.ReLU(inplace=True), nn.Conv2d(outermost_in, out_channels, 1))
        ]
        n_dropout = max(0, min(dropout_blocks, self.depth - 2))
        for i in range(1, self.depth):
            innermost = i == self.depth - 1
            encoders.append(
                nn.Sequential(
                    nn.LeakyReLU(0.2, inplace=True),
                    nn.Conv2d(channels[i - 1], channels[i], 4, 2, 1, bias=use_bias),
                    nn.Identity() if innermost else NORMS[norm](channels[i]),
                )
            )
            with_dropout = dropout > 0 and (self.depth - 2 - n_dropout) < i < self.depth - 1
            decoders.append(
                nn.Sequential(
                    nn.ReLU(inplace=True),
                    nn.ConvTranspose2d(channels[i] * (1 if innermost else 2), channels[i - 1], 4, 2, 1, bias=use_bias),
                    NORMS[norm](channels[i - 1]),
                    nn.Dropout(dropout) if with_dropout else nn.Identity(),
                )
            )
        self.encoders = nn.ModuleList(encoders)
        self.decoders = nn.ModuleList(decoders)
        init_pix2pix_weights(self)

    def forward(self, L: torch.Tensor) -> torch.Tensor:
        x, size = pad_to_multiple(self.noise(L), 2**self.depth)
        skips = []
        for encoder in self.encoders:
            x = encoder(x)
            skips.append(x)
        x = self.decoders[-1](skips[-1])
        for i in range(self.depth - 2, -1, -1):
            x = self.decoders[i](cat_channels(x, skips[i]))
        return crop_center(x, tuple(-(-n // self.output_stride) for n in size))
