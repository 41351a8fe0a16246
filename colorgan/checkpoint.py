"""Checkpoints: saved atomically, loaded without running pickled code, and checked against the model that uses them."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from torch import nn

from colorgan.files import UnreadableFile, load_torch_file, save_torch_atomic
from colorgan.model_folder import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    is_model_folder,
    load_as_checkpoint,
    resolve_model_path,
    shipped_models,
)
from colorgan.models import GENERATORS, HEADS, build_generator, set_stochastic_inference
from colorgan.models.layers import NOISE_KINDS, NORMS

log = logging.getLogger(__name__)


class CheckpointError(UnreadableFile):
    """A checkpoint that is missing, unreadable, unsafe or of the wrong kind."""


CHECKPOINT_FILE = "a .ckpt file written by a colorgan training run (e.g. last.ckpt, or an earlier epoch's)"
CHECKPOINT_FIX = f"pass {CHECKPOINT_FILE}"
# What a file may claim about its generator, checked before anything is built: a few bytes of
# config cannot ask for gigabytes of weights, or an inference size that no photo needs.
GENERATOR_INT_BOUNDS = {
    "image_size": (1, 2048),
    "ngf": (1, 512),
    "depth": (1, 8),
    "noise_channels": (0, 64),
    "dropout_blocks": (0, 8),
}
GENERATOR_CHOICES = {"name": GENERATORS, "norm": NORMS, "noise": NOISE_KINDS, "head": HEADS}


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write to a temporary file in the same folder, fsync, then rename into place; load safely.

    Lightning's own save writes the destination directly, so a run killed while saving
    ``last.ckpt`` destroys the previous one. A rename within a folder is atomic on POSIX. Loading
    (resuming with ``ckpt_path``) goes through :func:`load_checkpoint`: ``weights_only=True``
    whatever the caller or ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` asks, and the same clear errors.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        save_torch_atomic(checkpoint, path)

    def load_checkpoint(
        self,
        path: Any,
        map_location: Callable | str | torch.device | None = "cpu",
        weights_only: bool | None = None,
    ) -> dict[str, Any]:
        return load_checkpoint(path, map_location=map_location)


def load_checkpoint(path: str | Path, map_location: Callable | str | torch.device | None = "cpu") -> dict[str, Any]:
    """A checkpoint read safely (:func:`colorgan.files.load_torch_file`); a folder gets the .ckpt files in it named."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise CheckpointError(_folder_message(path))
    if not path.exists() and len(path.parts) == 1 and not path.suffix:  # a bare name: meant a shipped model?
        raise CheckpointError(
            f"{path} is neither a file here nor a shipped model ({', '.join(shipped_models()) or 'none installed'}); "
            f"pass one of those names, a model folder, or {CHECKPOINT_FILE}"
        )
    ckpt = load_torch_file(path, "checkpoint", CHECKPOINT_FIX, CheckpointError, map_location)
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(ckpt).__name__}, not a colorgan checkpoint")
    return ckpt


def _folder_message(folder: Path) -> str:
    """A folder given as a checkpoint: name the .ckpt files inside it, ``last.ckpt`` first."""
    if is_model_folder(folder):
        return (
            f"{folder} is a model folder (colorgan-export --format folder): it holds the generator alone, not a "
            f"training state to resume; start a new run from it with model.init_from={folder}"
        )
    found = sorted(
        {*folder.glob("*.ckpt"), *folder.glob("checkpoints/*.ckpt"), *folder.glob("*/checkpoints/*.ckpt")},
        key=lambda p: (len(p.parts), p.name != "last.ckpt", str(p)),
    )
    if not found and (folder / WEIGHTS_NAME).is_file():
        return (
            f"{folder} holds {WEIGHTS_NAME} but no {CONFIG_NAME}, which says which network the weights are for, so "
            "it is not a usable model folder; export it again with colorgan-export --format folder"
        )
    if not found:
        return (
            f"checkpoint {folder} is a folder, not a file, and holds no .ckpt file (in it, its checkpoints/ or "
            f"its subfolders' checkpoints/); {CHECKPOINT_FIX}"
        )
    listing = ", ".join(p.name for p in found[:5]) + (f" and {len(found) - 5} more" if len(found) > 5 else "")
    return f"checkpoint {folder} is a folder, not a file; did you mean {found[0]}? (it holds {listing})"


def has_weight_average(ckpt: dict[str, Any]) -> bool:
    """Whether the run kept a moving average of its generator (``model.ema_decay``)."""
    state = ckpt.get("state_dict")
    return isinstance(state, dict) and any(k.startswith("generator_ema.module.") for k in state)


def _describe(path: str | Path) -> tuple[str, str]:
    """Where a source keeps its generator's settings and its weights, in words for messages."""
    if is_model_folder(path):
        return f"{Path(path) / CONFIG_NAME}: generator", f"{Path(path) / WEIGHTS_NAME}"
    return f"checkpoint {path}: hyper_parameters.generator", f"checkpoint {path}"


