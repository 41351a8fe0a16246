"""Catch impossible settings before any data is read, naming the key and the fix."""

from __future__ import annotations

import inspect
import math
import types
import typing
from typing import Any

from hydra.utils import get_object
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from colorgan.data.datasets import BAD_IMAGE_POLICIES
from colorgan.errors import ColorganError
from colorgan.models.layers import NOISE_KINDS, NORMS
from colorgan.train.losses import GAN_MODES


class ConfigError(ColorganError, ValueError):
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


EVAL_PRECISIONS = ("32-true", "32", "16-mixed", "bf16-mixed")
TRAIN_PRECISIONS = ("auto", *EVAL_PRECISIONS)


def check_precision(precision: object, choices: tuple[str, ...]) -> None:
    """``trainer.precision`` is one colorgan runs: the Lab conversion and the metrics are float32, so double
    precision (64-true) would meet float32 tensors in the first layer."""
    _require(
        str(precision) in choices,
        "trainer.precision",
        precision,
        f"use {', '.join(c for c in choices if c != '32')} (64-true and other precisions are not supported)",
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
    check_precision(trainer.get("precision", "32-true"), TRAIN_PRECISIONS)


_SIMPLE_TYPES = {bool: "true or false (a boolean, without quotes)", int: "an integer", float: "a number"}


def _simple_members(annotation: Any) -> set[type] | None:
    """The types among bool, int, float (and None) that ``annotation`` allows; None when it allows anything else
    too (a string, a path, a list, a class), whose values are left to the code that takes them."""
    if annotation in _SIMPLE_TYPES or annotation is type(None):
        return {annotation}
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        members = [_simple_members(arg) for arg in typing.get_args(annotation)]
        return None if any(m is None for m in members) else set().union(*members)
    return None


_UNRESOLVED = object()


def _resolved(node: DictConfig, key: Any) -> Any:
    """``node[key]``, or ``_UNRESOLVED`` for a mandatory value not given or an interpolation that cannot be
    resolved here: the code that reads it says what is missing."""
    try:
        return node.get(key)
    except OmegaConfBaseException:
        return _UNRESOLVED


def _allows(value: Any, allowed: set[type]) -> bool:
    """Whether ``value`` has one of the ``allowed`` types: a bool is not a number, a number is not a bool."""
    if value is None:
        return True  # null: the code's own default or 'off'; the key's own check says more where it matters
    if isinstance(value, bool):
        return bool in allowed
    if isinstance(value, int):
        return bool(allowed & {int, float})
    return isinstance(value, float) and float in allowed


def _argument_types(target: Any) -> dict[str, Any]:
    """The annotated arguments of a class (its ``__init__`` and those of its bases, which take ``**kwargs``) or
    function; unreadable annotations are skipped."""
    found: dict[str, Any] = {}
    functions = [c.__init__ for c in inspect.getmro(target) if c is not object] if inspect.isclass(target) else [target]
    for function in functions:
        try:
            hints = typing.get_type_hints(function)
        except Exception:  # an annotation naming what its module does not import: nothing to check against
            continue
        for name, hint in hints.items():
            found.setdefault(name, hint)
    return found


def _check_node_types(node: DictConfig, prefix: str, target: Any) -> None:
    """Each key of ``node`` that ``target`` declares a boolean or number has a value of that type."""
    hints = _argument_types(target)
    for key in node:
        allowed = _simple_members(hints.get(str(key)))
        value = _resolved(node, key)
        if allowed is None or value is _UNRESOLVED:
            continue
        need = " or ".join(_SIMPLE_TYPES[t] for t in (bool, int, float) if t in allowed)
        if float in allowed and int in allowed:
            need = _SIMPLE_TYPES[float]
        _require(_allows(value, allowed), f"{prefix}{key}", value, f"it must be {need}, not {type(value).__name__}")


def check_value_types(cfg: DictConfig, prefix: str = "") -> None:
    """Booleans and numbers have their types in every node that names code (``_target_``, a generator or
    discriminator ``name``): the string "false" is not false, 1 is not true, "16" is not 16.

    The types come from the annotations of what each node builds, so every key is checked, not a list of them.
    """
    from colorgan.models import DISCRIMINATORS, GENERATORS

    target = None
    if "_target_" in cfg:
        try:
            target = get_object(str(cfg._target_))
        except Exception:  # instantiating it names the missing target
            target = None
    elif prefix in ("model.generator.", "model.discriminator."):
        target = {**GENERATORS, **DISCRIMINATORS}.get(str(cfg.get("name")))
    if target is not None:
        _check_node_types(cfg, prefix, target)
    for key in cfg:
        if isinstance(key, str) and not key.startswith("_"):
            child = _resolved(cfg, key)
            if isinstance(child, DictConfig):
                check_value_types(child, f"{prefix}{key}.")


def check_config(cfg: DictConfig) -> None:
    """Validate the values a typo or a bad sweep is most likely to break."""
    check_value_types(cfg)
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
