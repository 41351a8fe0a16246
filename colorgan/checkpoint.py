"""Reading and writing checkpoints safely: atomic writes, no pickled code on load, clear errors."""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from torch import nn

from colorgan.models import build_generator


class CheckpointError(RuntimeError):
    """A checkpoint that is missing, unreadable, unsafe or of the wrong kind."""


class AtomicCheckpointIO(TorchCheckpointIO):
    """Write to a temporary file in the same folder, fsync, then rename into place.

    Lightning's own save writes the destination directly, so a run killed while saving
    ``last.ckpt`` destroys the previous one. A rename within a folder is atomic on POSIX.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            with open(tmp, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``: tensors and plain data only, never code."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist; pass the path of a .ckpt file from a training run")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"refused to load {path}: it holds objects other than tensors and plain data, which could run "
            f"code when unpickled ({str(err).splitlines()[0]}). Only load checkpoints written by colorgan."
        ) from err
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as err:
        raise CheckpointError(
            f"checkpoint {path} is truncated or corrupt ({type(err).__name__}: {str(err).splitlines()[0]}); "
            "use another checkpoint, e.g. last.ckpt or an earlier epoch"
        ) from err
    if not isinstance(ckpt, dict):
        raise CheckpointError(f"checkpoint {path} holds a {type(ckpt).__name__}, not a colorgan checkpoint")
    return ckpt


def generator_state(ckpt: dict[str, Any], path: str | Path) -> dict[str, torch.Tensor]:
    """The generator's weights from a Lightning checkpoint (keys ``generator.*``)."""
    state = ckpt.get("state_dict", {})
    prefix = "generator."
    weights = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    if not weights:
        raise CheckpointError(
            f"checkpoint {path} holds no generator weights (no 'generator.*' keys in its state_dict); "
            "pass a checkpoint written by colorgan's train.py"
        )
    return weights


def generator_config(ckpt: dict[str, Any], path: str | Path) -> dict[str, Any]:
    hparams = ckpt.get("hyper_parameters") or {}
    cfg = hparams.get("generator")
    if not isinstance(cfg, dict) or "name" not in cfg:
        raise CheckpointError(f"checkpoint {path} does not say which generator it holds (hyper_parameters.generator)")
    return dict(cfg)


def load_generator_weights(generator: nn.Module, path: str | Path) -> None:
    """``model.init_from``: copy a checkpoint's generator into ``generator`` (weights only)."""
    ckpt = load_checkpoint(path)
    weights = generator_state(ckpt, path)
    try:
        generator.load_state_dict(weights)
    except RuntimeError as err:
        raise CheckpointError(
            f"the generator in {path} does not match model.generator ({str(err).splitlines()[0]} ...); "
            "use the same model.generator settings as the run that wrote it"
        ) from err


def load_generator(path: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a trained generator for inference from its checkpoint alone, in eval mode."""
    ckpt = load_checkpoint(path)
    cfg = generator_config(ckpt, path)
    if "pretrained" in cfg:
        cfg["pretrained"] = False  # the checkpoint has the weights; never fetch ImageNet ones
    generator = build_generator(cfg)
    generator.load_state_dict(generator_state(ckpt, path))
    return generator.to(device).eval(), ckpt.get("hyper_parameters", {})
