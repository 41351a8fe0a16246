"""A U-Net whose encoder is torchvision's ResNet-18 with a 1-channel (L) stem."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from colorgan.files import UnreadableFile, load_torch_file
from colorgan.models.layers import (
    NORMS,
    NoiseChannels,
    cat_channels,
    crop_center,
    init_pix2pix_weights,
    pad_to_multiple,
)
from colorgan.weights import hub_cache_file


class PretrainedWeightsUnavailable(UnreadableFile):
    """ImageNet weights were asked for but cannot be read or downloaded."""


def load_imagenet_resnet18_state(weights_path: str | None = None) -> dict[str, torch.Tensor]:
    """ImageNet ResNet-18 weights from ``weights_path``, torch's hub cache, or a download."""
    weights = torchvision.models.ResNet18_Weights.IMAGENET1K_V1
    cached = hub_cache_file(weights.url)
    path = Path(weights_path).expanduser() if weights_path else cached
    if path.is_file():
        fix = f"download {weights.url} there again, or set model.generator.pretrained=false"
        return load_torch_file(path, "ImageNet ResNet-18 weights file", fix, PretrainedWeightsUnavailable)
    if weights_path:
        raise PretrainedWeightsUnavailable(
            f"model.generator.weights_path={weights_path} does not exist; "
            f"download {weights.url} there, or set model.generator.pretrained=false"
        )
    try:
        return weights.get_state_dict(progress=True, check_hash=True)
    except Exception as err:  # urllib, ssl and socket errors all mean the same thing here
        raise PretrainedWeightsUnavailable(
            f"could not download ImageNet ResNet-18 weights ({type(err).__name__}: {err}). Fix: copy "
            f"{weights.url} to {cached} (or set model.generator.weights_path=FILE), or train from "
            "scratch with model.generator.pretrained=false"
        ) from err


class UpBlock(nn.Module):
    """Upsample x2, concatenate the encoder's skip, then two 3 x 3 conv-norm-ReLU layers."""

    def __init__(self, in_ch: int, skip_ch: int, out_ch: int, norm: str, dropout: float = 0.0) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_ch + skip_ch, out_ch, 3, padding=1, bias=norm != "batch"),
            NORMS[norm](out_ch),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=norm != "batch"),
            NORMS[norm](out_ch),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout) if dropout > 0 else nn.Identity(),
        )

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.body(cat_channels(x, skip))


class ResNet18UNet(nn.Module):
    """ResNet-18 encoder (strides 2..32) with a light U-Net decoder back to full resolution.

    With ``pretrained=True`` the ImageNet RGB stem filters are summed into one L filter, so a
    gray image excites the stem as its RGB copy would. Extra noise channels start at zero.
    Inputs of any size are padded to a multiple of 32 and the output is cropped back.
    ``out_channels``: 2 is ab through tanh; more is one raw logit per colour bin at half size (``head=classification``).
    """

    def __init__(
        self,
        image_size: int = 256,
        pretrained: bool = False,
        weights_path: str | None = None,
        norm: str = "batch",
        dropout: float = 0.0,
        noise_channels: int = 0,
        noise: str = "pixel",
        out_channels: int = 2,
    ) -> None:
        super().__init__()
        if image_size < 32:
            raise ValueError(f"resnet18_unet halves the image 5 times and needs image_size >= 32, got {image_size}")
        self.noise_channels = noise_channels
        self.noise = NoiseChannels(noise_channels, noise)
        resnet = torchvision.models.resnet18(weights=None)
        stem_in = 1 + noise_channels
        stem = nn.Conv2d(stem_in, 64, 7, 2, 3, bias=False)
        if pretrained:
            resnet.load_state_dict(load_imagenet_resnet18_state(weights_path))
            with torch.no_grad():
                stem.weight.zero_()
                stem.weight[:, :1] = resnet.conv1.weight.sum(dim=1, keepdim=True)
        resnet.conv1 = stem
        self.stem = nn.Sequential(resnet.conv1, resnet.bn1, resnet.relu)  # /2, 64
        self.layer1 = nn.Sequential(resnet.maxpool, resnet.layer1)  # /4, 64
        self.layer2, self.layer3, self.layer4 = resnet.layer2, resnet.layer3, resnet.layer4  # /8 /16 /32

        self.up4 = UpBlock(512, 256, 256, norm, dropout)
        self.up3 = UpBlock(256, 128, 128, norm, dropout)
        self.up2 = UpBlock(128, 64, 64, norm)
        self.up1 = UpBlock(64, 64, 64, norm)
        # ab: up to full size, through tanh; bin logits: at half size, as Zhang et al. (chroma is smooth)
        self.output_stride = 1 if out_channels == 2 else 2
        self.up0 = UpBlock(64, stem_in, 32, norm) if out_channels == 2 else nn.Identity()
        head_in = 32 if out_channels == 2 else 64
        activation = nn.Tanh() if out_channels == 2 else nn.Identity()
        self.head = nn.Sequential(nn.Conv2d(head_in, out_channels, 1), activation)
        for decoder_part in (self.up4, self.up3, self.up2, self.up1, self.up0, self.head):
            init_pix2pix_weights(decoder_part)

    def forward(self, L: torch.Tensor) -> torch.Tensor:
        x, size = pad_to_multiple(self.noise(L), 32)
        skips = [x]
        for stage in (self.stem, self.layer1, self.layer2, self.layer3):
            skips.append(stage(skips[-1]))
        x = self.layer4(skips[-1])
        ups = (self.up4, self.up3, self.up2, self.up1, self.up0)[: 5 if self.output_stride == 1 else 4]
        for up, skip in zip(ups, reversed(skips)):
            x = up(x, skip)
        return crop_center(self.head(x), tuple(-(-n // self.output_stride) for n in size))