def generator_state(ckpt: dict[str, Any], path: str | Path, ema: bool = True) -> dict[str, torch.Tensor]:
    """The generator's weights from a Lightning checkpoint: its weight average (``generator_ema.module.*``)
    when it has one and ``ema``, else the trained weights (``generator.*``). Each is checked
    (:func:`check_tensors`): damaged weights are refused here, not rendered as black images."""
    state = ckpt.get("state_dict")
    state = state if isinstance(state, dict) else {}
    prefix = "generator_ema.module." if ema and has_weight_average(ckpt) else "generator."
    weights = {k[len(prefix) :]: v for k, v in state.items() if isinstance(k, str) and k.startswith(prefix)}
    if not weights:
        raise CheckpointError(
            f"checkpoint {path} holds no generator weights (no 'generator.*' keys in its state_dict); "
            "pass a checkpoint written by colorgan's train.py"
        )
    check_tensors(weights, _describe(path)[1])
    return weights


def _dtype_allowed(key: str, value: torch.Tensor) -> bool:
    """Weights in floating point; BatchNorm's step counters (``num_batches_tracked``) in integers."""
    if key.endswith("num_batches_tracked"):
        return not (value.is_floating_point() or value.is_complex() or value.dtype == torch.bool)
    return value.is_floating_point()


def check_tensors(weights: dict[str, Any], where: str) -> None:
    """Every weight a tensor of an allowed dtype (:func:`_dtype_allowed`) holding finite values.

    ``load_state_dict`` would cast integers, booleans or complex numbers silently, and NaN or Inf
    weights make every output non-finite, which renders as a black or gray image.
    """
    for key, value in weights.items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(
                f"{where}: weight {key} is a {type(value).__name__}, not a tensor; the file is damaged"
            )
        if not _dtype_allowed(key, value):
            need = "an integer" if key.endswith("num_batches_tracked") else "floating point (float32, float16, ...)"
            raise CheckpointError(
                f"{where}: tensor {key} has dtype {str(value.dtype).removeprefix('torch.')}, not {need}; "
                "the file is damaged or was not written by colorgan"
            )
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            bad = int((~torch.isfinite(value)).sum())
            raise CheckpointError(
                f"{where}: tensor {key} holds {bad} NaN or Inf value{'s' if bad != 1 else ''} (of {value.numel()}); "
                "such weights colour every image wrongly (a run that diverged, or a damaged file): use an earlier "
                "checkpoint"
            )


def generator_config(ckpt: dict[str, Any], path: str | Path) -> dict[str, Any]:
    """The generator's settings, of the types and within the bounds colorgan builds (:func:`check_generator_config`)."""
    hparams = ckpt.get("hyper_parameters") or {}
    cfg = hparams.get("generator") if isinstance(hparams, dict) else None
    if not isinstance(cfg, dict) or "name" not in cfg:
        raise CheckpointError(f"checkpoint {path} does not say which generator it holds (hyper_parameters.generator)")
    check_generator_config(cfg, _describe(path)[0])
    return dict(cfg)


def trained_size(hparams: dict[str, Any]) -> int | None:
    """The image side a generator was trained at, from its hyperparameters (a checkpoint's or a model folder's);
    None when they do not record it. The one place every program reads it."""
    size = (hparams.get("generator") or {}).get("image_size") if isinstance(hparams, dict) else None
    return size if isinstance(size, int) and not isinstance(size, bool) and size > 0 else None


def check_generator_config(cfg: dict[str, Any], where: str) -> None:
    """Names, sizes and fractions of a file's generator settings; ``where`` names the file and key in messages."""

    def refuse(key: str, need: str) -> None:
        raise CheckpointError(f"{where}.{key}={cfg[key]!r} {need}; the file is damaged or was not written by colorgan")

    for key, choices in GENERATOR_CHOICES.items():
        if key in cfg and (not isinstance(cfg[key], str) or cfg[key] not in choices):
            refuse(key, f"is not one of {sorted(choices)}")
    for key, (low, high) in GENERATOR_INT_BOUNDS.items():
        value = cfg.get(key)
        if key == "depth" and value is None:  # None: from the image size
            continue
        if key in cfg and (not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high):
            refuse(key, f"must be an integer from {low} to {high}")
    dropout = cfg.get("dropout", 0.0)
    if (
        isinstance(dropout, bool)
        or not isinstance(dropout, int | float)
        or not (math.isfinite(dropout) and 0 <= dropout < 1)
    ):
        refuse("dropout", "must be a fraction in [0, 1)")
    if not isinstance(cfg.get("pretrained", False), bool):
        refuse("pretrained", "must be true or false")


