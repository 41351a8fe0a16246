"""Small building blocks shared by the generators and the discriminator."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

# pix2pix's choices: BatchNorm, or InstanceNorm without affine parameters, or nothing (model.*.norm)
NORMS: dict[str, Callable[[int], nn.Module]] = {
    "batch": nn.BatchNorm2d,
    "instance": lambda channels: nn.InstanceNorm2d(channels, affine=False, track_running_stats=False),
    "none": lambda channels: nn.Identity(),
}


def init_pix2pix_weights(module: nn.Module, gain: float = 0.02) -> None:
    """pix2pix's 'normal' init: conv weights ~ N(0, 0.02), norm scales ~ N(1, 0.02), biases 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, gain)
            nn.init.zeros_(m.bias)


class _ChannelsLastCat(torch.autograd.Function):
    """``torch.cat((a, b), 1)`` whose backward hands both inputs a dense channels-last grad.

    The grad of a channel slice of a channels-last tensor is strided, and BatchNorm's and
    LeakyReLU's backward take a slow path on strided input (about 3x slower on CPU), which made
    the channels-last U-Net slower than NCHW overall although its convolutions are faster.
    """

    @staticmethod
    def forward(ctx: Any, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        ctx.split = a.shape[1]
        return torch.cat((a, b), dim=1).contiguous(memory_format=torch.channels_last)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cl = torch.channels_last
        return grad[:, : ctx.split].contiguous(memory_format=cl), grad[:, ctx.split :].contiguous(memory_format=cl)


def cat_channels(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Concatenate two maps on the channel axis, keeping channels-last layouts channels-last both ways."""
    if any(x.dim() == 4 and x.shape[1] > 1 and x.is_contiguous(memory_format=torch.channels_last) for x in (a, b)):
        return _ChannelsLastCat.apply(a, b)
    return torch.cat((a, b), dim=1)


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad H and W up to a multiple so any image size fits a network that halves it n times.

    Replicate padding works for every size (reflect fails when the pad exceeds the image,
    e.g. a 1 x 1 input); the caller crops the output back to the returned (H, W).
    """
    h, w = x.shape[-2:]
    ph, pw = -h % multiple, -w % multiple
    if ph or pw:
        x = F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2), mode="replicate")
    return x, (h, w)


def crop_center(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Undo :func:`pad_to_multiple`."""
    h, w = size
    top = (x.shape[-2] - h) // 2
    left = (x.shape[-1] - w) // 2
    return x[..., top : top + h, left : left + w]


# model.generator.noise: whether z is drawn per pixel or once per image
NOISE_KINDS = {"pixel": False, "vector": True}


class NoiseChannels(nn.Module):
    """Appends ``n`` Gaussian-noise channels to L: an explicit z for users who want one.

    ``kind="pixel"``: independent noise at every pixel. ``kind="vector"``: one z of ``n`` numbers
    per image, tiled over it (the "random noise vector" of conditional GANs), which can only choose
    image-wide variations such as a palette. Random while the module is in train mode; zeros (z's
    mean) in eval mode, unless stochastic inference puts it back in train mode
    (:func:`set_stochastic_inference`), as it does dropout.
    """

    def __init__(self, n: int, kind: str = "pixel") -> None:
        super().__init__()
        self.n, self.per_image = n, NOISE_KINDS[kind]

    def forward(self, L: torch.Tensor) -> torch.Tensor:
        if self.n <= 0:
            return L
        b, _, h, w = L.shape
        if not self.training:
            return torch.cat([L, L.new_zeros((b, self.n, h, w))], dim=1)
        size = (b, self.n, 1, 1) if self.per_image else (b, self.n, h, w)
        z = torch.randn(size, device=L.device, dtype=L.dtype).expand(b, self.n, h, w)
        return torch.cat([L, z], dim=1)


STOCHASTIC_MODULES = (nn.Dropout, NoiseChannels)


def set_stochastic_inference(net: nn.Module, stochastic: bool) -> nn.Module:
    """Eval mode for inference; with ``stochastic``, dropout and noise inputs stay random (pix2pix's test time).

    Off, every prediction of an image is the same (dropout off, z = 0): what scores and exports
    need. On, each call samples another colouring from the generator's noise.
    """
    net.eval()
    if stochastic:
        for module in net.modules():
            if isinstance(module, STOCHASTIC_MODULES):
                module.train()
    return net
