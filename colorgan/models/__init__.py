"""Plain ``nn.Module`` networks, built by name so checkpoints never name code to import."""

from __future__ import annotations

from typing import Any

from torch import nn

from colorgan.models.color_bins import AtTemperature as AtTemperature
from colorgan.models.color_bins import ColorBinsGenerator, in_gamut_bins
from colorgan.models.color_bins import set_temperature as set_temperature
from colorgan.models.layers import set_stochastic_inference as set_stochastic_inference
from colorgan.models.patchgan import PatchDiscriminator
from colorgan.models.patchgan import patchgan_receptive_field as patchgan_receptive_field
from colorgan.models.resnet_unet import PretrainedWeightsUnavailable as PretrainedWeightsUnavailable
from colorgan.models.resnet_unet import ResNet18UNet
from colorgan.models.unet import UNetGenerator

GENERATORS: dict[str, type[nn.Module]] = {"unet": UNetGenerator, "resnet18_unet": ResNet18UNet}
DISCRIMINATORS: dict[str, type[nn.Module]] = {"patchgan": PatchDiscriminator}


# model.generator.head: how G states colour. regression: ab directly (pix2pix); classification: a
# distribution over ab bins, decoded by the annealed mean (Zhang et al. 2016, models/color_bins.py)
HEADS = ("regression", "classification")


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
    cfg = dict(cfg)
    head = cfg.pop("head", "regression")
    bin_grid = cfg.pop("bin_grid", 10.0)
    temperature = cfg.pop("temperature", 0.38)
    if head not in HEADS:
        raise ValueError(f"model.generator.head must be one of {HEADS}, got {head!r}")
    if head == "regression":
        return _build("generator", GENERATORS, cfg)
    backbone = _build("generator", GENERATORS, {**cfg, "out_channels": len(in_gamut_bins(bin_grid))})
    return ColorBinsGenerator(backbone, bin_grid, temperature)


def build_discriminator(cfg: dict[str, Any]) -> nn.Module:
    return _build("discriminator", DISCRIMINATORS, cfg)