def _check_shapes(cfg: dict[str, Any], weights: dict[str, torch.Tensor], path: str | Path) -> None:
    """The weights are those of the network ``cfg`` describes, compared before that network is built.

    The network is laid out on the meta device (shapes, no memory), so settings that do not match
    the weights never allocate anything.
    """
    settings, where = _describe(path)
    try:
        with torch.device("meta"):
            expected = build_generator(cfg).state_dict()
    except (ValueError, TypeError, KeyError) as err:
        raise CheckpointError(f"{settings} describes a generator colorgan cannot build ({err})") from err
    missing, unexpected = sorted(expected.keys() - weights.keys()), sorted(weights.keys() - expected.keys())
    reshaped = [k for k in expected if k in weights and tuple(expected[k].shape) != tuple(weights[k].shape)]
    if missing or unexpected or reshaped:
        if reshaped:
            key = reshaped[0]
            detail = f"{key} has shape {tuple(weights[key].shape)}, the settings need {tuple(expected[key].shape)}"
        else:
            detail = f"missing {missing[0]}" if missing else f"unexpected {unexpected[0]}"
        raise CheckpointError(
            f"{settings} does not describe the weights in {where} ({detail}); the file is damaged or its settings "
            "were edited: export the model again from its checkpoint"
        )


def _load_weights(
    generator: nn.Module, weights: dict[str, torch.Tensor], path: str | Path, against: str, fix: str
) -> None:
    try:
        generator.load_state_dict(weights)
    except RuntimeError as err:
        raise CheckpointError(
            f"the generator in {path} does not match {against} ({_first_problem(err)}); {fix}"
        ) from err


def _first_problem(err: RuntimeError) -> str:
    """The first line of PyTorch's load_state_dict report, which can run to thousands of keys."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    detail = lines[1] if len(lines) > 1 else lines[0] if lines else type(err).__name__
    return detail if len(detail) < 300 else detail[:300] + " ..."


def widen_for_noise_inputs(weights: dict[str, torch.Tensor], generator: nn.Module) -> dict[str, torch.Tensor]:
    """Give a generator trained on L alone the input filters of extra noise channels, set to zero.

    So ``model.init_from`` can start a ``model.generator.noise_channels`` run from an L1-pretrained
    generator: at first it computes exactly what it was given and ignores z; training decides
    whether z gets used.
    """
    target = generator.state_dict()
    widened = dict(weights)
    for key, value in weights.items():
        want = target.get(key)
        if want is None or value.dim() != 4 or want.shape == value.shape:
            continue
        if want.shape[0] == value.shape[0] and want.shape[2:] == value.shape[2:] and want.shape[1] > value.shape[1]:
            extra = value.new_zeros((value.shape[0], want.shape[1] - value.shape[1], *value.shape[2:]))
            widened[key] = torch.cat([value, extra], dim=1)
    return widened


def read_generator_source(path: str | Path) -> dict[str, Any]:
    """A training checkpoint, or a model folder (colorgan-export --format folder, or a shipped one by name)."""
    path = resolve_model_path(path)
    return load_as_checkpoint(path) if is_model_folder(path) else load_checkpoint(path)


def load_generator_weights(generator: nn.Module, path: str | Path) -> None:
    """``model.init_from``: copy a checkpoint's generator into ``generator`` (weights only)."""
    ckpt = read_generator_source(path)
    weights = generator_state(ckpt, path)
    if getattr(generator, "noise_channels", 0):
        weights = widen_for_noise_inputs(weights, generator)
    _load_weights(
        generator,
        weights,
        path,
        "model.generator",
        "use the same model.generator settings as the run that wrote it",
    )


def load_generator(
    path: str | Path,
    device: str | torch.device = "cpu",
    stochastic: bool | None = None,
    ema: bool = True,
    ckpt: dict[str, Any] | None = None,
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a trained generator for inference from its checkpoint alone, in eval mode.

    ``stochastic`` (None: the run's ``model.stochastic_inference``, off if unset) keeps dropout and
    noise inputs random, as pix2pix does at test time; off, every call gives the same colours.
    ``ckpt``: the file's contents when the caller has read them already.
    """
    ckpt = read_generator_source(path) if ckpt is None else ckpt
    cfg = generator_config(ckpt, path)
    if "pretrained" in cfg:
        cfg["pretrained"] = False  # the checkpoint has the weights; never fetch ImageNet ones
    weights = generator_state(ckpt, path, ema)
    _check_shapes(cfg, weights, path)  # before the network is built: its size is bounded by the weights
    try:
        generator = build_generator(cfg)
    except (ValueError, TypeError) as err:
        raise CheckpointError(f"checkpoint {path} describes a generator colorgan cannot build ({err})") from err
    _load_weights(generator, weights, path, "its own hyper_parameters.generator", "the file is damaged")
    hparams = ckpt.get("hyper_parameters", {})
    if stochastic is None:
        stochastic = bool(hparams.get("stochastic_inference", False))
    return set_stochastic_inference(generator.to(device), stochastic), hparams
