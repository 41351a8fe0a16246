"""Plain ``nn.Module`` networks, built by name so checkpoints never name code to import."""

from __future__ import annotations

from typing import Any

from torch import nn

from colorgan.models.layers import set_stochastic_inference as set_stochastic_inference
from colorgan.models.patchgan import PatchDiscriminator
from colorgan.models.patchgan import patchgan_receptive_field as patchgan_receptive_field
from colorgan.models.resnet_unet import PretrainedWeightsUnavailable as PretrainedWeightsUnavailable
from colorgan.models.resnet_unet import ResNet18UNet
from colorgan.models.unet import UNetGenerator

GENERATORS: dict[str, type[nn.Module]] = {"unet": UNetGenerator, "resnet18_unet": ResNet18UNet}
DISCRIMINATORS: dict[str, type[nn.Module]] = {"patchgan": PatchDiscriminator}


def _build(kind: str, registry: dict[str, type[nn.Module]], cfg: dict[str, Any]) -> nn.Module:
    cfg = dict(cfg)
    name = cfg.pop("name", None)
    if name not in registry:
        raise ValueError(f"model.{kind}.name={name!r} is not one of {sorted(registry)}")
    try:
        return registry[name](**cfg)
    except TypeError as err:
        raise ValueError(f"model.{kind} ({name}): {err}") from err


def build_generator(cfg: dict[str, Any]) -> nn.Module:
    return _build("generator", GENERATORS, cfg)


def build_discriminator(cfg: dict[str, Any]) -> nn.Module:
    return _build("discriminator", DISCRIMINATORS, cfg)
