"""Catch impossible settings before any data is read, naming the key and the fix."""

from __future__ import annotations

import math

from omegaconf import DictConfig

from colorgan.data.datasets import BAD_IMAGE_POLICIES
from colorgan.losses import GAN_MODES
from colorgan.models.layers import NOISE_KINDS, NORMS


class ConfigError(ValueError):
    """An invalid configuration value; the message names the key."""


def _require(ok: bool, key: str, value: object, need: str) -> None:
    if not ok:
        raise ConfigError(f"{key}={value!r} is invalid: {need}")


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _number(cfg: DictConfig, prefix: str, key: str, low: float, strict: bool = False, optional: bool = False) -> None:
    """``prefix.key`` is a finite number >= low (> low when ``strict``), or null when ``optional``; a typo's
    string, inf and nan are caught."""
    value = cfg.get(key)
    ok = (optional and value is None) or (
        _is_number(value) and math.isfinite(value) and (value > low if strict else value >= low)
    )
    _require(ok, f"{prefix}.{key}", value, f"it must be a finite number {'>' if strict else '>='} {low:g}")


def _int(cfg: DictConfig, prefix: str, key: str, low: int, optional: bool = False) -> None:
    value = cfg.get(key)
    ok = (optional and value is None) or (isinstance(value, int) and not isinstance(value, bool) and value >= low)
    _require(ok, f"{prefix}.{key}", value, f"it must be an integer >= {low}")


def _check_image_size(cfg: DictConfig) -> None:
    """One image size: what the data delivers, and the generator is built for exactly that."""
    _int(cfg.data, "data", "image_size", 2)
    size = cfg.data.image_size
    if str(cfg.data.get("_target_", "")).endswith("CIFAR10DataModule"):
        _require(
            size == 32,
            "data.image_size",
            size,
            "CIFAR-10 images are 32 x 32 and are used as they are (no resize); leave data.image_size at 32, "
            "or use data=folder or data=imagenette for other sizes",
        )
    built_for = cfg.model.generator.get("image_size")
    _require(
        built_for is None or built_for == size,
        "model.generator.image_size",
        built_for,
        f"the generator is built for the images the data delivers (data.image_size={size}); leave it at "
        "${data.image_size} (conf/model/pix2pix.yaml) and set data.image_size instead",
    )


def _choice(cfg: DictConfig, prefix: str, key: str, choices: object) -> None:
    """``prefix.key``, where that config has the key, is one of ``choices``."""
    if key in cfg:
        _require(cfg[key] in choices, f"{prefix}.{key}", cfg[key], f"choose one of {list(choices)}")


def _check_losses(model: DictConfig) -> None:
    """The loss weights, and the adversarial term only where a discriminator is chosen (model/discriminator)."""
    for key in ("lambda_l1", "lambda_gan"):
        _number(model, "model", key, 0)
    _require(
        model.lambda_l1 > 0 or model.lambda_gan > 0,
        "model.lambda_l1",
        model.lambda_l1,
        "lambda_l1 and lambda_gan cannot both be 0",
    )
    has_d = model.get("discriminator") is not None
    fix = (
        "L1 pretraining is chosen with model/discriminator=none (as experiment=*_pretrain do), which builds "
        "no discriminator; with a discriminator, lambda_gan must be > 0"
        if has_d
        else "model/discriminator=none builds no discriminator, so there is no adversarial term; for the GAN stage "
        "choose model/discriminator=patchgan"
    )
    _require((model.lambda_gan > 0) == has_d, "model.lambda_gan", model.lambda_gan, fix)
    _choice(model, "model", "gan_mode", GAN_MODES)


def _check_generator(gen: DictConfig, size: int) -> None:
    prefix = "model.generator"
    _choice(gen, prefix, "norm", NORMS)
    _choice(gen, prefix, "noise", NOISE_KINDS)
    if "noise_channels" in gen:
        _int(gen, prefix, "noise_channels", 0)
    if "dropout" in gen:
        _require(
            _is_number(gen.dropout) and 0 <= gen.dropout < 1, f"{prefix}.dropout", gen.dropout, "it must be in [0, 1)"
        )
    if gen.name == "unet":
        depth = gen.get("depth")
        if depth is not None:
            _require(
                isinstance(depth, int) and depth >= 1 and 2**depth <= size,
                f"{prefix}.depth",
                depth,
                f"a U-Net of depth d halves the image d times, so data.image_size={size} allows at most "
                f"{max(1, size.bit_length() - 1)}; or leave it null to derive it from the image size",
            )
    elif gen.name == "resnet18_unet":
        _require(size >= 32, "data.image_size", size, "resnet18_unet halves the image 5 times; use >= 32")


def _check_discriminator(disc: DictConfig, size: int) -> None:
    prefix = "model.discriminator"
    _int(disc, prefix, "n_layers", 1)
    _choice(disc, prefix, "norm", NORMS)
    _require(
        size >= 2 ** (disc.n_layers + 1),
        f"{prefix}.n_layers",
        disc.n_layers,
        f"too deep for data.image_size={size}: the PatchGAN would output no patches",
    )


def _check_trainer(trainer: DictConfig) -> None:
    clip = trainer.get("gradient_clip_val")
    _require(
        clip is None,
        "trainer.gradient_clip_val",
        clip,
        "the module steps G and D itself (manual optimization), which the Trainer cannot clip; "
        "set model.gradient_clip_val instead",
    )
    precision = str(trainer.get("precision", "32-true"))
    _require(
        precision in {"auto", "32-true", "32", "16-mixed", "bf16-mixed", "64-true"},
        "trainer.precision",
        precision,
        "use auto, 32-true, 16-mixed or bf16-mixed",
    )


def check_config(cfg: DictConfig) -> None:
    """Validate the values a typo or a bad sweep is most likely to break."""
    model, data = cfg.model, cfg.data
    _check_losses(model)
    _number(model, "model", "lr", 0, strict=True)
    _number(model, "model", "lr_d", 0, strict=True, optional=True)
    _number(model, "model", "gradient_clip_val", 0, optional=True)
    _int(model, "model", "max_bad_steps", 1)
    _int(data, "data", "batch_size", 1)
    _int(data, "data", "eval_batch_size", 1, optional=True)
    _int(data, "data", "num_workers", 0, optional=True)
    _choice(data, "data", "on_bad_image", BAD_IMAGE_POLICIES)
    _check_image_size(cfg)
    _check_generator(model.generator, data.image_size)
    if model.get("discriminator") is not None:
        _check_discriminator(model.discriminator, data.image_size)
    _check_trainer(cfg.trainer)
